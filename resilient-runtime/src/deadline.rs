//! The `grpc-timeout` header: reading the deadline a caller set on a request.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

/// The header carrying a call's deadline.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// [`GRPC_TIMEOUT_HEADER`] as a header name, checked once rather than at every call.
pub(crate) static GRPC_TIMEOUT_NAME: http::HeaderName =
    http::HeaderName::from_static(GRPC_TIMEOUT_HEADER);

/// Parses a `grpc-timeout` value (`"2S"`, `"150m"`: at most 8 digits and a unit of
/// H, M, S, m, u or n). `None` for anything else.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A `grpc-timeout` value for `timeout`, in the finest unit whose count fits the 8 digits
/// the protocol allows (what `Request::set_timeout` writes). Durations beyond 99 999 999
/// hours are capped.
pub fn grpc_timeout_value(timeout: Duration) -> MetadataValue<Ascii> {
    MetadataValue::try_from(grpc_timeout_text(timeout).as_str())
        .unwrap_or_else(|_| MetadataValue::from_static("0n"))
}

/// [`grpc_timeout_value`] as an HTTP header value.
pub(crate) fn grpc_timeout_header(timeout: Duration) -> http::HeaderValue {
    http::HeaderValue::try_from(grpc_timeout_text(timeout))
        .unwrap_or_else(|_| http::HeaderValue::from_static("0n"))
}

/// What the generated client notes on an attempt, as a request extension, for a transport
/// that holds endpoints to the deadlines they miss ([`crate::Pool`]) when the
/// `grpc-timeout` header does not tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptBudget {
    /// The RPC's own deadline for this attempt, not sent as `grpc-timeout` (propagation
    /// off, or a stream, whose deadline covers its response headers only).
    Own(Duration),
    /// The caller's deadline, or what earlier attempts left of the RPC's: an endpoint
    /// that misses it is not at fault.
    Short,
}

/// Sets `request`'s `grpc-timeout` header to `value`, replacing any. With
/// [`grpc_timeout_header`], this is `Request::set_timeout`, except that a timeout beyond
/// the protocol's largest value (99 999 999 hours) is capped rather than a panic.
pub(crate) fn set_grpc_timeout<M>(request: &mut tonic::Request<M>, value: http::HeaderValue) {
    request
        .metadata_mut()
        .as_mut()
        .insert(GRPC_TIMEOUT_NAME.clone(), value);
}

fn grpc_timeout_text(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    let (count, unit) = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos / per, unit))
    .find(|(count, _)| *count <= MAX)
    .unwrap_or((MAX, 'H'));
    format!("{count}{unit}")
}

/// The deadline a caller set on a request (`Request::set_timeout`), if any.
pub fn request_timeout(metadata: &MetadataMap) -> Option<Duration> {
    header_timeout(metadata.as_ref())
}

/// The deadline in an HTTP request's `grpc-timeout` header, if any.
pub(crate) fn header_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(&GRPC_TIMEOUT_NAME)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            "",
            "S",
            "5",
            "5s",
            "-5S",
            "123456789S",
            "1.5S",
            "5 S",
            "1é",
            "é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// A deadline longer than the header can say (from a huge `timeout_ms`, less what a
    /// retry has used) is capped; tonic's `Request::set_timeout` would panic.
    #[test]
    fn a_request_deadline_beyond_the_protocol_is_capped() {
        for timeout in [Duration::from_secs(u64::MAX / 1000), Duration::MAX] {
            let mut request = tonic::Request::new(());
            set_grpc_timeout(&mut request, grpc_timeout_header(timeout));
            assert_eq!(
                request_timeout(request.metadata()),
                Some(Duration::from_secs(99_999_999 * 3600))
            );
        }
    }

    #[test]
    fn writes_what_it_reads_in_at_most_eight_digits() {
        for (timeout, text) in [
            (Duration::from_millis(300), "300000u"),
            (Duration::from_nanos(7), "7n"),
            (Duration::from_secs(2), "2000000u"),
            (Duration::from_secs(200), "200000m"),
            (Duration::from_secs(86_400 * 365), "31536000S"),
            (Duration::from_secs(86_400 * 365 * 10), "5256000M"),
            (Duration::MAX, "99999999H"),
        ] {
            let value = grpc_timeout_value(timeout);
            assert_eq!(value.to_str().unwrap(), text, "{timeout:?}");
            let back = parse_grpc_timeout(text).unwrap();
            assert!(back <= timeout, "{timeout:?} came back as {back:?}");
        }
        // the same as tonic's own
        for ms in [1, 300, 2_000, 30_000, 7_200_000] {
            let timeout = Duration::from_millis(ms);
            let mut r = tonic::Request::new(());
            r.set_timeout(timeout);
            assert_eq!(
                request_timeout(r.metadata()),
                parse_grpc_timeout(grpc_timeout_value(timeout).to_str().unwrap())
            );
        }
    }

    #[test]
    fn reads_what_tonic_writes() {
        let mut r = tonic::Request::new(());
        r.set_timeout(Duration::from_millis(1500));
        assert_eq!(
            request_timeout(r.metadata()),
            Some(Duration::from_millis(1500))
        );
    }
}

/// The deadline of the request being served, captured by [`DeadlinePropagationLayer`]:
/// outgoing calls made while handling it get at most the time left, minus `margin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    /// When the incoming request's caller gives up.
    pub deadline: std::time::Instant,
    /// Time kept back for the answer to travel back.
    pub margin: Duration,
}

tokio::task_local! {
    static INHERITED: Option<Inherited>;
}

/// The deadline inherited from the request being served on this task, if any.
pub fn inherited() -> Option<Inherited> {
    INHERITED.try_with(|d| *d).ok().flatten()
}

/// Time left for an outgoing call under the inherited deadline (after the margin):
/// `None` when there is no inherited deadline.
pub fn remaining() -> Option<Duration> {
    inherited().map(|i| {
        i.deadline
            .saturating_duration_since(std::time::Instant::now())
            .saturating_sub(i.margin)
    })
}

/// Runs `f` with `deadline` as the inherited deadline (the earlier one wins when already
/// inside one). Use it to carry a deadline into a spawned task.
pub async fn scope<F: std::future::Future>(deadline: Inherited, f: F) -> F::Output {
    let effective = match inherited() {
        Some(outer) if outer.deadline < deadline.deadline => outer,
        _ => deadline,
    };
    INHERITED.scope(Some(effective), f).await
}

/// A tower layer for tonic servers: captures each incoming request's `grpc-timeout`, so
/// that resilient clients called while handling it get at most the time left.
///
/// ```
/// # fn server() {
/// use resilient_runtime::deadline::DeadlinePropagationLayer;
/// let _server = tonic::transport::Server::builder().layer(DeadlinePropagationLayer::new());
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DeadlinePropagationLayer {
    margin: Duration,
}

impl DeadlinePropagationLayer {
    /// The margin kept back for the answer: 5 ms.
    pub const DEFAULT_MARGIN: Duration = Duration::from_millis(5);

    /// A layer with the default margin.
    pub fn new() -> Self {
        Self {
            margin: Self::DEFAULT_MARGIN,
        }
    }

    /// A layer that keeps `margin` of each deadline back.
    pub fn with_margin(margin: Duration) -> Self {
        Self { margin }
    }
}

impl Default for DeadlinePropagationLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for DeadlinePropagationLayer {
    type Service = DeadlinePropagation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlinePropagation {
            inner,
            margin: self.margin,
        }
    }
}

/// The service of [`DeadlinePropagationLayer`].
#[derive(Debug, Clone)]
pub struct DeadlinePropagation<S> {
    inner: S,
    margin: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for DeadlinePropagation<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tokio::task::futures::TaskLocalFuture<Option<Inherited>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let deadline = request
            .headers()
            .get(GRPC_TIMEOUT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|t| Inherited {
                deadline: std::time::Instant::now() + t,
                margin: self.margin,
            });
        INHERITED.scope(deadline, self.inner.call(request))
    }
}

#[cfg(test)]
mod propagation_tests {
    use super::*;

    #[tokio::test]
    async fn scope_keeps_the_earlier_deadline_and_remaining_subtracts_the_margin() {
        assert_eq!(remaining(), None);
        let now = std::time::Instant::now();
        let outer = Inherited {
            deadline: now + Duration::from_millis(100),
            margin: Duration::from_millis(10),
        };
        let later = Inherited {
            deadline: now + Duration::from_secs(10),
            margin: Duration::ZERO,
        };
        scope(outer, async {
            let left = remaining().unwrap();
            assert!(left <= Duration::from_millis(90) && left > Duration::from_millis(50));
            scope(later, async {
                assert_eq!(
                    inherited(),
                    Some(outer),
                    "a later deadline cannot extend it"
                );
            })
            .await;
        })
        .await;
    }

    #[tokio::test]
    async fn the_layer_captures_grpc_timeout() {
        use tower::{Layer, Service, ServiceExt};
        let svc = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(remaining())
        });
        let mut svc = DeadlinePropagationLayer::with_margin(Duration::from_millis(5)).layer(svc);
        let req = http::Request::builder()
            .header(GRPC_TIMEOUT_HEADER, "200m")
            .body(())
            .unwrap();
        let left = svc.ready().await.unwrap().call(req).await.unwrap().unwrap();
        assert!(
            left <= Duration::from_millis(195) && left > Duration::from_millis(150),
            "{left:?}"
        );
        let req = http::Request::builder().body(()).unwrap();
        assert_eq!(svc.ready().await.unwrap().call(req).await.unwrap(), None);
    }
}
