//! DNS targets through hickory: A/AAAA for `name:port`, SRV for `_grpc._tcp.name`.
//!
//! A Kubernetes headless Service answers with one A record per ready pod, which is what
//! client-side balancing needs (a ClusterIP Service answers with one virtual IP, and
//! gRPC's one long-lived HTTP/2 connection then sticks to one pod). The pool resolves
//! again every refresh interval itself, so hickory's cache is off.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};

use super::{Address, DiscoveryError, DnsTarget, ErrorKind, Target};

/// Which address records a DNS target asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpFamily {
    /// A records only.
    V4,
    /// AAAA records only.
    V6,
    /// Both, in parallel. The default.
    #[default]
    Both,
}

/// DNS settings of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    family: IpFamily,
    timeout: Duration,
    attempts: usize,
    hosts_file: bool,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            family: IpFamily::Both,
            timeout: Duration::from_secs(2),
            attempts: 2,
            hosts_file: true,
        }
    }
}

impl DnsOptions {
    /// Which records to ask for. Default: [`IpFamily::Both`].
    pub fn family(mut self, family: IpFamily) -> Self {
        self.family = family;
        self
    }

    /// How long one query may take. Default: 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a query is tried. Default: 2.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Whether `/etc/hosts` answers first when the target names no DNS server.
    /// Default: true.
    pub fn hosts_file(mut self, use_it: bool) -> Self {
        self.hosts_file = use_it;
        self
    }
}

pub(crate) struct DnsResolver {
    resolver: TokioResolver,
    target: String,
    name: String,
    port: Option<u16>,
    family: IpFamily,
}

impl DnsResolver {
    pub(crate) fn new(
        target: &Target,
        dns: &DnsTarget,
        options: &DnsOptions,
    ) -> Result<Self, DiscoveryError> {
        let mut builder = match dns.server {
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| {
                DiscoveryError::new(
                    ErrorKind::Unreachable,
                    target.as_str(),
                    format!("cannot read the system's DNS configuration: {e}"),
                )
            })?,
        };
        let opts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = options.timeout;
        opts.attempts = options.attempts;
        opts.ip_strategy = match options.family {
            IpFamily::V4 => LookupIpStrategy::Ipv4Only,
            IpFamily::V6 => LookupIpStrategy::Ipv6Only,
            IpFamily::Both => LookupIpStrategy::Ipv4AndIpv6,
        };
        opts.use_hosts_file = if dns.server.is_none() && options.hosts_file {
            ResolveHosts::Auto
        } else {
            ResolveHosts::Never
        };
        let resolver = builder.build().map_err(|e| {
            DiscoveryError::new(
                ErrorKind::Unreachable,
                target.as_str(),
                format!("cannot set up the DNS resolver: {e}"),
            )
        })?;
        Ok(DnsResolver {
            resolver,
            target: target.as_str().to_string(),
            name: dns.name.clone(),
            port: dns.port,
            family: options.family,
        })
    }

    fn error(&self, name: &str, records: &str, e: &NetError) -> DiscoveryError {
        if e.is_nx_domain() {
            DiscoveryError::new(
                ErrorKind::NoEndpoints,
                &self.target,
                format!("dns name `{name}` does not exist"),
            )
        } else if e.is_no_records_found() {
            DiscoveryError::new(
                ErrorKind::NoEndpoints,
                &self.target,
                format!("dns name `{name}` has no {records} records"),
            )
        } else {
            DiscoveryError::new(
                ErrorKind::Unreachable,
                &self.target,
                format!("dns lookup of `{name}` ({records}) failed: {e}"),
            )
        }
    }

    fn records(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "A",
            IpFamily::V6 => "AAAA",
            IpFamily::Both => "A/AAAA",
        }
    }

    fn wanted(&self, ip: &IpAddr) -> bool {
        match self.family {
            IpFamily::V4 => ip.is_ipv4(),
            IpFamily::V6 => ip.is_ipv6(),
            IpFamily::Both => true,
        }
    }

    pub(crate) async fn resolve(&self) -> Result<Vec<Address>, DiscoveryError> {
        match self.port {
            Some(port) => self
                .resolver
                .lookup_ip(self.name.as_str())
                .await
                .map(|ips| {
                    ips.iter()
                        .filter(|ip| self.wanted(ip))
                        .map(|ip| Address::from_ip(ip, port))
                        .collect()
                })
                .map_err(|e| self.error(&self.name, self.records(), &e)),
            None => self.resolve_srv().await,
        }
    }

    /// SRV: the records of the lowest priority (weights are not used: the pool balances
    /// by load), each target's addresses from the additional section or a lookup.
    /// Records for the root name or port 0 are left out.
    async fn resolve_srv(&self) -> Result<Vec<Address>, DiscoveryError> {
        let lookup = self
            .resolver
            .srv_lookup(self.name.as_str())
            .await
            .map_err(|e| self.error(&self.name, "SRV", &e))?;
        let records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                // A root target means "no service here"; port 0 cannot be dialled.
                RData::SRV(srv) if !srv.target.is_root() && srv.port != 0 => Some(srv.clone()),
                _ => None,
            })
            .collect();
        let Some(best) = records.iter().map(|s| s.priority).min() else {
            return Err(DiscoveryError::new(
                ErrorKind::NoEndpoints,
                &self.target,
                format!("dns name `{}` has no usable SRV records", self.name),
            ));
        };
        let mut out = Vec::new();
        let mut last_error = None;
        for srv in records.iter().filter(|s| s.priority == best) {
            let extra: Vec<IpAddr> = lookup
                .additionals()
                .iter()
                .filter(|r| r.name == srv.target)
                .filter_map(|r| r.data.ip_addr())
                .filter(|ip| self.wanted(ip))
                .collect();
            if !extra.is_empty() {
                out.extend(extra.into_iter().map(|ip| Address::from_ip(ip, srv.port)));
                continue;
            }
            let host: Name = srv.target.clone();
            match self.resolver.lookup_ip(host).await {
                Ok(ips) => out.extend(
                    ips.iter()
                        .filter(|ip| self.wanted(ip))
                        .map(|ip| Address::from_ip(ip, srv.port)),
                ),
                Err(e) => {
                    let name = srv.target.to_string();
                    last_error = Some(self.error(&name, self.records(), &e));
                }
            }
        }
        if out.is_empty() {
            return Err(last_error.unwrap_or_else(|| {
                DiscoveryError::new(
                    ErrorKind::NoEndpoints,
                    &self.target,
                    format!("the SRV targets of `{}` have no addresses", self.name),
                )
            }));
        }
        Ok(out)
    }
}
