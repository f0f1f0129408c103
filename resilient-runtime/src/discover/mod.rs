//! Service discovery: target strings, the resolvers behind them, and registration.
//!
//! A dependency is named by one target string, read from configuration:
//!
//! | target | endpoints from |
//! |---|---|
//! | `static:///10.0.0.1:8083,10.0.0.2:8083` | the list itself |
//! | `dns:///auth-service.nova.svc.cluster.local:8083` | A/AAAA records, re-resolved every 30 s |
//! | `dns:///_grpc._tcp.auth-service.nova.svc.cluster.local` | SRV records (port from the record) |
//! | `dns://127.0.0.1:5353/auth-service:8083` | the same, asking the DNS server named as authority |
//! | `auth-service:8083`, `http://auth-service:8083` | the same as `dns:///auth-service:8083` |
//! | `consul:///auth-service?dc=eu1&tag=v2` | Consul's health API (passing instances), blocking queries |
//! | `etcd:///nova/services/auth-service` | etcd keys under the prefix, grpc-go's naming convention, watched |
//!
//! [`Target::parse`] checks a string without touching the network; [`Pool`](crate::Pool)
//! resolves it in the background. [`target_for`] finds a generated client's target in
//! the environment or the runtime config file.
//!
//! Servers announce themselves with `ConsulRegistration` (feature `consul`) or
//! `EtcdRegistration` (feature `etcd`); the `Registration` guard they return removes the
//! entry on drop or on `Registration::deregister`.

mod address;
mod for_service;
pub(crate) mod target;

#[cfg(feature = "consul")]
mod consul;
#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(any(feature = "consul", feature = "etcd"))]
mod http;
#[cfg(any(feature = "consul", feature = "etcd"))]
mod registration;
pub(crate) mod resolve;

#[doc(hidden)]
pub mod fuzzing;

use std::fmt;
use std::sync::Arc;

pub use address::Address;
#[cfg(feature = "consul")]
pub use consul::{CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ConsulOptions, ConsulRegistration};
#[cfg(feature = "dns")]
pub use dns::{DnsOptions, IpFamily};
#[cfg(feature = "etcd")]
pub use etcd::{ETCD_ENDPOINTS, EtcdOptions, EtcdRegistration};
pub use for_service::{target_for, target_from};
#[cfg(any(feature = "consul", feature = "etcd"))]
pub use registration::Registration;
pub use target::{
    CONSUL_PORT, ConsulTarget, DNS_PORT, DnsTarget, ETCD_PORT, EtcdTarget, Target, TargetKind,
};

/// What kind of problem a [`DiscoveryError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The target string is malformed or uses an unknown scheme.
    InvalidTarget,
    /// The target needs a Cargo feature this build lacks (`dns`, `consul`, `etcd`).
    Unsupported,
    /// No target is configured for a service.
    NotConfigured,
    /// The DNS server, Consul agent or etcd could not be reached, or timed out.
    Unreachable,
    /// The registry answered, but with an error or something that could not be read.
    BadResponse,
    /// The name exists nowhere or has no addresses.
    NoEndpoints,
    /// Registering or deregistering a server failed.
    Registration,
    /// The call was made outside a tokio runtime.
    NoRuntime,
}

/// A discovery problem, naming the target (or service) and what is wrong.
///
/// Messages are lowercase and never contain a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError {
    kind: ErrorKind,
    target: Arc<str>,
    message: String,
}

impl DiscoveryError {
    pub(crate) fn new(kind: ErrorKind, target: &str, message: impl Into<String>) -> Self {
        DiscoveryError {
            kind,
            target: Arc::from(printable(&target::redact(target)).as_ref()),
            message: message.into(),
        }
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The target (or, for [`ErrorKind::NotConfigured`], the service) it is about.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// What is wrong, without the target.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.target.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.target, self.message)
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so that a target quoted in
/// a message or log line cannot break the line or forge another.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A secret (a Consul token): shown as `***` by `Debug` and `Display`, so that it never
/// reaches a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***` (for messages that
    /// quote what a server said, which might echo it).
    #[cfg_attr(not(any(feature = "consul", feature = "etcd")), allow(dead_code))]
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("s3cr3t-token");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert_eq!(s.expose(), "s3cr3t-token");
        assert_eq!(s.scrub("no s3cr3t-token here"), "no *** here");
        assert_eq!(Secret::new("").scrub("as is"), "as is");
    }

    #[test]
    fn errors_name_the_target() {
        let e = DiscoveryError::new(ErrorKind::InvalidTarget, "dns:///x", "no port");
        assert_eq!(e.to_string(), "`dns:///x`: no port");
        let e = DiscoveryError::new(ErrorKind::InvalidTarget, "http://u:pw@h:1", "bad");
        assert!(!e.to_string().contains("pw"), "{e}");
        let e = DiscoveryError::new(ErrorKind::InvalidTarget, "a\n:80\u{1b}[2J", "bad");
        assert_eq!(e.to_string(), "`a\\n:80\\u{1b}[2J`: bad");
    }
}
