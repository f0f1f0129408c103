//! The background half of a pool: a target's resolver, run in a task, reporting sets of
//! addresses (or errors) to the pool.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Address, DiscoveryError, ErrorKind, Target, TargetKind};

/// Where a resolver's results go.
pub(crate) trait Report: Send + Sync + 'static {
    /// A new set of addresses, or why there is none.
    fn report(&self, result: Result<Vec<Address>, DiscoveryError>);
}

/// What a running resolver gets from its pool.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) sink: Arc<dyn Report>,
    /// Signalled when an endpoint fails: re-resolve early (rate-limited).
    pub(crate) re_resolve: Arc<Notify>,
    pub(crate) refresh: Refresh,
}

/// How often a polled resolver (DNS) runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refresh {
    pub(crate) interval: Duration,
    pub(crate) min_interval: Duration,
}

/// Per-scheme options, from the pool builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResolverOptions {
    #[cfg(feature = "dns")]
    pub(crate) dns: super::DnsOptions,
    #[cfg(feature = "consul")]
    pub(crate) consul: super::ConsulOptions,
    #[cfg(feature = "etcd")]
    pub(crate) etcd: super::EtcdOptions,
}

// One per pool, built once: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Resolver {
    Static(Vec<Address>),
    #[cfg(feature = "dns")]
    Dns(super::dns::DnsResolver),
    #[cfg(feature = "consul")]
    Consul(super::consul::ConsulResolver),
    #[cfg(feature = "etcd")]
    Etcd(super::etcd::EtcdResolver),
}

#[allow(dead_code)] // unused when every optional scheme is compiled in
fn unsupported(target: &Target, feature: &str) -> DiscoveryError {
    DiscoveryError::new(
        ErrorKind::Unsupported,
        target.as_str(),
        format!("{feature} targets need the `{feature}` feature of resilient-runtime"),
    )
}

impl Resolver {
    /// The resolver for `target`; reads the environment (`CONSUL_HTTP_ADDR`,
    /// `ETCD_ENDPOINTS`) where the target names no authority.
    #[allow(unused_variables)]
    pub(crate) fn new(target: &Target, options: &ResolverOptions) -> Result<Self, DiscoveryError> {
        match target.kind() {
            TargetKind::Static(addresses) => Ok(Resolver::Static(addresses.clone())),
            TargetKind::Dns(dns) => {
                #[cfg(feature = "dns")]
                return super::dns::DnsResolver::new(target, dns, &options.dns).map(Resolver::Dns);
                #[cfg(not(feature = "dns"))]
                Err(unsupported(target, "dns"))
            }
            TargetKind::Consul(consul) => {
                #[cfg(feature = "consul")]
                return super::consul::ConsulResolver::new(target, consul, &options.consul)
                    .map(Resolver::Consul);
                #[cfg(not(feature = "consul"))]
                Err(unsupported(target, "consul"))
            }
            TargetKind::Etcd(etcd) => {
                #[cfg(feature = "etcd")]
                return super::etcd::EtcdResolver::new(target, etcd, &options.etcd)
                    .map(Resolver::Etcd);
                #[cfg(not(feature = "etcd"))]
                Err(unsupported(target, "etcd"))
            }
        }
    }

    /// Runs until the pool aborts the task (a static list reports once and returns).
    pub(crate) async fn run(self, ctx: Context) {
        match self {
            Resolver::Static(addresses) => ctx.sink.report(Ok(addresses)),
            #[cfg(feature = "dns")]
            Resolver::Dns(dns) => poll_loop(&ctx, || dns.resolve()).await,
            #[cfg(feature = "consul")]
            Resolver::Consul(consul) => consul.run(ctx).await,
            #[cfg(feature = "etcd")]
            Resolver::Etcd(etcd) => etcd.run(ctx).await,
        }
    }
}

/// Resolves every `interval × U[0.8, 1]` (the jitter only shortens the wait, so a
/// change is seen within one interval), and early when the pool asks, but never twice
/// within `min_interval`. After an error or an empty answer it tries again sooner, with
/// backoff from one second (or `min_interval`, if longer) up to the interval: a pool
/// with nothing to call does not wait a whole interval for the first replica.
#[allow(dead_code)] // unused without the dns feature
pub(crate) async fn poll_loop<F, Fut>(ctx: &Context, mut resolve: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<Address>, DiscoveryError>>,
{
    let first_retry = ctx.refresh.min_interval.max(Duration::from_secs(1));
    let mut backoff = Backoff::new(first_retry, ctx.refresh.interval.max(first_retry));
    loop {
        let started = Instant::now();
        let result = resolve().await;
        let found_nothing = result.as_ref().map_or(true, Vec::is_empty);
        ctx.sink.report(result);
        let regular = ctx.refresh.interval.mul_f64(0.8 + 0.2 * fastrand::f64());
        let wait = if found_nothing {
            backoff.next_wait().min(regular)
        } else {
            backoff.reset();
            regular
        };
        if tokio::time::timeout(wait, ctx.re_resolve.notified())
            .await
            .is_ok()
        {
            tokio::time::sleep_until(crate::clock::later(started, ctx.refresh.min_interval)).await;
        }
    }
}

/// Exponential backoff with full jitter for push-style resolvers (Consul, etcd).
#[allow(dead_code)] // unused without consul and etcd
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

#[allow(dead_code)]
impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// The next wait: between half and all of the current step; the step doubles.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next.mul_f64(0.5 + 0.5 * fastrand::f64());
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}
