//! Target strings in gRPC's naming style: parsing and checking, no network.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::address::{Address, check_host, split_host_port};
use super::{DiscoveryError, ErrorKind};

/// The port of a DNS server named without one.
pub const DNS_PORT: u16 = 53;
/// The port of a Consul agent named without one.
pub const CONSUL_PORT: u16 = 8500;
/// The port of an etcd endpoint named without one.
pub const ETCD_PORT: u16 = 2379;

const EXAMPLE: &str = "dns:///auth-service.nova.svc.cluster.local:8083";
const SCHEMES: &str = "dns, static, consul, etcd, http, https";

/// A parsed, checked target string.
///
/// ```
/// use resilient_runtime::discover::{Target, TargetKind};
///
/// let t = Target::parse("dns:///auth-service.nova.svc.cluster.local:8083").unwrap();
/// let TargetKind::Dns(dns) = t.kind() else { unreachable!() };
/// assert_eq!(dns.name, "auth-service.nova.svc.cluster.local");
/// assert_eq!(dns.port, Some(8083));
///
/// // The seed's AUTH_SERVICE_URL values mean the same thing.
/// assert!(matches!(Target::parse("http://auth-service:8083").unwrap().kind(), TargetKind::Dns(_)));
///
/// let e = Target::parse("zookeeper:///auth").unwrap_err();
/// assert!(e.to_string().contains("unknown scheme `zookeeper`"), "{e}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    text: String,
    kind: TargetKind,
    tls: bool,
}

/// Where a target's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetKind {
    /// A fixed list (`static:///a:1,b:2`), without duplicates, in the given order.
    Static(Vec<Address>),
    /// DNS A/AAAA or SRV records.
    Dns(DnsTarget),
    /// Consul's catalog of passing instances.
    Consul(ConsulTarget),
    /// etcd keys under a prefix.
    Etcd(EtcdTarget),
}

/// A `dns:` target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsTarget {
    /// The DNS server named as authority (`dns://127.0.0.1:5353/...`); `None`: the
    /// system's resolver configuration.
    pub server: Option<SocketAddr>,
    /// The name to resolve, as written.
    pub name: String,
    /// The port of every address; `None` for an SRV name (`_grpc._tcp.name`), whose
    /// records carry the ports.
    pub port: Option<u16>,
}

impl DnsTarget {
    /// True when the name is looked up as SRV records.
    pub fn is_srv(&self) -> bool {
        self.port.is_none()
    }
}

/// A `consul:` target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsulTarget {
    /// The agent named as authority (`consul://10.0.0.5:8500/name`); `None`:
    /// `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`.
    pub agent: Option<Address>,
    /// The service name.
    pub service: String,
    /// `?dc=`: the datacenter; `None`: the agent's own.
    pub datacenter: Option<String>,
    /// `?tag=` (repeatable): only instances with every one of these tags.
    pub tags: Vec<String>,
}

/// An `etcd:` target.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdTarget {
    /// The endpoints named as authority (`etcd://10.0.0.7:2379,10.0.0.8:2379/prefix`);
    /// empty: `ETCD_ENDPOINTS`, else `127.0.0.1:2379`.
    pub endpoints: Vec<Address>,
    /// The key prefix, without a trailing `/` (`nova/services/auth-service`); servers are
    /// keys `prefix/<addr>`.
    pub prefix: String,
}

impl Target {
    /// Parses and checks `text`. The error names the target and what is wrong; nothing
    /// here panics or touches the network.
    pub fn parse(text: &str) -> Result<Target, DiscoveryError> {
        let kind = parse_kind(text.trim())
            .map_err(|message| DiscoveryError::new(ErrorKind::InvalidTarget, text, message))?;
        let tls = text
            .trim()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        Ok(Target {
            text: text.trim().to_string(),
            kind,
            tls,
        })
    }

    /// True for `https://host:port` targets, which a pool connects to only with TLS
    /// settings (`PoolBuilder::tls`, feature `tls`).
    pub fn uses_tls(&self) -> bool {
        self.tls
    }

    /// What the target names.
    pub fn kind(&self) -> &TargetKind {
        &self.kind
    }

    /// The target as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The scheme this target resolves with: `static`, `dns`, `consul` or `etcd`.
    pub fn scheme(&self) -> &'static str {
        match self.kind {
            TargetKind::Static(_) => "static",
            TargetKind::Dns(_) => "dns",
            TargetKind::Consul(_) => "consul",
            TargetKind::Etcd(_) => "etcd",
        }
    }
}

impl FromStr for Target {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.text))
    }
}

/// The target with any `user:password@` replaced by `***@`, for messages.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    if let Some(i) = text.find("://") {
        let after = &text[i + 3..];
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        if let Some(at) = after[..end].rfind('@') {
            return Cow::Owned(format!("{}***{}", &text[..i + 3], &after[at..]));
        }
    }
    Cow::Borrowed(text)
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn parse_kind(text: &str) -> Result<TargetKind, String> {
    if text.is_empty() {
        return Err(format!("empty target; expected e.g. `{EXAMPLE}`"));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains {c:?}; targets have no spaces or control characters"
        ));
    }
    if text.contains('#') {
        return Err("fragments (`#`) are not supported".to_string());
    }
    if let Some((scheme, rest)) = text.split_once(':')
        && is_scheme(scheme)
    {
        let lower = scheme.to_ascii_lowercase();
        if let Some(hier) = rest.strip_prefix("//") {
            return parse_hier(&lower, hier);
        }
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            // `auth-service:8083`, `consul:8500`: a host and a port, not a scheme.
            return parse_dns_name(None, text);
        }
        return match lower.as_str() {
            // gRPC's `dns:host:port` form, without an authority.
            "dns" => parse_dns_name(None, rest),
            "static" | "consul" | "etcd" | "http" | "https" => Err(format!(
                "`{lower}:` must be followed by `//`, e.g. `{lower}:///{}`",
                if lower == "static" {
                    "10.0.0.1:8083,10.0.0.2:8083"
                } else {
                    "..."
                }
            )),
            _ if rest.is_empty() => Err(format!(
                "`{text}` has no port; write `{scheme}:PORT` or a target such as `{EXAMPLE}`"
            )),
            _ => Err(format!(
                "unknown scheme `{scheme}`; expected one of {SCHEMES}, or a bare `host:port`"
            )),
        };
    }
    parse_dns_name(None, text)
}

fn parse_hier(scheme: &str, hier: &str) -> Result<TargetKind, String> {
    let end = hier.find(['/', '?']).unwrap_or(hier.len());
    let (authority, rest) = hier.split_at(end);
    if authority.contains('@') {
        return Err(
            "credentials in the target are not supported (a Consul token goes in CONSUL_HTTP_TOKEN)"
                .to_string(),
        );
    }
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let no_query = |what: &str| match query {
        Some(q) => Err(format!("{what} targets take no query (`?{q}`)")),
        None => Ok(()),
    };
    match scheme {
        "static" => {
            no_query("static")?;
            if !authority.is_empty() {
                return Err(format!(
                    "`static://{authority}/...` has an authority; write `static:///{authority}`"
                ));
            }
            if path.is_empty() {
                return Err("no addresses; write `static:///10.0.0.1:8083,10.0.0.2:8083`".into());
            }
            let mut out: Vec<Address> = Vec::new();
            for part in path.split(',') {
                if part.is_empty() {
                    return Err("empty address in the list (two commas?)".to_string());
                }
                let a = Address::parse_with_port(part)?;
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            Ok(TargetKind::Static(out))
        }
        "dns" => {
            no_query("dns")?;
            let server = if authority.is_empty() {
                None
            } else {
                Some(dns_server(authority)?)
            };
            if path.is_empty() {
                return Err(format!("no name to resolve; expected e.g. `{EXAMPLE}`"));
            }
            parse_dns_name(server, path)
        }
        "http" | "https" => {
            no_query(scheme)?;
            if !path.is_empty() {
                return Err(format!(
                    "a path (`/{path}`) means nothing here; write `{scheme}://host:port`"
                ));
            }
            let (host, port) = split_host_port(authority)?;
            Ok(TargetKind::Dns(DnsTarget {
                server: None,
                name: host,
                port: Some(port.unwrap_or(if scheme == "https" { 443 } else { 80 })),
            }))
        }
        "consul" => {
            let agent = if authority.is_empty() {
                None
            } else {
                Some(address_with_default(authority, CONSUL_PORT)?)
            };
            if path.is_empty() {
                return Err("no service name; write `consul:///auth-service`".to_string());
            }
            check_token("service name", path)?;
            let mut datacenter = None;
            let mut tags = Vec::new();
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                match key {
                    "dc" => {
                        check_token("dc", value)?;
                        datacenter = Some(value.to_string());
                    }
                    "tag" => {
                        check_token("tag", value)?;
                        tags.push(value.to_string());
                    }
                    other => {
                        return Err(format!(
                            "unknown query parameter `{other}`; consul targets take `dc` and `tag`"
                        ));
                    }
                }
            }
            Ok(TargetKind::Consul(ConsulTarget {
                agent,
                service: path.to_string(),
                datacenter,
                tags,
            }))
        }
        "etcd" => {
            no_query("etcd")?;
            let mut endpoints = Vec::new();
            if !authority.is_empty() {
                for part in authority.split(',') {
                    endpoints.push(address_with_default(part, ETCD_PORT)?);
                }
            }
            let prefix = path.trim_end_matches('/');
            if prefix.is_empty() {
                return Err("no key prefix; write `etcd:///nova/services/auth-service`".into());
            }
            if prefix.split('/').any(str::is_empty) {
                return Err(format!("key prefix `{prefix}` has an empty segment (`//`)"));
            }
            Ok(TargetKind::Etcd(EtcdTarget {
                endpoints,
                prefix: prefix.to_string(),
            }))
        }
        other => Err(format!(
            "unknown scheme `{other}`; expected one of {SCHEMES}, or a bare `host:port`"
        )),
    }
}

/// `host:port` or an SRV name.
fn parse_dns_name(server: Option<SocketAddr>, text: &str) -> Result<TargetKind, String> {
    if text.contains('/') {
        return Err(format!(
            "`{text}` is not `host:port`; expected e.g. `{EXAMPLE}`"
        ));
    }
    let (name, port) = split_host_port(text)?;
    let srv = name.starts_with('_');
    match (srv, port) {
        (true, Some(_)) => Err(format!(
            "`{name}` is an SRV name: its records carry the ports; drop `:{}`",
            port.unwrap_or_default()
        )),
        (false, None) => Err(format!(
            "`{name}` has no port; write `{name}:PORT`, or `_grpc._tcp.{name}` to use SRV records"
        )),
        (true, None) if !name.contains("._tcp.") && !name.contains("._udp.") => Err(format!(
            "`{name}` starts with `_` but is not an SRV name like `_grpc._tcp.{}`",
            name.trim_start_matches('_')
        )),
        _ => Ok(TargetKind::Dns(DnsTarget { server, name, port })),
    }
}

fn dns_server(authority: &str) -> Result<SocketAddr, String> {
    let (host, port) = split_host_port(authority)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        format!(
            "the DNS server `{authority}` must be an IP address, e.g. `dns://127.0.0.1:5353/...`"
        )
    })?;
    Ok(SocketAddr::new(ip, port.unwrap_or(DNS_PORT)))
}

fn address_with_default(text: &str, default_port: u16) -> Result<Address, String> {
    match split_host_port(text)? {
        (host, Some(port)) => Address::parse_with_port(&format!(
            "{}:{port}",
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            }
        )),
        (host, None) => {
            if !host.contains(':') {
                check_host(&host)?;
            }
            Ok(match host.parse::<IpAddr>() {
                Ok(ip) => Address::from_ip(ip, default_port),
                Err(_) => Address::parse_with_port(&format!("{host}:{default_port}"))?,
            })
        }
    }
}

fn check_token(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("empty {what}"));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '=')))
    {
        Some(c) => Err(format!("{what} `{value}` contains `{c}`")),
        None => Ok(()),
    }
}

#[cfg(any(feature = "consul", feature = "etcd"))]
/// Parses an `ETCD_ENDPOINTS` / `CONSUL_HTTP_ADDR` style value: `http://host:port`,
/// `host:port` or `host`, comma-separated.
pub(crate) fn parse_endpoint_list(value: &str, default_port: u16) -> Result<Vec<Address>, String> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bare = if let Some(rest) = part.strip_prefix("http://") {
            rest
        } else if part.starts_with("https://") {
            return Err(format!("`{part}`: https is not supported"));
        } else {
            part
        };
        let bare = bare.trim_end_matches('/');
        if bare.contains('@') {
            return Err("credentials in an endpoint are not supported".to_string());
        }
        out.push(address_with_default(bare, default_port)?);
    }
    if out.is_empty() {
        return Err("no endpoints".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> TargetKind {
        match Target::parse(text) {
            Ok(t) => t.kind,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn dns(server: Option<&str>, name: &str, port: Option<u16>) -> TargetKind {
        TargetKind::Dns(DnsTarget {
            server: server.map(|s| s.parse().unwrap()),
            name: name.to_string(),
            port,
        })
    }

    #[test]
    fn valid_targets() {
        let table = [
            (
                "static:///10.0.0.1:8083,10.0.0.2:8083,10.0.0.1:8083",
                TargetKind::Static(vec![
                    "10.0.0.1:8083".parse().unwrap(),
                    "10.0.0.2:8083".parse().unwrap(),
                ]),
            ),
            (
                "dns:///auth-service.nova.svc.cluster.local:8083",
                dns(None, "auth-service.nova.svc.cluster.local", Some(8083)),
            ),
            (
                "dns://127.0.0.1:5353/auth-service.nova.svc.cluster.local:8083",
                dns(
                    Some("127.0.0.1:5353"),
                    "auth-service.nova.svc.cluster.local",
                    Some(8083),
                ),
            ),
            ("dns://[::1]/a:1", dns(Some("[::1]:53"), "a", Some(1))),
            (
                "dns:///_grpc._tcp.auth-service.nova.svc.cluster.local",
                dns(None, "_grpc._tcp.auth-service.nova.svc.cluster.local", None),
            ),
            ("dns:auth:80", dns(None, "auth", Some(80))),
            ("DNS:///auth:80", dns(None, "auth", Some(80))),
            ("auth-service:8083", dns(None, "auth-service", Some(8083))),
            ("consul:8500", dns(None, "consul", Some(8500))),
            ("127.0.0.1:9", dns(None, "127.0.0.1", Some(9))),
            ("[::1]:9", dns(None, "::1", Some(9))),
            (
                "http://auth-service:8083",
                dns(None, "auth-service", Some(8083)),
            ),
            (
                "http://auth-service:8083/",
                dns(None, "auth-service", Some(8083)),
            ),
            ("http://auth-service", dns(None, "auth-service", Some(80))),
            (
                "https://auth-service.nova.svc.cluster.local",
                dns(None, "auth-service.nova.svc.cluster.local", Some(443)),
            ),
            ("HTTPS://auth:8443", dns(None, "auth", Some(8443))),
            (
                "  consul:///auth-service?dc=eu1&tag=v2&tag=canary ",
                TargetKind::Consul(ConsulTarget {
                    agent: None,
                    service: "auth-service".into(),
                    datacenter: Some("eu1".into()),
                    tags: vec!["v2".into(), "canary".into()],
                }),
            ),
            (
                "consul://127.0.0.1/auth-service",
                TargetKind::Consul(ConsulTarget {
                    agent: Some("127.0.0.1:8500".parse().unwrap()),
                    service: "auth-service".into(),
                    datacenter: None,
                    tags: vec![],
                }),
            ),
            (
                "etcd:///nova/services/auth-service/",
                TargetKind::Etcd(EtcdTarget {
                    endpoints: vec![],
                    prefix: "nova/services/auth-service".into(),
                }),
            ),
            (
                "etcd://127.0.0.1:23790,etcd-b/nova/services/auth-service",
                TargetKind::Etcd(EtcdTarget {
                    endpoints: vec![
                        "127.0.0.1:23790".parse().unwrap(),
                        "etcd-b:2379".parse().unwrap(),
                    ],
                    prefix: "nova/services/auth-service".into(),
                }),
            ),
        ];
        for (text, want) in table {
            assert_eq!(ok(text), want, "{text}");
        }
    }

    #[test]
    fn invalid_targets_say_what_is_wrong() {
        let table = [
            ("", "empty target"),
            ("   ", "empty target"),
            ("zookeeper:///auth", "unknown scheme `zookeeper`"),
            ("auth-service", "no port"),
            ("dns:///auth-service", "no port"),
            ("dns:///", "no name"),
            ("dns://resolver.local/auth:1", "must be an IP address"),
            ("dns:///_grpc._tcp.auth:8083", "SRV name"),
            ("dns:///_auth", "not an SRV name"),
            ("dns:///auth:1?x=1", "no query"),
            ("static:///", "no addresses"),
            ("static://h/a:1", "has an authority"),
            ("static:///a:1,,b:2", "empty address"),
            ("static:///a", "no port"),
            ("static:a:1,b:2", "must be followed by `//`"),
            ("https://auth:443/v1", "a path"),
            ("http://auth:80/v1", "a path"),
            ("http://user:pw@auth:80", "credentials"),
            ("consul:///", "no service name"),
            ("consul:///auth?zone=1", "unknown query parameter `zone`"),
            ("consul:///auth?tag=", "empty tag"),
            ("consul:///a/b", "contains `/`"),
            ("etcd:///", "no key prefix"),
            ("etcd:///a//b", "empty segment"),
            ("auth:99999", "above 65535"),
            ("auth :80", "no spaces"),
            ("dns:///a:1#frag", "fragments"),
            ("::1:80", "needs brackets"),
            ("a:b:80", "unknown scheme `a`"),
        ];
        for (text, want) in table {
            let e = Target::parse(text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidTarget);
            assert!(e.to_string().contains(want), "{text:?}: {e}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    #[cfg(any(feature = "consul", feature = "etcd"))]
    #[test]
    fn endpoint_lists() {
        let l = parse_endpoint_list("http://127.0.0.1:23790, 10.0.0.2 ,h:1/", 2379).unwrap();
        let s: Vec<String> = l.iter().map(|a| a.to_string()).collect();
        assert_eq!(s, ["127.0.0.1:23790", "10.0.0.2:2379", "h:1"]);
        assert!(parse_endpoint_list("", 1).is_err());
        assert!(parse_endpoint_list("https://x", 1).is_err());
    }
}
