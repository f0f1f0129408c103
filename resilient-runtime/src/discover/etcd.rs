//! etcd through its JSON gateway (`/v3/kv/range`, `/v3/watch`, `/v3/lease/*`), in
//! grpc-go's naming convention: a server is the key `<prefix>/<addr>` holding
//! `{"Addr":"<addr>","Metadata":...}`, put under a lease the server keeps alive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::http::{Call, HttpClient};
use super::registration::Registration;
use super::resolve::{Backoff, Context};
use super::target::{ETCD_PORT, parse_endpoint_list};
use super::{Address, DiscoveryError, ErrorKind, EtcdTarget, Secret, Target};

/// etcd's largest lease TTL, in seconds (`MaxLeaseTTL`).
const MAX_LEASE_TTL_SECS: u64 = 9_000_000_000;

/// The environment variable listing etcd endpoints (`http://10.0.0.7:2379,...`;
/// `127.0.0.1:2379` when unset).
pub const ETCD_ENDPOINTS: &str = "ETCD_ENDPOINTS";

/// etcd settings for pools and registrations.
///
/// Endpoints are, first to last: the target's authority
/// (`etcd://10.0.0.7:2379/prefix`), [`endpoints`](Self::endpoints), `ETCD_ENDPOINTS`,
/// `127.0.0.1:2379`. They are tried in turn.
///
/// With [`credentials`](Self::credentials), the pool and registrations authenticate
/// (`/v3/auth/authenticate`) and send the token etcd gives in `Authorization`; the
/// password and the token are never logged nor shown (`Debug` prints `***`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    endpoints: Vec<Address>,
    timeout: Duration,
    credentials: Option<Credentials>,
}

/// An etcd user and password.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: Secret,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: Vec::new(),
            timeout: Duration::from_secs(5),
            credentials: None,
        }
    }
}

impl EtcdOptions {
    /// The endpoints. Default: `ETCD_ENDPOINTS`, else `127.0.0.1:2379`.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = Address>) -> Self {
        self.endpoints = endpoints.into_iter().collect();
        self
    }

    /// How long one request (not a watch) may take. Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The user and password of an etcd with authentication on. Default: none.
    pub fn credentials(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password,
        });
        self
    }

    fn resolve_endpoints(&self, from_target: &[Address]) -> Result<Vec<Address>, String> {
        if !from_target.is_empty() {
            return Ok(from_target.to_vec());
        }
        if !self.endpoints.is_empty() {
            return Ok(self.endpoints.clone());
        }
        match std::env::var(ETCD_ENDPOINTS) {
            Ok(value) if !value.trim().is_empty() => parse_endpoint_list(&value, ETCD_PORT)
                .map_err(|e| format!("{ETCD_ENDPOINTS}=`{value}`: {e}")),
            _ => Ok(vec![Address::from_ip([127, 0, 0, 1].into(), ETCD_PORT)]),
        }
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the keyspace.
    vec![0]
}

/// An int64 in etcd's JSON: a string or a number.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// The address a grpc-go naming value announces.
pub(crate) fn address_of(key: &str, value: &[u8]) -> Option<Address> {
    let addr = match serde_json::from_slice::<Value>(value) {
        Ok(v) => v.get("Addr").and_then(Value::as_str).map(str::to_string),
        Err(_) => std::str::from_utf8(value)
            .ok()
            .map(|s| s.trim().to_string()),
    };
    match addr.as_deref().map(Address::parse_with_port) {
        Some(Ok(a)) => Some(a),
        _ => {
            tracing::warn!(key, "etcd value is not {{\"Addr\":\"host:port\"}}; skipped");
            None
        }
    }
}

/// A JSON-gateway client over a list of endpoints, tried in turn.
#[derive(Clone)]
struct Gateway {
    http: HttpClient,
    endpoints: Arc<[Address]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    timeout: Duration,
    auth: Option<Arc<Auth>>,
}

/// Credentials and the token they last got.
struct Auth {
    credentials: Credentials,
    token: std::sync::Mutex<Option<Secret>>,
}

impl Auth {
    fn token(&self) -> Option<Secret> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_token(&self, token: Option<Secret>) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// `text` with the password and token replaced by `***`, for messages.
    fn scrub(&self, text: &str) -> String {
        let mut out = self.credentials.password.scrub(text);
        if let Some(t) = self.token() {
            out = t.scrub(&out);
        }
        out
    }
}

/// etcd's error for a missing or stale token.
fn is_auth_error(code: i64, message: &str) -> bool {
    code == 16 || message.contains("invalid auth token") || message.contains("user name is empty")
}

/// The JSON of a gateway answer, or etcd's error in it.
pub(crate) fn gateway_answer(
    endpoint: &Address,
    status: http::StatusCode,
    body: &[u8],
) -> Result<Value, (i64, String)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        (
            -1,
            format!(
                "etcd at {endpoint} sent invalid JSON ({e}): {}",
                super::http::snippet(body)
            ),
        )
    })?;
    if let Some(m) = v.get("error").or(v.pointer("/result/error")) {
        let code = v.get("code").and_then(int).unwrap_or(-1);
        let m = v
            .get("message")
            .and_then(Value::as_str)
            .or(m.as_str())
            .unwrap_or("unknown error");
        return Err((code, m.to_string()));
    }
    if !status.is_success() {
        return Err((-1, format!("etcd at {endpoint} answered {status}")));
    }
    Ok(v)
}

/// Why a gateway call failed.
enum GatewayError {
    /// No endpoint answered.
    Unreachable(String),
    /// etcd answered with an error (its gRPC code and message).
    Etcd(i64, String),
}

impl GatewayError {
    fn message(&self) -> String {
        match self {
            GatewayError::Unreachable(m) => m.clone(),
            GatewayError::Etcd(code, m) => format!("etcd error {code}: {m}"),
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::Unreachable(_) => ErrorKind::Unreachable,
            GatewayError::Etcd(..) => ErrorKind::BadResponse,
        }
    }
}

impl Gateway {
    fn new(endpoints: Vec<Address>, options: &EtcdOptions) -> Self {
        Gateway {
            http: HttpClient::new(),
            endpoints: endpoints.into(),
            next: Default::default(),
            timeout: options.timeout,
            auth: options.credentials.clone().map(|credentials| {
                Arc::new(Auth {
                    credentials,
                    token: std::sync::Mutex::new(None),
                })
            }),
        }
    }

    /// `text` without any secret of ours in it.
    fn scrub(&self, text: String) -> String {
        match &self.auth {
            Some(auth) => auth.scrub(&text),
            None => text,
        }
    }

    /// A call to `endpoint`, carrying the auth token (fetched first if there is none).
    async fn call<'a>(
        &self,
        endpoint: &'a Address,
        path: &'a str,
        body: &Value,
    ) -> Result<Call<'a>, GatewayError> {
        let call = Call::new(http::Method::POST, endpoint, path).json(body);
        let Some(auth) = &self.auth else {
            return Ok(call);
        };
        let token = match auth.token() {
            Some(t) => t,
            None => {
                let t = self.authenticate(endpoint, auth).await?;
                auth.set_token(Some(t.clone()));
                t
            }
        };
        Ok(call.header("authorization", token.expose().to_string()))
    }

    async fn authenticate(&self, endpoint: &Address, auth: &Auth) -> Result<Secret, GatewayError> {
        let body = json!({
            "name": auth.credentials.user,
            "password": auth.credentials.password.expose(),
        });
        let call = Call::new(http::Method::POST, endpoint, "/v3/auth/authenticate").json(&body);
        let answer = self.http.send(call, self.timeout).await.map_err(|e| {
            GatewayError::Unreachable(auth.scrub(&format!("etcd at {endpoint}: {e}")))
        })?;
        let v = gateway_answer(endpoint, answer.status, &answer.body).map_err(|(code, m)| {
            GatewayError::Etcd(
                code,
                auth.scrub(&format!(
                    "etcd at {endpoint} refused the credentials of user `{}`: {m}",
                    auth.credentials.user
                )),
            )
        })?;
        match v.get("token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Ok(Secret::new(t)),
            _ => Err(GatewayError::Etcd(
                -1,
                format!(
                    "etcd at {endpoint} authenticated `{}` without a token",
                    auth.credentials.user
                ),
            )),
        }
    }

    fn endpoint(&self) -> &Address {
        let i = self.next.load(Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
    }

    fn rotate(&self) {
        self.next.fetch_add(1, Ordering::Relaxed);
    }

    /// POSTs `body` to `path`; on a transport error tries the next endpoint. A stale
    /// auth token is renewed once.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, GatewayError> {
        match self.post_once(path, body).await {
            Err(GatewayError::Etcd(code, m)) if self.auth.is_some() && is_auth_error(code, &m) => {
                if let Some(auth) = &self.auth {
                    auth.set_token(None);
                }
                self.post_once(path, body).await
            }
            other => other,
        }
    }

    async fn post_once(&self, path: &str, body: &Value) -> Result<Value, GatewayError> {
        let mut errors = Vec::new();
        for _ in 0..self.endpoints.len() {
            let endpoint = self.endpoint().clone();
            let call = match self.call(&endpoint, path, body).await {
                Ok(call) => call,
                Err(GatewayError::Unreachable(e)) => {
                    errors.push(e);
                    self.rotate();
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.http.send(call, self.timeout).await {
                Err(e) => {
                    errors.push(self.scrub(format!("etcd at {endpoint}: {e}")));
                    self.rotate();
                }
                Ok(answer) => {
                    return gateway_answer(&endpoint, answer.status, &answer.body)
                        .map_err(|(code, m)| GatewayError::Etcd(code, self.scrub(m)));
                }
            }
        }
        Err(GatewayError::Unreachable(errors.join("; ")))
    }
}

pub(crate) struct EtcdResolver {
    gateway: Gateway,
    target: String,
    /// `prefix/`.
    key: Vec<u8>,
}

impl EtcdResolver {
    pub(crate) fn new(
        target: &Target,
        etcd: &EtcdTarget,
        options: &EtcdOptions,
    ) -> Result<Self, DiscoveryError> {
        let endpoints = options
            .resolve_endpoints(&etcd.endpoints)
            .map_err(|m| DiscoveryError::new(ErrorKind::InvalidTarget, target.as_str(), m))?;
        Ok(EtcdResolver {
            gateway: Gateway::new(endpoints, options),
            target: target.as_str().to_string(),
            key: format!("{}/", etcd.prefix).into_bytes(),
        })
    }

    fn range(&self) -> Value {
        json!({
            "key": B64.encode(&self.key),
            "range_end": B64.encode(prefix_end(&self.key)),
        })
    }

    /// Every server under the prefix, and the revision it was read at.
    async fn list(&self) -> Result<(BTreeMap<String, Address>, i64), DiscoveryError> {
        let v = self
            .gateway
            .post("/v3/kv/range", &self.range())
            .await
            .map_err(|e| DiscoveryError::new(e.kind(), &self.target, e.message()))?;
        Ok(members_of(&v))
    }

    /// Follows the watch stream from `start`, applying events to `members` and reporting
    /// each change. Returns why it ended.
    async fn watch(
        &self,
        start: i64,
        members: &mut BTreeMap<String, Address>,
        ctx: &Context,
    ) -> String {
        let mut request = self.range();
        request["start_revision"] = json!(start.to_string());
        request["progress_notify"] = json!(true);
        let body = json!({ "create_request": request });
        let endpoint = self.gateway.endpoint().clone();
        let call = match self.gateway.call(&endpoint, "/v3/watch", &body).await {
            Ok(call) => call,
            Err(e) => {
                self.gateway.rotate();
                return e.message();
            }
        };
        let response = match self.gateway.http.open(call, self.gateway.timeout).await {
            Ok(r) => r,
            Err(e) => {
                self.gateway.rotate();
                return self.gateway.scrub(format!("etcd at {endpoint}: {e}"));
            }
        };
        if !response.status().is_success() {
            self.gateway.rotate();
            return format!(
                "etcd at {endpoint} answered {} to a watch",
                response.status()
            );
        }
        let mut body = response.into_body();
        let mut decoder = WatchDecoder::default();
        loop {
            let frame = match body.frame().await {
                None => return format!("etcd at {endpoint} ended the watch"),
                Some(Err(e)) => return format!("etcd at {endpoint}: watch broken: {e}"),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let messages = match decoder.feed(&data) {
                Ok(m) => m,
                Err(e) => return self.gateway.scrub(format!("etcd at {endpoint}: {e}")),
            };
            for message in messages {
                match apply_watch_message(&message, members) {
                    Ok(true) => ctx.sink.report(Ok(members.values().cloned().collect())),
                    Ok(false) => {}
                    Err(why) => {
                        if let Some(auth) = &self.gateway.auth
                            && why.contains("auth")
                        {
                            auth.set_token(None);
                        }
                        return self.gateway.scrub(format!("etcd at {endpoint}: {why}"));
                    }
                }
            }
        }
    }

    /// List, then watch; on any break, back off and list again. Errors are reported (the
    /// pool keeps its endpoints meanwhile). The backoff starts over only after a watch
    /// that lasted [`HEALTHY_WATCH`]: a watch refused or broken at once (an error status,
    /// a compacted revision, a proxy closing streams) waits longer each time.
    pub(crate) async fn run(self, ctx: Context) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.list().await {
                Err(error) => {
                    ctx.sink.report(Err(error));
                    self.gateway.rotate();
                }
                Ok((mut members, revision)) => {
                    ctx.sink.report(Ok(members.values().cloned().collect()));
                    let started = tokio::time::Instant::now();
                    let why = self
                        .watch(revision.saturating_add(1), &mut members, &ctx)
                        .await;
                    tracing::debug!(target = %self.target, %why, "etcd watch ended; listing again");
                    if started.elapsed() >= HEALTHY_WATCH {
                        backoff.reset();
                    }
                }
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
}

/// The servers in a `/v3/kv/range` answer, and the revision it was read at.
pub(crate) fn members_of(v: &Value) -> (BTreeMap<String, Address>, i64) {
    let revision = v.pointer("/header/revision").and_then(int).unwrap_or(0);
    let mut members = BTreeMap::new();
    for kv in v.get("kvs").and_then(Value::as_array).into_iter().flatten() {
        if let Some((key, value)) = decode_kv(kv)
            && let Some(a) = address_of(&key, &value)
        {
            members.insert(key, a);
        }
    }
    (members, revision)
}

/// How long a watch must have lasted for the next one to start without a growing wait.
pub(crate) const HEALTHY_WATCH: Duration = Duration::from_secs(10);

/// The longest watch message read: a larger one ends the watch (and the pool lists again)
/// instead of growing the buffer without end.
pub(crate) const MAX_WATCH_MESSAGE: usize = 4 << 20;

/// Splits the watch stream (JSON objects one after another, in chunks cut anywhere) into
/// messages.
#[derive(Default)]
pub(crate) struct WatchDecoder {
    buffer: Vec<u8>,
}

impl WatchDecoder {
    /// Adds a chunk; returns the messages it completed.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Vec<Value>, String> {
        self.buffer.extend_from_slice(data);
        let mut stream = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
        let mut messages = Vec::new();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(v)) => {
                    consumed = stream.byte_offset();
                    messages.push(v);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(format!("watch sent invalid JSON: {e}")),
                None => {
                    consumed = self.buffer.len();
                    break;
                }
            }
        }
        self.buffer.drain(..consumed);
        if self.buffer.len() > MAX_WATCH_MESSAGE {
            return Err(format!(
                "watch message over {} MiB",
                MAX_WATCH_MESSAGE >> 20
            ));
        }
        Ok(messages)
    }
}

/// Applies one watch message to `members`: whether they changed, or why the watch ends.
pub(crate) fn apply_watch_message(
    message: &Value,
    members: &mut BTreeMap<String, Address>,
) -> Result<bool, String> {
    if let Some(e) = message.get("error") {
        return Err(format!("watch error: {e}"));
    }
    let result = &message["result"];
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        let reason = result
            .get("cancel_reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(format!("etcd canceled the watch: {reason}"));
    }
    if result.get("compact_revision").and_then(int).unwrap_or(0) > 0 {
        return Err("the watched revision was compacted".to_string());
    }
    let mut changed = false;
    for event in result
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some((key, value)) = event.get("kv").and_then(decode_kv) else {
            continue;
        };
        if event.get("type").and_then(Value::as_str) == Some("DELETE") {
            changed |= members.remove(&key).is_some();
        } else if let Some(a) = address_of(&key, &value) {
            changed |= members.insert(key, a.clone()).as_ref() != Some(&a);
        } else {
            // A value that is no longer an address: the key's old address is stale too.
            changed |= members.remove(&key).is_some();
        }
    }
    Ok(changed)
}

fn decode_kv(kv: &Value) -> Option<(String, Vec<u8>)> {
    let key = B64.decode(kv.get("key")?.as_str()?).ok()?;
    let key = String::from_utf8(key).ok()?;
    let value = match kv.get("value").and_then(Value::as_str) {
        Some(v) => B64.decode(v).ok()?,
        None => Vec::new(),
    };
    Some((key, value))
}

/// Registers a server in etcd under a lease it keeps alive, in grpc-go's naming
/// convention.
///
/// ```no_run
/// use resilient_runtime::discover::EtcdRegistration;
/// # async fn demo() -> Result<(), resilient_runtime::DiscoveryError> {
/// let registration =
///     EtcdRegistration::new("nova/services/auth-service", "10.0.0.7:8083".parse().unwrap())
///         .register()
///         .await?;
/// // key `nova/services/auth-service/10.0.0.7:8083`, value {"Addr":"10.0.0.7:8083","Metadata":null}
/// registration.deregister().await?; // revokes the lease
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EtcdRegistration {
    prefix: String,
    address: Address,
    ttl: Duration,
    metadata: Value,
    options: EtcdOptions,
}

impl EtcdRegistration {
    /// The server at `address`, under `prefix` (a target's path: `nova/services/auth-service`).
    pub fn new(prefix: impl Into<String>, address: Address) -> Self {
        EtcdRegistration {
            prefix: prefix.into().trim_matches('/').to_string(),
            address,
            ttl: Duration::from_secs(10),
            metadata: Value::Null,
            options: EtcdOptions::default(),
        }
    }

    /// The lease's time to live (whole seconds, from 1 to etcd's largest, 9 000 000 000):
    /// how long the entry outlives a crashed server. It is renewed every third of it.
    /// Default: 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.clamp(
            Duration::from_secs(1),
            Duration::from_secs(MAX_LEASE_TTL_SECS),
        );
        self
    }

    /// The `Metadata` field of the value. Default: `null`.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Endpoints and timeout. Default: from `ETCD_ENDPOINTS`.
    pub fn options(mut self, options: EtcdOptions) -> Self {
        self.options = options;
        self
    }

    /// Grants a lease, puts the key under it and keeps the lease alive in a background
    /// task; the guard revokes the lease (removing the key) on drop or
    /// [`Registration::deregister`].
    pub async fn register(self) -> Result<Registration, DiscoveryError> {
        let target = format!("etcd:///{}", self.prefix);
        if self.prefix.is_empty() {
            return Err(DiscoveryError::new(
                ErrorKind::InvalidTarget,
                &target,
                "empty key prefix",
            ));
        }
        let endpoints = self
            .options
            .resolve_endpoints(&[])
            .map_err(|m| DiscoveryError::new(ErrorKind::InvalidTarget, &target, m))?;
        let gateway = Gateway::new(endpoints, &self.options);
        let key = format!("{}/{}", self.prefix, self.address);
        let value = json!({ "Addr": self.address.to_string(), "Metadata": self.metadata });
        let entry = Arc::new(Entry {
            gateway,
            key: key.clone(),
            value: value.to_string(),
            ttl_secs: self.ttl.as_secs().max(1) as i64,
            lease: AtomicI64::new(0),
            target: target.clone(),
        });
        entry.put_under_new_lease().await?;
        tracing::info!(%key, "registered in etcd");

        let keeper = entry.clone();
        let keepalive = tokio::spawn(async move { keeper.keep_alive().await }).abort_handle();
        let undo = Box::new(move || Box::pin(async move { entry.revoke().await }) as _);
        Ok(Registration::new(
            format!("etcd key {key}"),
            key,
            Some(keepalive),
            undo,
        ))
    }
}

/// A registered key and its current lease.
struct Entry {
    gateway: Gateway,
    key: String,
    value: String,
    ttl_secs: i64,
    lease: AtomicI64,
    target: String,
}

impl Entry {
    fn error(&self, e: GatewayError, doing: &str) -> DiscoveryError {
        let kind = match e {
            GatewayError::Unreachable(_) => ErrorKind::Unreachable,
            GatewayError::Etcd(..) => ErrorKind::Registration,
        };
        DiscoveryError::new(
            kind,
            &self.target,
            format!("{doing} {}: {}", self.key, e.message()),
        )
    }

    async fn put_under_new_lease(&self) -> Result<(), DiscoveryError> {
        let granted = self
            .gateway
            .post(
                "/v3/lease/grant",
                &json!({ "TTL": self.ttl_secs.to_string() }),
            )
            .await
            .map_err(|e| self.error(e, "granting a lease for"))?;
        let lease = granted.get("ID").and_then(int).ok_or_else(|| {
            DiscoveryError::new(
                ErrorKind::BadResponse,
                &self.target,
                format!("etcd granted a lease without an ID: {granted}"),
            )
        })?;
        self.lease.store(lease, Ordering::Release);
        self.gateway
            .post(
                "/v3/kv/put",
                &json!({
                    "key": B64.encode(&self.key),
                    "value": B64.encode(&self.value),
                    "lease": lease.to_string(),
                }),
            )
            .await
            .map_err(|e| self.error(e, "putting"))?;
        Ok(())
    }

    /// Renews the lease every third of its TTL; if it expired anyway (a long pause, etcd
    /// restored from a snapshot), registers again under a new one.
    async fn keep_alive(&self) {
        let period = Duration::from_millis((self.ttl_secs as u64 * 1000 / 3).max(300));
        loop {
            tokio::time::sleep(period).await;
            let lease = self.lease.load(Ordering::Acquire);
            let answer = self
                .gateway
                .post("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
                .await;
            let alive = match &answer {
                Ok(v) => v.pointer("/result/TTL").and_then(int).unwrap_or(0) > 0,
                Err(GatewayError::Etcd(..)) => false,
                Err(GatewayError::Unreachable(m)) => {
                    tracing::warn!(key = %self.key, error = %m, "lease keep-alive failed; retrying");
                    continue;
                }
            };
            if !alive {
                tracing::warn!(key = %self.key, "lease expired; registering again");
                if let Err(error) = self.put_under_new_lease().await {
                    tracing::warn!(%error, "registering again failed; retrying");
                }
            }
        }
    }

    /// Revokes the lease, which deletes the key.
    async fn revoke(&self) -> Result<(), DiscoveryError> {
        let lease = self.lease.load(Ordering::Acquire);
        match self
            .gateway
            .post("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
        {
            Ok(_) => {
                tracing::info!(key = %self.key, "deregistered from etcd");
                Ok(())
            }
            // Already gone (expired): make sure the key is too.
            Err(GatewayError::Etcd(5, _)) => self
                .gateway
                .post(
                    "/v3/kv/deleterange",
                    &json!({ "key": B64.encode(&self.key) }),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.error(e, "deleting")),
            Err(e) => Err(self.error(e, "revoking the lease of")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn values_in_grpc_go_naming() {
        let a = address_of(
            "p/127.0.0.2:8083",
            br#"{"Addr":"127.0.0.2:8083","Metadata":null}"#,
        );
        assert_eq!(a.unwrap().to_string(), "127.0.0.2:8083");
        assert_eq!(
            address_of("p/x", b"127.0.0.3:1").unwrap().to_string(),
            "127.0.0.3:1"
        );
        assert!(address_of("p/x", br#"{"Metadata":1}"#).is_none());
        assert!(address_of("p/x", b"nonsense").is_none());
    }

    #[test]
    fn ints_as_strings_or_numbers() {
        assert_eq!(int(&json!("12")), Some(12));
        assert_eq!(int(&json!(12)), Some(12));
        assert_eq!(int(&json!(null)), None);
    }
}
