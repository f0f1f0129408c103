//! Active health checks: each endpoint is asked the standard `grpc.health.v1.Health`
//! question on its own channel, and leaves rotation while the answer is not `SERVING`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
#[cfg(feature = "health")]
use std::time::Duration;

use tokio::sync::watch;

#[cfg(feature = "health")]
/// How a pool asks its endpoints whether they serve (feature `health`).
///
/// Every endpoint is asked on its own channel (the connection user calls take, TLS
/// included) with the standard health protocol, `grpc.health.v1.Health`, which tonic
/// servers offer through `tonic-health`. An endpoint that answers anything but
/// `SERVING`, or whose probe fails or takes longer than `timeout`, leaves rotation at
/// once; the next `SERVING` answer brings it back. A new endpoint takes calls only once
/// it has answered `SERVING`, unless no endpoint has yet.
///
/// A server without the health service (`UNIMPLEMENTED`) is taken as serving, as gRPC's
/// own client-side health checking does, and a warning is logged once per endpoint.
///
/// ```
/// use std::time::Duration;
/// use resilient_runtime::pool::{HealthCheck, HealthMode};
///
/// let check = HealthCheck {
///     service: "nova.auth.v1.AuthService".into(),
///     interval: Duration::from_secs(5),
///     timeout: Duration::from_secs(1),
///     mode: HealthMode::Check,
/// };
/// assert_eq!(check, HealthCheck::for_service("nova.auth.v1.AuthService"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The service name asked about (`HealthCheckRequest.service`); empty: the server as
    /// a whole. Default: empty.
    pub service: String,
    /// [`HealthMode::Check`]: the time from one probe's start to the next's.
    /// [`HealthMode::Watch`]: the wait before opening a new watch after one broke, and
    /// how long a quiet watch goes before a `Check` asks whether the server still
    /// answers. Default: 5 s.
    pub interval: Duration,
    /// How long one probe (or the first answer of a watch) may take; longer counts as a
    /// failed probe. Default: 1 s.
    pub timeout: Duration,
    /// Polling or a server stream. Default: [`HealthMode::Check`].
    pub mode: HealthMode,
}

/// How health is asked.
#[cfg(feature = "health")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthMode {
    /// A unary `Check` every `interval`: a change is seen within one interval.
    #[default]
    Check,
    /// A `Watch` stream: the server sends each change as it happens; a broken stream
    /// counts as a failed probe and is opened again after `interval`. A stream quiet for
    /// a whole `interval` is followed by one `Check`, so that a server that froze with
    /// its stream open (it sends nothing, like one with nothing to say) still leaves
    /// rotation within `interval + timeout`.
    Watch,
}

#[cfg(feature = "health")]
impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            service: String::new(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            mode: HealthMode::Check,
        }
    }
}

#[cfg(feature = "health")]
impl HealthCheck {
    /// The defaults, asking about `service`.
    pub fn for_service(service: impl Into<String>) -> Self {
        HealthCheck {
            service: service.into(),
            ..HealthCheck::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("health check interval must be above zero".to_string());
        }
        if self.timeout.is_zero() {
            return Err("health check timeout must be above zero".to_string());
        }
        Ok(())
    }
}

/// What the health checks last said about an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Health {
    /// The pool has no health checks.
    NotChecked,
    /// Not answered yet: takes calls only while no endpoint is known to serve.
    Pending,
    /// Answered `SERVING` (or has no health service).
    Serving,
    /// Answered `NOT_SERVING`, `SERVICE_UNKNOWN` or `UNKNOWN`: out of rotation.
    NotServing,
    /// The probe failed (no connection, an error, no answer in time): out of rotation.
    ProbeFailed,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Pending,
            2 => Health::Serving,
            3 => Health::NotServing,
            4 => Health::ProbeFailed,
            _ => Health::NotChecked,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Health::NotChecked => 0,
            Health::Pending => 1,
            Health::Serving => 2,
            Health::NotServing => 3,
            Health::ProbeFailed => 4,
        }
    }

    /// Whether this keeps the endpoint out of rotation.
    pub fn is_out(self) -> bool {
        matches!(self, Health::NotServing | Health::ProbeFailed)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::NotChecked => "not checked",
            Health::Pending => "pending",
            Health::Serving => "serving",
            Health::NotServing => "not serving",
            Health::ProbeFailed => "probe failed",
        })
    }
}

/// One endpoint's health, shared between the endpoint and its probe task; every change
/// bumps the pool's health generation.
pub(crate) struct HealthCell {
    state: AtomicU8,
    changes: Arc<watch::Sender<u64>>,
}

impl HealthCell {
    pub(crate) fn new(initial: Health, changes: Arc<watch::Sender<u64>>) -> Self {
        HealthCell {
            state: AtomicU8::new(initial.to_u8()),
            changes,
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> Health {
        Health::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Stores `health`; returns the previous value.
    #[cfg_attr(not(feature = "health"), allow(dead_code))]
    pub(crate) fn set(&self, health: Health) -> Health {
        let previous = Health::from_u8(self.state.swap(health.to_u8(), Ordering::AcqRel));
        if previous != health {
            self.changes.send_modify(|g| *g += 1);
        }
        previous
    }
}

#[cfg(feature = "health")]
pub(crate) use probe::{Probe, run};

#[cfg(feature = "health")]
mod probe {
    use std::sync::Arc;

    use tonic::Code;
    use tonic::transport::Channel;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    use super::{Health, HealthCell, HealthCheck, HealthMode};

    /// What one answer (or its absence) means.
    enum Verdict {
        Serving,
        NotServing(String),
        Failed(String),
        /// The server has no health service.
        Unimplemented,
    }

    fn of_response(r: &HealthCheckResponse) -> Verdict {
        match ServingStatus::try_from(r.status) {
            Ok(ServingStatus::Serving) => Verdict::Serving,
            Ok(other) => Verdict::NotServing(format!("reports {}", other.as_str_name())),
            Err(_) => Verdict::NotServing(format!("reports unknown status {}", r.status)),
        }
    }

    fn of_status(s: &tonic::Status) -> Verdict {
        if s.code() == Code::Unimplemented {
            Verdict::Unimplemented
        } else {
            Verdict::Failed(format!(
                "probe failed: {}: {}",
                s.code(),
                crate::pool::status_detail(s)
            ))
        }
    }

    /// Where a probe task reports.
    pub(crate) struct Probe {
        pub(crate) cell: Arc<HealthCell>,
        pub(crate) channel: Channel,
        pub(crate) check: Arc<HealthCheck>,
        /// For log lines: the pool's target (redacted) and the endpoint.
        pub(crate) target: Arc<str>,
        pub(crate) endpoint: String,
    }

    impl Probe {
        fn record(&self, verdict: Verdict, warned: &mut bool) {
            let (health, why) = match verdict {
                Verdict::Serving => (Health::Serving, String::new()),
                Verdict::NotServing(why) => (Health::NotServing, why),
                Verdict::Failed(why) => (Health::ProbeFailed, why),
                Verdict::Unimplemented => {
                    if !*warned {
                        *warned = true;
                        tracing::warn!(
                            target = %self.target,
                            endpoint = %self.endpoint,
                            "endpoint has no grpc.health.v1.Health service; taken as serving"
                        );
                    }
                    (Health::Serving, String::new())
                }
            };
            let previous = self.cell.set(health);
            if previous == health {
                return;
            }
            if health.is_out() {
                tracing::warn!(
                    target = %self.target,
                    endpoint = %self.endpoint,
                    service = %self.check.service,
                    %why,
                    "endpoint out of rotation: unhealthy"
                );
            } else if previous.is_out() {
                tracing::info!(
                    target = %self.target,
                    endpoint = %self.endpoint,
                    "endpoint back in rotation: serving"
                );
            }
        }

        fn request(&self) -> tonic::Request<HealthCheckRequest> {
            tonic::Request::new(HealthCheckRequest {
                service: self.check.service.clone(),
            })
        }

        async fn check_once(&self, client: &mut HealthClient<Channel>) -> Verdict {
            let mut request = self.request();
            crate::deadline::set_grpc_timeout(
                &mut request,
                crate::deadline::grpc_timeout_header(self.check.timeout),
            );
            match tokio::time::timeout(self.check.timeout, client.check(request)).await {
                Err(_) => Verdict::Failed(format!(
                    "no answer within {} ms",
                    self.check.timeout.as_millis()
                )),
                Ok(Err(status)) if crate::pool::is_timeout(&status) => Verdict::Failed(format!(
                    "no answer within {} ms",
                    self.check.timeout.as_millis()
                )),
                Ok(Err(status)) => of_status(&status),
                Ok(Ok(response)) => of_response(response.get_ref()),
            }
        }

        /// Polls with `Check` until the task is aborted.
        async fn poll(&self) {
            let mut client = HealthClient::new(self.channel.clone());
            let mut warned = false;
            loop {
                let started = tokio::time::Instant::now();
                let verdict = self.check_once(&mut client).await;
                self.record(verdict, &mut warned);
                tokio::time::sleep_until(crate::clock::later(started, self.check.interval)).await;
            }
        }

        /// Follows `Watch` streams until the task is aborted.
        async fn watch(&self) {
            let mut client = HealthClient::new(self.channel.clone());
            let mut warned = false;
            loop {
                let timeout = self.check.timeout;
                let no_answer = || {
                    Verdict::Failed(format!("no watch answer within {} ms", timeout.as_millis()))
                };
                let opened = tokio::time::timeout(timeout, async {
                    let mut stream = client.watch(self.request()).await?.into_inner();
                    let first = stream.message().await?;
                    Ok::<_, tonic::Status>((stream, first))
                })
                .await;
                match opened {
                    Err(_) => self.record(no_answer(), &mut warned),
                    Ok(Err(status)) => {
                        let verdict = of_status(&status);
                        let unimplemented = matches!(verdict, Verdict::Unimplemented);
                        self.record(verdict, &mut warned);
                        if unimplemented {
                            // Nothing to watch on this server, ever.
                            std::future::pending::<()>().await;
                        }
                    }
                    Ok(Ok((_, None))) => self.record(
                        Verdict::Failed("the watch ended without an answer".into()),
                        &mut warned,
                    ),
                    Ok(Ok((mut stream, Some(first)))) => {
                        self.record(of_response(&first), &mut warned);
                        loop {
                            let Ok(next) =
                                tokio::time::timeout(self.check.interval, stream.message()).await
                            else {
                                // A quiet watch means no change, but a frozen server is
                                // quiet too: ask it once. (The stream keeps its place.)
                                let verdict = self.check_once(&mut client).await;
                                let failed = matches!(verdict, Verdict::Failed(_));
                                self.record(verdict, &mut warned);
                                if failed {
                                    break;
                                }
                                continue;
                            };
                            match next {
                                Ok(Some(r)) => self.record(of_response(&r), &mut warned),
                                Ok(None) => {
                                    self.record(
                                        Verdict::Failed("the watch ended".into()),
                                        &mut warned,
                                    );
                                    break;
                                }
                                Err(status) => {
                                    self.record(
                                        Verdict::Failed(format!(
                                            "the watch broke: {}: {}",
                                            status.code(),
                                            crate::pool::status_detail(&status)
                                        )),
                                        &mut warned,
                                    );
                                    break;
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(self.check.interval).await;
            }
        }
    }

    /// The probe task of one endpoint: runs until aborted (when the endpoint is dropped).
    pub(crate) async fn run(probe: Probe) {
        match probe.check.mode {
            HealthMode::Check => probe.poll().await,
            HealthMode::Watch => probe.watch().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_round_trips_and_counts_changes() {
        let (tx, rx) = watch::channel(0u64);
        let cell = HealthCell::new(Health::Pending, Arc::new(tx));
        assert_eq!(cell.get(), Health::Pending);
        for h in [
            Health::Serving,
            Health::Serving,
            Health::NotServing,
            Health::ProbeFailed,
            Health::Serving,
        ] {
            cell.set(h);
            assert_eq!(cell.get(), h);
        }
        assert_eq!(*rx.borrow(), 4, "a repeated state is no change");
        assert!(Health::NotServing.is_out() && Health::ProbeFailed.is_out());
        assert!(!Health::Pending.is_out() && !Health::NotChecked.is_out());
    }

    #[cfg(feature = "health")]
    #[test]
    fn zero_times_are_rejected() {
        let bad = HealthCheck {
            interval: Duration::ZERO,
            ..HealthCheck::default()
        };
        assert!(bad.validate().unwrap_err().contains("interval"));
        let bad = HealthCheck {
            timeout: Duration::ZERO,
            ..HealthCheck::default()
        };
        assert!(bad.validate().unwrap_err().contains("timeout"));
    }
}
