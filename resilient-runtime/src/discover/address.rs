//! One endpoint's network address: a host (IP literal or name) and a port.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Where one replica listens: `127.0.0.2:8083`, `[::1]:8083` or `pod-a.local:8083`.
///
/// Ordered and hashed by its text, so that a set of addresses has one stable order.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    host: String,
    port: u16,
}

impl Address {
    /// An address from an IP and a port.
    pub fn from_ip(ip: IpAddr, port: u16) -> Self {
        Address {
            host: ip.to_string(),
            port,
        }
    }

    /// The host: an IP literal (IPv6 without brackets) or a DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The IP, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// As a socket address, when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The `http://host:port` URI a channel to this address connects to.
    pub fn uri(&self) -> String {
        format!("http://{self}")
    }

    /// Parses `host:port` (`[v6]:port` for IPv6). `what` names the input in errors.
    pub(crate) fn parse_with_port(text: &str) -> Result<Address, String> {
        match split_host_port(text)? {
            (host, Some(port)) => Ok(Address { host, port }),
            (host, None) => Err(format!(
                "`{text}` has no port; write `{}:PORT`",
                bracket(&host)
            )),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::from_ip(addr.ip(), addr.port())
    }
}

impl FromStr for Address {
    type Err = String;

    /// Parses `host:port`, `[v6]:port`; the error says what is wrong.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse_with_port(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", bracket(&self.host), self.port)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Splits `host[:port]`, `[v6][:port]`; checks the host is an IP literal or a valid DNS
/// name and the port a non-zero number.
pub(crate) fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    if text.is_empty() {
        return Err("empty address".to_string());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("`{text}`: `[` without a closing `]`"));
        };
        let host = &rest[..end];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{host}` in brackets is not an IPv6 address"));
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("`{text}`: unexpected `{p}` after `]`")),
            },
        };
        (host.to_string(), port)
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "IPv6 address `{text}` needs brackets: `[{text}]:PORT`"
        ));
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => {
                if host.contains(':') {
                    return Err(format!(
                        "`{text}`: too many `:`; IPv6 addresses go in brackets: `[::1]:8083`"
                    ));
                }
                (host.to_string(), Some(port))
            }
            None => (text.to_string(), None),
        }
    };
    if !host.contains(':') {
        check_host(&host)?;
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

pub(crate) fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("empty port after `:`".to_string());
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port `{p}` is not a number"));
    }
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("port `{p}` is above 65535")),
    }
}

/// An IPv4 literal or a DNS name (labels of letters, digits, `-` and `_`; at most 253
/// characters; an optional trailing dot).
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".to_string());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err(format!(
            "host name of {} characters is too long",
            host.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("host `{host}` has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("host `{host}` has a label over 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("host `{host}` contains `{c}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = [
            ("127.0.0.2:8083", "127.0.0.2", 8083),
            ("[::1]:80", "::1", 80),
            (
                "auth-service.nova.svc.cluster.local:8083",
                "auth-service.nova.svc.cluster.local",
                8083,
            ),
            ("pod_a.local.:1", "pod_a.local.", 1),
        ];
        for (text, host, port) in ok {
            let a: Address = text.parse().unwrap();
            assert_eq!((a.host(), a.port()), (host, port), "{text}");
            assert_eq!(a.to_string(), text);
        }
        let bad = [
            ("", "empty"),
            ("host", "no port"),
            ("host:", "empty port"),
            ("host:x", "not a number"),
            ("host:70000", "above 65535"),
            ("host:0", "port 0"),
            ("::1", "needs brackets"),
            ("[::1", "closing"),
            ("[nope]:1", "not an IPv6"),
            ("a b:1", "contains ` `"),
            ("a..b:1", "empty label"),
            ("a:b:c", "too many"),
        ];
        for (text, want) in bad {
            let e = text.parse::<Address>().unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert_eq!(
            Address::from("127.0.0.3:9".parse::<SocketAddr>().unwrap()).uri(),
            "http://127.0.0.3:9"
        );
    }
}
