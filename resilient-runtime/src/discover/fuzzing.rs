//! Not API: the registry-answer parsers, reachable from the property tests in `tests/`
//! that feed them bad input. Each takes what the network would give and returns what the
//! pool would use, or the error message it would report.

#[cfg(any(feature = "consul", feature = "etcd"))]
use super::Address;

/// The registry address errors name: `127.0.0.1:<port>`.
#[cfg(any(feature = "consul", feature = "etcd"))]
fn registry(port: u16) -> Address {
    Address::from_ip([127, 0, 0, 1].into(), port)
}

/// Parses a Consul `GET /v1/health/service/<name>` answer: the addresses (as text) and
/// the `X-Consul-Index`.
#[cfg(feature = "consul")]
pub fn consul_health_answer(
    status: u16,
    index_header: Option<&[u8]>,
    body: &[u8],
) -> Result<(Vec<String>, Option<u64>), String> {
    let status = http::StatusCode::from_u16(status).map_err(|e| format!("status {status}: {e}"))?;
    let mut headers = http::HeaderMap::new();
    if let Some(v) = index_header {
        let v = http::HeaderValue::from_bytes(v).map_err(|e| format!("header: {e}"))?;
        headers.insert("x-consul-index", v);
    }
    super::consul::parse_health_answer(&registry(8500), status, &headers, body)
        .map(|(a, i)| (a.iter().map(ToString::to_string).collect(), i))
}

/// Parses an etcd `/v3/kv/range` answer: the announced addresses and the revision.
#[cfg(feature = "etcd")]
pub fn etcd_range_answer(status: u16, body: &[u8]) -> Result<(Vec<String>, i64), String> {
    let status = http::StatusCode::from_u16(status).map_err(|e| format!("status {status}: {e}"))?;
    let v = super::etcd::gateway_answer(&registry(2379), status, body)
        .map_err(|(code, m)| format!("etcd error {code}: {m}"))?;
    let (members, revision) = super::etcd::members_of(&v);
    Ok((
        members.values().map(ToString::to_string).collect(),
        revision,
    ))
}

/// Feeds an etcd `/v3/watch` stream, cut into `chunks`, to the watch decoder over an
/// empty member set: the members at the end and the changes reported, or why the watch
/// would end.
#[cfg(feature = "etcd")]
pub fn etcd_watch_stream(chunks: &[&[u8]]) -> Result<(Vec<String>, usize), String> {
    let mut decoder = super::etcd::WatchDecoder::default();
    let mut members = std::collections::BTreeMap::new();
    let mut changes = 0;
    for chunk in chunks {
        for message in decoder.feed(chunk)? {
            if super::etcd::apply_watch_message(&message, &mut members)? {
                changes += 1;
            }
        }
    }
    Ok((members.values().map(ToString::to_string).collect(), changes))
}

/// Parses an `ETCD_ENDPOINTS` / `CONSUL_HTTP_ADDR` value.
#[cfg(any(feature = "consul", feature = "etcd"))]
pub fn endpoint_list(value: &str) -> Result<Vec<String>, String> {
    super::target::parse_endpoint_list(value, 2379)
        .map(|l| l.iter().map(ToString::to_string).collect())
}

/// The largest watch message the etcd decoder buffers.
#[cfg(feature = "etcd")]
pub const MAX_WATCH_MESSAGE: usize = super::etcd::MAX_WATCH_MESSAGE;
