//! A small HTTP/1.1 client for the Consul agent and etcd's JSON gateway.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Address;

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest answer read from a registry; a larger one is an error, not an allocation
/// without end. (A Consul health list of thousands of instances is a few MiB.)
pub(crate) const MAX_ANSWER: usize = 32 << 20;

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A finished response.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    #[cfg_attr(not(feature = "consul"), allow(dead_code))]
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The body, shortened, for an error message.
    #[cfg_attr(not(feature = "consul"), allow(dead_code))]
    pub(crate) fn body_snippet(&self) -> String {
        snippet(&self.body)
    }
}

/// A body, shortened to 200 characters, for an error message.
pub(crate) fn snippet(body: &[u8]) -> String {
    let head = &body[..body.len().min(1024)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None if head.len() < body.len() => format!("{text}..."),
        None => text.to_string(),
    }
}

/// One request: method, `http://address/path_and_query`, headers, optional JSON body.
pub(crate) struct Call<'a> {
    pub(crate) method: http::Method,
    pub(crate) address: &'a Address,
    pub(crate) path: &'a str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: http::Method, address: &'a Address, path: &'a str) -> Self {
        Call {
            method,
            address,
            path,
            headers: Vec::new(),
            body: None,
        }
    }

    #[cfg_attr(not(feature = "consul"), allow(dead_code))]
    pub(crate) fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = Some(value.to_string().into_bytes());
        self.headers
            .push(("content-type", "application/json".to_string()));
        self
    }
}

/// Idle time before the first keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the connection is closed.
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;

impl HttpClient {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        // A watch or blocking query can wait minutes for its answer: TCP keepalive finds a
        // registry host that vanished without closing the connection (in about a minute)
        // and the loop lists again.
        connector.set_keepalive(Some(KEEPALIVE_IDLE));
        connector.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
        connector.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `call` and returns the response with its body unread. Errors are messages
    /// naming the address (never a header value).
    pub(crate) async fn open(
        &self,
        call: Call<'_>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, String> {
        let uri = format!("http://{}{}", call.address, call.path);
        let mut request = http::Request::builder().method(call.method).uri(&uri);
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(call.body.unwrap_or_default())))
            .map_err(|e| format!("cannot build a request to {}: {e}", call.address))?;
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(format!(
                "no answer from {} within {} ms",
                call.address,
                timeout.as_millis()
            )),
            Ok(Err(e)) => Err(format!("cannot reach {}: {}", call.address, chain(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends `call` and reads the whole response, all within `timeout`.
    pub(crate) async fn send(&self, call: Call<'_>, timeout: Duration) -> Result<Answer, String> {
        let address = call.address.clone();
        let started = tokio::time::Instant::now();
        let response = self.open(call, timeout).await?;
        let (parts, body) = response.into_parts();
        let left = timeout.saturating_sub(started.elapsed());
        let body = match tokio::time::timeout(left, Limited::new(body, MAX_ANSWER).collect()).await
        {
            Err(_) => return Err(format!("no full answer from {address} in time")),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(format!(
                    "the answer of {address} is over {} MiB",
                    MAX_ANSWER >> 20
                ));
            }
            Ok(Err(e)) => return Err(format!("reading the answer of {address}: {e}")),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An error with its causes, `: `-separated (hyper's own message is terse).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg_attr(not(feature = "consul"), allow(dead_code))]
/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn snippets_are_short() {
        assert_eq!(super::snippet(b"  hi \n"), "hi");
        let long = "x".repeat(5000);
        assert_eq!(super::snippet(long.as_bytes()).len(), 203);
        assert_eq!(super::snippet(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn encodes() {
        assert_eq!(super::encode("auth-service"), "auth-service");
        assert_eq!(super::encode("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
