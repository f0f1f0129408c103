//! Consul: passing instances from the health API with blocking queries, and registration
//! through the local agent. Only Consul's documented HTTP API is used.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::http::{Call, HttpClient, encode};
use super::registration::Registration;
use super::resolve::{Backoff, Context};
use super::target::{CONSUL_PORT, parse_endpoint_list};
use super::{Address, ConsulTarget, DiscoveryError, ErrorKind, Secret, Target};

/// The environment variable naming the Consul agent (`127.0.0.1:8500` when unset).
pub const CONSUL_HTTP_ADDR: &str = "CONSUL_HTTP_ADDR";
/// The environment variable holding the ACL token, sent as `X-Consul-Token`.
pub const CONSUL_HTTP_TOKEN: &str = "CONSUL_HTTP_TOKEN";

/// Consul settings for pools and registrations.
///
/// The agent is, first to last: the target's authority (`consul://10.0.0.5:8500/name`),
/// [`agent`](Self::agent), `CONSUL_HTTP_ADDR`, `127.0.0.1:8500`. The token is
/// [`token`](Self::token), else `CONSUL_HTTP_TOKEN`; it is never logged nor shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulOptions {
    agent: Option<Address>,
    token: Option<Secret>,
    wait: Duration,
    min_interval: Duration,
    timeout: Duration,
}

impl Default for ConsulOptions {
    fn default() -> Self {
        ConsulOptions {
            agent: None,
            token: None,
            wait: Duration::from_secs(60),
            min_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(10),
        }
    }
}

impl ConsulOptions {
    /// The agent's address. Default: `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`.
    pub fn agent(mut self, agent: Address) -> Self {
        self.agent = Some(agent);
        self
    }

    /// The ACL token. Default: `CONSUL_HTTP_TOKEN`, else none.
    pub fn token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The longest a blocking query waits for a change (`?wait=`; Consul adds up to a
    /// sixteenth at random). Default: 60 s.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.max(Duration::from_secs(1));
        self
    }

    /// The least time between two queries, however fast Consul answers. Default: 100 ms.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// How long a request that does not block (registration, the first query) may take.
    /// Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn resolve_agent(&self, from_target: Option<&Address>) -> Result<Address, String> {
        if let Some(a) = from_target.or(self.agent.as_ref()) {
            return Ok(a.clone());
        }
        match std::env::var(CONSUL_HTTP_ADDR) {
            Ok(value) if !value.trim().is_empty() => parse_endpoint_list(&value, CONSUL_PORT)
                .map_err(|e| format!("{CONSUL_HTTP_ADDR}=`{value}`: {e}"))?
                .into_iter()
                .next()
                .ok_or_else(|| format!("{CONSUL_HTTP_ADDR} is empty")),
            _ => Ok(Address::from_ip([127, 0, 0, 1].into(), CONSUL_PORT)),
        }
    }

    fn resolve_token(&self) -> Option<Secret> {
        self.token.clone().or_else(|| {
            std::env::var(CONSUL_HTTP_TOKEN)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(Secret::new)
        })
    }
}

fn with_token<'a>(call: Call<'a>, token: &Option<Secret>) -> Call<'a> {
    match token {
        Some(t) => call.header("x-consul-token", t.expose().to_string()),
        None => call,
    }
}

/// The index of the next blocking query, by Consul's rules: reset to 0 when the index
/// went backwards (or is missing), and never below 1 otherwise.
pub(crate) fn next_index(previous: u64, returned: Option<u64>) -> u64 {
    match returned {
        None => 0,
        Some(n) if n < previous => 0,
        Some(n) => n.max(1),
    }
}

/// The addresses of `GET /v1/health/service/<name>` entries: `Service.Address`, or
/// `Node.Address` when that is empty, with `Service.Port`.
pub(crate) fn addresses_of(entries: &Value) -> Result<Vec<Address>, String> {
    let list = entries
        .as_array()
        .ok_or_else(|| "the answer is not a JSON array".to_string())?;
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let service_address = entry
            .pointer("/Service/Address")
            .and_then(Value::as_str)
            .unwrap_or("");
        let host = if service_address.is_empty() {
            entry
                .pointer("/Node/Address")
                .and_then(Value::as_str)
                .unwrap_or("")
        } else {
            service_address
        };
        let port = entry.pointer("/Service/Port").and_then(Value::as_u64);
        let address = match (host, port) {
            ("", _) | (_, None) => None,
            (host, Some(port)) => u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .and_then(|port| match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(Address::from_ip(ip, port)),
                    Err(_) => Address::parse_with_port(&format!("{host}:{port}")).ok(),
                }),
        };
        match address {
            Some(a) => out.push(a),
            None => tracing::warn!(
                entry = %entry,
                "consul entry without a usable address and port; skipped"
            ),
        }
    }
    Ok(out)
}

/// A whole `GET /v1/health/service/<name>` answer: its addresses and `X-Consul-Index`,
/// or what is wrong with it (naming the agent).
pub(crate) fn parse_health_answer(
    agent: &Address,
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(Vec<Address>, Option<u64>), String> {
    if !status.is_success() {
        let hint = if status == http::StatusCode::FORBIDDEN {
            " (check the token in CONSUL_HTTP_TOKEN)"
        } else {
            ""
        };
        return Err(format!(
            "consul agent at {agent} answered {status}{hint}: {}",
            super::http::snippet(body)
        ));
    }
    let index = headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let entries: Value = serde_json::from_slice(body)
        .map_err(|e| format!("consul agent at {agent} sent invalid JSON: {e}"))?;
    let addresses = addresses_of(&entries).map_err(|e| format!("consul agent at {agent}: {e}"))?;
    Ok((addresses, index))
}

pub(crate) struct ConsulResolver {
    http: HttpClient,
    target: String,
    agent: Address,
    token: Option<Secret>,
    path: String,
    wait: Duration,
    min_interval: Duration,
    timeout: Duration,
}

impl ConsulResolver {
    pub(crate) fn new(
        target: &Target,
        consul: &ConsulTarget,
        options: &ConsulOptions,
    ) -> Result<Self, DiscoveryError> {
        let agent = options
            .resolve_agent(consul.agent.as_ref())
            .map_err(|m| DiscoveryError::new(ErrorKind::InvalidTarget, target.as_str(), m))?;
        let mut path = format!(
            "/v1/health/service/{}?passing=true",
            encode(&consul.service)
        );
        if let Some(dc) = &consul.datacenter {
            path.push_str(&format!("&dc={}", encode(dc)));
        }
        for tag in &consul.tags {
            path.push_str(&format!("&tag={}", encode(tag)));
        }
        Ok(ConsulResolver {
            http: HttpClient::new(),
            target: target.as_str().to_string(),
            agent,
            token: options.resolve_token(),
            path,
            wait: options.wait,
            min_interval: options.min_interval,
            timeout: options.timeout,
        })
    }

    fn error(&self, kind: ErrorKind, message: String) -> DiscoveryError {
        DiscoveryError::new(kind, &self.target, message)
    }

    /// `text` without the token in it (an agent may quote a request in its error).
    fn scrub(&self, text: String) -> String {
        match &self.token {
            Some(t) => t.scrub(&text),
            None => text,
        }
    }

    /// One query: blocking when `index` > 0.
    async fn query(&self, index: u64) -> Result<(Vec<Address>, Option<u64>), DiscoveryError> {
        let (path, timeout) = if index > 0 {
            (
                format!(
                    "{}&index={index}&wait={}",
                    self.path,
                    go_duration(self.wait)
                ),
                self.wait
                    .saturating_add(self.wait / 16)
                    .saturating_add(self.timeout),
            )
        } else {
            (self.path.clone(), self.timeout)
        };
        let call = with_token(
            Call::new(http::Method::GET, &self.agent, &path),
            &self.token,
        );
        let answer = self.http.send(call, timeout).await.map_err(|e| {
            self.error(
                ErrorKind::Unreachable,
                self.scrub(format!("consul agent at {}: {e}", self.agent)),
            )
        })?;
        parse_health_answer(&self.agent, answer.status, &answer.headers, &answer.body)
            .map_err(|m| self.error(ErrorKind::BadResponse, self.scrub(m)))
    }

    /// The blocking-query loop: at most one query per `min_interval`, backing off on
    /// errors (the pool keeps its endpoints meanwhile).
    pub(crate) async fn run(self, ctx: Context) {
        let mut index = 0u64;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut last_start: Option<Instant> = None;
        let mut told_no_index = false;
        loop {
            if let Some(t) = last_start {
                tokio::time::sleep_until(crate::clock::later(t, self.min_interval)).await;
            }
            last_start = Some(Instant::now());
            match self.query(index).await {
                Ok((addresses, returned)) => {
                    backoff.reset();
                    if returned.is_none() && !told_no_index {
                        told_no_index = true;
                        tracing::warn!(
                            agent = %self.agent,
                            interval_ms = self.min_interval.as_millis() as u64,
                            "Consul answered without X-Consul-Index (a proxy that drops it?): \
                             queries cannot block, so the pool polls every interval_ms"
                        );
                    }
                    index = next_index(index, returned);
                    ctx.sink.report(Ok(addresses));
                }
                Err(error) => {
                    ctx.sink.report(Err(error));
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }
}

/// Registers a server with the local Consul agent, with a gRPC health check.
///
/// ```no_run
/// use resilient_runtime::discover::ConsulRegistration;
/// # async fn demo() -> Result<(), resilient_runtime::DiscoveryError> {
/// let registration = ConsulRegistration::new("auth-service", "10.0.0.7:8083".parse().unwrap())
///     .tags(["v1"])
///     .register()
///     .await?;
/// // ... serve; on shutdown:
/// registration.deregister().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConsulRegistration {
    service: String,
    address: Address,
    id: Option<String>,
    tags: Vec<String>,
    health_service: Option<String>,
    check_interval: Duration,
    check_timeout: Duration,
    deregister_after: Duration,
    options: ConsulOptions,
}

/// A duration as Consul reads it: `10s`, or `1500ms` when not whole seconds.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl ConsulRegistration {
    /// `service` reachable at `address`; the agent checks it with gRPC's health protocol.
    pub fn new(service: impl Into<String>, address: Address) -> Self {
        ConsulRegistration {
            service: service.into(),
            address,
            id: None,
            tags: Vec::new(),
            health_service: None,
            check_interval: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            deregister_after: Duration::from_secs(60),
            options: ConsulOptions::default(),
        }
    }

    /// The service id. Default: `<service>-<host>-<port>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Tags (a target's `?tag=` selects on them). Default: none.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The service name the health check asks about (`grpc.health.v1` `service`).
    /// Default: the server's overall health (empty name).
    pub fn health_service(mut self, name: impl Into<String>) -> Self {
        self.health_service = Some(name.into());
        self
    }

    /// How often the agent checks. Default: 10 s.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// How long one check may take. Default: 5 s.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// How long the check may stay critical before Consul removes the service (Consul
    /// enforces at least one minute). Default: 1 min.
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        self.deregister_after = after;
        self
    }

    /// Agent and token. Default: from `CONSUL_HTTP_ADDR` and `CONSUL_HTTP_TOKEN`.
    pub fn options(mut self, options: ConsulOptions) -> Self {
        self.options = options;
        self
    }

    /// The JSON body of `PUT /v1/agent/service/register`.
    fn body(&self, id: &str) -> Value {
        let grpc = match &self.health_service {
            Some(s) => format!("{}/{s}", self.address),
            None => self.address.to_string(),
        };
        json!({
            "ID": id,
            "Name": self.service,
            "Tags": self.tags,
            "Address": self.address.host(),
            "Port": self.address.port(),
            "Check": {
                "Name": format!("gRPC health of {}", self.address),
                "GRPC": grpc,
                "GRPCUseTLS": false,
                "Interval": go_duration(self.check_interval),
                "Timeout": go_duration(self.check_timeout),
                "DeregisterCriticalServiceAfter": go_duration(self.deregister_after),
            }
        })
    }

    /// Registers; the guard deregisters on drop or [`Registration::deregister`].
    pub async fn register(self) -> Result<Registration, DiscoveryError> {
        let target = format!("consul:///{}", self.service);
        let fail = move |kind, m: String| DiscoveryError::new(kind, &target, m);
        let agent = self
            .options
            .resolve_agent(None)
            .map_err(|m| fail(ErrorKind::InvalidTarget, m))?;
        let token = self.options.resolve_token();
        let id = self.id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                self.service,
                self.address.host().replace(':', "_"),
                self.address.port()
            )
        });
        let http = HttpClient::new();
        let call = with_token(
            Call::new(http::Method::PUT, &agent, "/v1/agent/service/register"),
            &token,
        )
        .json(&self.body(&id));
        let scrub = {
            let token = token.clone();
            move |text: String| match &token {
                Some(t) => t.scrub(&text),
                None => text,
            }
        };
        let answer = http.send(call, self.options.timeout).await.map_err(|e| {
            fail(
                ErrorKind::Unreachable,
                scrub(format!("consul agent at {agent}: {e}")),
            )
        })?;
        if !answer.status.is_success() {
            return Err(fail(
                ErrorKind::Registration,
                scrub(format!(
                    "consul agent at {agent} refused to register {id}: {} {}",
                    answer.status,
                    answer.body_snippet()
                )),
            ));
        }
        tracing::info!(service = %self.service, %id, %agent, "registered in consul");
        let timeout = self.options.timeout;
        let undo_id = id.clone();
        let undo = Box::new(move || {
            Box::pin(async move {
                let path = format!("/v1/agent/service/deregister/{}", encode(&undo_id));
                let call = with_token(Call::new(http::Method::PUT, &agent, &path), &token);
                let answer = http.send(call, timeout).await.map_err(|e| {
                    fail(
                        ErrorKind::Unreachable,
                        scrub(format!(
                            "deregistering {undo_id}: consul agent at {agent}: {e}"
                        )),
                    )
                })?;
                if !answer.status.is_success() {
                    return Err(fail(
                        ErrorKind::Registration,
                        scrub(format!(
                            "consul agent at {agent} refused to deregister {undo_id}: {} {}",
                            answer.status,
                            answer.body_snippet()
                        )),
                    ));
                }
                tracing::info!(id = %undo_id, "deregistered from consul");
                Ok(())
            }) as _
        });
        Ok(Registration::new(
            format!("consul service {id}"),
            id,
            None,
            undo,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_rules() {
        assert_eq!(next_index(0, Some(7)), 7);
        assert_eq!(next_index(7, Some(7)), 7);
        assert_eq!(next_index(7, Some(9)), 9);
        assert_eq!(next_index(9, Some(3)), 0, "backwards: reset");
        assert_eq!(next_index(0, Some(0)), 1, "never below 1");
        assert_eq!(next_index(5, None), 0);
    }

    #[test]
    fn addresses_from_health_entries() {
        let v: Value = serde_json::from_str(
            r#"[
              {"Node":{"Address":"10.0.0.1"},"Service":{"Address":"127.0.0.2","Port":8083}},
              {"Node":{"Address":"127.0.0.3"},"Service":{"Address":"","Port":8083}},
              {"Node":{"Address":"10.0.0.9"},"Service":{"Address":"::1","Port":9}},
              {"Node":{"Address":"n"},"Service":{"Address":"pod-a.local","Port":1}},
              {"Node":{"Address":""},"Service":{"Address":"","Port":1}},
              {"Node":{"Address":"x"},"Service":{"Address":"y","Port":0}}
            ]"#,
        )
        .unwrap();
        let a: Vec<String> = addresses_of(&v)
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            a,
            [
                "127.0.0.2:8083",
                "127.0.0.3:8083",
                "[::1]:9",
                "pod-a.local:1"
            ]
        );
        assert!(addresses_of(&json!({"a": 1})).is_err());
    }

    #[test]
    fn registration_body_follows_the_agent_api() {
        let r = ConsulRegistration::new("auth-service", "127.0.0.2:8083".parse().unwrap())
            .tags(["v1"])
            .health_service("nova.auth.v1.AuthService");
        let b = r.body("auth-1");
        assert_eq!(b["Name"], "auth-service");
        assert_eq!(b["Address"], "127.0.0.2");
        assert_eq!(b["Port"], 8083);
        assert_eq!(
            b["Check"]["GRPC"],
            "127.0.0.2:8083/nova.auth.v1.AuthService"
        );
        assert_eq!(b["Check"]["DeregisterCriticalServiceAfter"], "60s");
        assert_eq!(b["Check"]["Interval"], "10s");
    }

    #[test]
    fn token_stays_hidden() {
        let o = ConsulOptions::default().token(Secret::new("tok-123"));
        assert!(!format!("{o:?}").contains("tok-123"));
    }
}
