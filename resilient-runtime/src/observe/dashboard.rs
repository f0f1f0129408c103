//! The resilience dashboard: every breaker's state and every service's error rate, as
//! text (to print or serve at `/resilience`) and as an HTML page (`/resilience.html`).
//!
//! ```text
//! Circuit Breaker State:
//! ├── auth-service: CLOSED ✓ (0 failures, p99: 8ms)
//! ├── media-service: HALF-OPEN ⚠️ (recovering from failure, p99: 120ms)
//! └── search-service: OPEN ❌ (5 consecutive failures, retry in 25s)
//!
//! Service Error Rates (last 5m):
//! ├── auth-service: 0.1%
//! ├── media-service: 2.1% ← HIGH
//! └── search-service: 5.8% ← CRITICAL
//! ```
//!
//! States come from the live breakers; latencies and error rates from [`Metrics`] (the
//! process-wide ones by default), over the last five minutes once the dashboard has been
//! rendered that long, since the metrics were created until then. A service with several
//! RPCs shows its worst state, with one line per RPC when they differ.
//!
//! With pools in the process (feature `discovery`), an `Endpoints:` section follows: each
//! target's endpoints by state (`3 active, 1 ejected`; each address once, in the best
//! state any of the target's pools sees it in), marked CRITICAL when none is active.
//!
//! The error rate is non-OK statuses over admitted calls, as the `HighServiceErrorRate`
//! alert computes it. It is marked HIGH from 1% and CRITICAL from 5%
//! ([`HIGH_ERROR_RATE`], [`CRITICAL_ERROR_RATE`]): earlier than the alert, which pages
//! at 10%, so that a dashboard shows trouble before anyone is woken.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::breaker::{CircuitBreakerState, Mode};
use crate::observe::metrics::{Live, Metrics, SeriesWindow, live_breakers, quantile};

/// Error rate from which a service is marked HIGH: 1%.
pub const HIGH_ERROR_RATE: f64 = 0.01;
/// Error rate from which a service is marked CRITICAL: 5%.
pub const CRITICAL_ERROR_RATE: f64 = 0.05;
/// How far back latencies and error rates look: 5 minutes (the alert's `rate()` window).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// How often the HTML page reloads itself, in seconds.
pub const HTML_REFRESH_SECS: u32 = 5;

const PAGE: &str = include_str!("resilience.html");

/// The dashboard of the process-wide metrics, as text.
pub fn render() -> String {
    Dashboard::new().render()
}

/// The dashboard of the process-wide metrics, as a self-contained HTML page that reloads
/// itself every [`HTML_REFRESH_SECS`] seconds.
pub fn render_html() -> String {
    Dashboard::new().render_html()
}

/// A dashboard with other metrics, window or thresholds.
///
/// ```
/// use resilient_runtime::dashboard::Dashboard;
/// use resilient_runtime::metrics::Metrics;
/// use std::time::Duration;
///
/// let text = Dashboard::new()
///     .metrics(Metrics::new())
///     .window(Duration::from_secs(60))
///     .thresholds(0.02, 0.10)
///     .render();
/// assert!(text.starts_with("Circuit Breaker State:"));
/// ```
#[derive(Debug, Clone)]
pub struct Dashboard {
    metrics: Option<Metrics>,
    window: Duration,
    high: f64,
    critical: f64,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard::new()
    }
}

impl Dashboard {
    /// The dashboard of the process-wide metrics ([`Metrics::install_global`]); without
    /// them, states and consecutive failures only.
    pub fn new() -> Self {
        Dashboard {
            metrics: Metrics::global(),
            window: DEFAULT_WINDOW,
            high: HIGH_ERROR_RATE,
            critical: CRITICAL_ERROR_RATE,
        }
    }

    /// Reads latencies and error rates from `metrics`.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How far back latencies and error rates look. Default: [`DEFAULT_WINDOW`].
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The error rates (0..=1) from which a service is marked HIGH and CRITICAL.
    /// Defaults: [`HIGH_ERROR_RATE`], [`CRITICAL_ERROR_RATE`]. A value that is not a
    /// finite number keeps its default.
    pub fn thresholds(mut self, high: f64, critical: f64) -> Self {
        if high.is_finite() {
            self.high = high;
        }
        if critical.is_finite() {
            self.critical = critical;
        }
        self
    }

    /// The dashboard as text.
    pub fn render(&self) -> String {
        let view = self.view();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&view, &mut out);
        out
    }

    /// The dashboard as a self-contained HTML page (no script, no external asset) that
    /// reloads itself every [`HTML_REFRESH_SECS`] seconds.
    pub fn render_html(&self) -> String {
        let view = self.view();
        let mut body = String::new();
        let _ = self.write_html(&view, &mut body);
        PAGE.replace("{{refresh}}", &HTML_REFRESH_SECS.to_string())
            .replace("{{body}}", &body)
    }

    fn view(&self) -> View {
        let live = live_breakers();
        let window = self.metrics.as_ref().map(|m| m.window(self.window));
        let bounds = self.metrics.as_ref().map(|m| m.bounds().to_vec());
        let latency = self.metrics.as_ref().is_some_and(|m| m.records_latency());
        let mut services: BTreeMap<String, ServiceView> = BTreeMap::new();
        for l in live {
            let service = services
                .entry(l.service.clone())
                .or_insert_with(|| ServiceView::new(&l.service));
            service.rpcs.push(RpcView::live(l));
        }
        if let Some(window) = &window {
            for s in &window.series {
                let service = services
                    .entry(s.service.clone())
                    .or_insert_with(|| ServiceView::new(&s.service));
                match service.rpcs.iter_mut().find(|r| r.rpc == s.rpc) {
                    Some(rpc) => rpc.add(s),
                    None if s.requests > 0 => {
                        let mut rpc = RpcView::gone(&s.rpc);
                        rpc.add(s);
                        service.rpcs.push(rpc);
                    }
                    None => {}
                }
            }
        }
        let mut services: Vec<ServiceView> = services
            .into_values()
            .filter(|s| !s.rpcs.is_empty())
            .collect();
        for s in &mut services {
            s.rpcs.sort_by(|a, b| a.rpc.cmp(&b.rpc));
            s.summarize(bounds.as_deref().filter(|_| latency));
        }
        View {
            services,
            pools: pools(),
            span: window.map(|w| match w.span {
                Some(span) => Span::Last(span),
                None => Span::SinceStart,
            }),
            latency,
        }
    }

    fn mark(&self, rate: f64) -> Option<&'static str> {
        if rate >= self.critical {
            Some("CRITICAL")
        } else if rate >= self.high {
            Some("HIGH")
        } else {
            None
        }
    }

    fn write_text(&self, view: &View, out: &mut String) -> std::fmt::Result {
        writeln!(out, "Circuit Breaker State:")?;
        // Healthy first, the worst last, as in the design document: trouble sits right
        // above the error rates.
        let mut live: Vec<&ServiceView> = view.services.iter().filter(|s| s.live()).collect();
        live.sort_by_key(|s| severity(s.worst().state));
        if live.is_empty() {
            writeln!(out, "└── (no circuit breaker)")?;
        }
        for (i, s) in live.iter().enumerate() {
            let last = i + 1 == live.len();
            let (branch, indent) = if last {
                ("└──", "    ")
            } else {
                ("├──", "│   ")
            };
            let worst = s.headline();
            writeln!(
                out,
                "{branch} {}: {} {} ({})",
                s.name,
                state_name(worst.state),
                state_icon(worst.state),
                self.detail(&worst, view.latency, s.mixed())
            )?;
            if s.mixed() {
                let rpcs: Vec<&RpcView> = s.rpcs.iter().filter(|r| r.live).collect();
                for (j, r) in rpcs.iter().enumerate() {
                    let b = if j + 1 == rpcs.len() {
                        "└──"
                    } else {
                        "├──"
                    };
                    writeln!(
                        out,
                        "{indent}{b} {}: {} {} ({})",
                        r.rpc,
                        state_name(r.state),
                        state_icon(r.state),
                        self.detail(r, view.latency, false)
                    )?;
                }
            }
        }
        writeln!(out)?;
        match view.span {
            Some(Span::Last(span)) => {
                writeln!(out, "Service Error Rates (last {}):", format_span(span))?
            }
            Some(Span::SinceStart) => writeln!(out, "Service Error Rates (since start):")?,
            None => writeln!(out, "Service Error Rates:")?,
        }
        if view.span.is_none() {
            writeln!(
                out,
                "└── (no metrics: call resilient_runtime::metrics::Metrics::install_global())"
            )?;
        } else {
            for (i, s) in view.services.iter().enumerate() {
                let branch = if i + 1 == view.services.len() {
                    "└──"
                } else {
                    "├──"
                };
                match s.error_rate() {
                    None => writeln!(out, "{branch} {}: no calls", s.name)?,
                    Some(rate) => {
                        write!(out, "{branch} {}: {}", s.name, format_percent(rate))?;
                        match self.mark(rate) {
                            Some(mark) => writeln!(out, " ← {mark}")?,
                            None => writeln!(out)?,
                        }
                    }
                }
            }
        }
        if !view.pools.is_empty() {
            writeln!(out)?;
            writeln!(out, "Endpoints:")?;
            for (i, p) in view.pools.iter().enumerate() {
                let branch = if i + 1 == view.pools.len() {
                    "└──"
                } else {
                    "├──"
                };
                write!(out, "{branch} {}: {}", p.target, p.counts())?;
                if p.none_active() {
                    writeln!(out, " ← CRITICAL")?;
                } else {
                    writeln!(out)?;
                }
            }
        }
        Ok(())
    }

    /// The words in parentheses after a state.
    fn detail(&self, r: &RpcView, latency: bool, name_rpc: bool) -> String {
        let mut parts: Vec<String> = Vec::new();
        if name_rpc {
            parts.push(r.rpc.clone());
        }
        match r.mode {
            Mode::Normal => {}
            Mode::ForcedOpen => parts.push("forced open".into()),
            Mode::ForcedClosed => parts.push("forced closed".into()),
            Mode::Disabled => parts.push("disabled".into()),
            Mode::MetricsOnly => parts.push("metrics only".into()),
        }
        match r.state {
            CircuitBreakerState::Closed => {
                let n = r.consecutive_failures;
                parts.push(format!("{n} failure{}", if n == 1 { "" } else { "s" }));
            }
            CircuitBreakerState::HalfOpen => parts.push("recovering from failure".into()),
            CircuitBreakerState::Open => {
                if r.mode == Mode::Normal {
                    parts.push(r.open_reason.clone().unwrap_or_else(|| "open".into()));
                }
                if let Some(after) = r.retry_after.filter(|_| r.mode == Mode::Normal) {
                    parts.push(format!("retry in {}", format_span(after)));
                }
            }
        }
        if latency && r.state == CircuitBreakerState::Closed {
            match r.p99 {
                Some(p99) => parts.push(format!("p99: {}", format_latency(p99))),
                None => parts.push("p99: n/a".into()),
            }
        }
        let (head, tail) = match (name_rpc, parts.split_first()) {
            (true, Some((rpc, rest))) => (format!("{rpc}: "), rest.join(", ")),
            _ => (String::new(), parts.join(", ")),
        };
        format!("{head}{tail}")
    }

    fn write_html(&self, view: &View, out: &mut String) -> std::fmt::Result {
        let count = |state| {
            view.services
                .iter()
                .filter(|s| s.live() && s.worst().state == state)
                .count()
        };
        writeln!(
            out,
            r#"<header><h1>Resilience</h1><p class="summary"><span class="pill closed">{} closed</span><span class="pill half_open">{} half-open</span><span class="pill open">{} open</span>{}</p></header>"#,
            count(CircuitBreakerState::Closed),
            count(CircuitBreakerState::HalfOpen),
            count(CircuitBreakerState::Open),
            match view.span {
                Some(Span::Last(span)) => format!(
                    r#"<span class="window">error rates and p99 over the last {}</span>"#,
                    escape(&format_span(span))
                ),
                Some(Span::SinceStart) =>
                    r#"<span class="window">error rates and p99 since start</span>"#.into(),
                None => r#"<span class="window">no metrics installed: states only</span>"#.into(),
            }
        )?;
        if view.services.is_empty() {
            writeln!(
                out,
                r#"<p class="empty">No circuit breaker in this process.</p>"#
            )?;
        }
        writeln!(out, r#"<main class="grid">"#)?;
        // Trouble first: open, half-open, closed, then services whose breakers are gone.
        let mut cards: Vec<&ServiceView> = view.services.iter().collect();
        cards.sort_by_key(|s| std::cmp::Reverse((s.live(), severity(s.worst().state))));
        for s in cards {
            let worst = s.headline();
            let state = if s.live() {
                worst.state.as_str()
            } else {
                "gone"
            };
            let rate = s.error_rate();
            let mark = rate.and_then(|r| self.mark(r));
            writeln!(
                out,
                r#"<section class="service {state}" data-service="{name}" data-state="{state}">"#,
                name = escape(&s.name)
            )?;
            writeln!(
                out,
                r#"<div class="head"><h2>{}</h2><span class="badge {state}">{}</span></div>"#,
                escape(&s.name),
                if s.live() {
                    format!("{} {}", html_icon(worst.state), state_name(worst.state))
                } else {
                    "NO BREAKER".into()
                }
            )?;
            if s.live() {
                writeln!(
                    out,
                    r#"<p class="detail">{}</p>"#,
                    escape(&self.detail(&s.headline(), view.latency, s.mixed()))
                )?;
            }
            let (rate_text, width) = match rate {
                Some(r) => (
                    format_percent(r),
                    (r * 100.0 / self.critical.max(0.0001)).min(100.0),
                ),
                None => ("no calls".to_string(), 0.0),
            };
            writeln!(
                out,
                r#"<div class="rate {level}"><span class="label">error rate</span><span class="value">{rate_text}{mark}</span><div class="bar"><div style="width:{width:.1}%"></div></div></div>"#,
                level = mark.map_or("ok", |m| if m == "CRITICAL" { "critical" } else { "high" }),
                mark = mark.map(|m| format!(" ← {m}")).unwrap_or_default(),
            )?;
            writeln!(
                out,
                r#"<table><thead><tr><th>RPC</th><th>state</th><th>failures</th><th>p99</th><th>calls</th><th>errors</th></tr></thead><tbody>"#
            )?;
            for r in &s.rpcs {
                let rstate = if r.live { r.state.as_str() } else { "gone" };
                writeln!(
                    out,
                    r#"<tr class="{rstate}"><td>{}</td><td><span class="dot {rstate}"></span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    escape(if r.rpc.is_empty() { "-" } else { &r.rpc }),
                    if r.live {
                        state_name(r.state)
                    } else {
                        "NO BREAKER"
                    },
                    r.consecutive_failures,
                    r.p99.map_or("n/a".into(), format_latency),
                    r.requests,
                    r.errors,
                )?;
            }
            writeln!(out, "</tbody></table></section>")?;
        }
        writeln!(out, "</main>")?;
        if !view.pools.is_empty() {
            writeln!(
                out,
                r#"<section class="pools"><h2>Endpoints</h2><table><thead><tr><th>target</th><th>active</th><th>ejected</th><th>unhealthy</th></tr></thead><tbody>"#
            )?;
            for p in &view.pools {
                writeln!(
                    out,
                    r#"<tr class="{}" data-target="{target}"><td>{target}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    if p.none_active() { "open" } else { "closed" },
                    p.active,
                    p.ejected,
                    p.unhealthy,
                    target = escape(&p.target),
                )?;
            }
            writeln!(out, "</tbody></table></section>")?;
        }
        Ok(())
    }
}

struct View {
    services: Vec<ServiceView>,
    /// The live pools' endpoints, by target (empty without the `discovery` feature).
    pools: Vec<PoolView>,
    /// The metrics window, when there are metrics.
    span: Option<Span>,
    latency: bool,
}

/// The endpoints of a target's live pools.
struct PoolView {
    target: String,
    active: u64,
    ejected: u64,
    unhealthy: u64,
}

impl PoolView {
    /// `3 active, 1 ejected`: the states that have endpoints, active always.
    fn counts(&self) -> String {
        let mut parts = vec![format!("{} active", self.active)];
        if self.ejected > 0 {
            parts.push(format!("{} ejected", self.ejected));
        }
        if self.unhealthy > 0 {
            parts.push(format!("{} unhealthy", self.unhealthy));
        }
        parts.join(", ")
    }

    /// Every endpoint is out of rotation, or there is none: calls fail or go anywhere.
    fn none_active(&self) -> bool {
        self.active == 0
    }
}

fn pools() -> Vec<PoolView> {
    #[cfg(feature = "discovery")]
    {
        crate::pool::live_pools()
            .into_iter()
            .map(|p| PoolView {
                target: p.target,
                active: p.active,
                ejected: p.ejected,
                unhealthy: p.unhealthy,
            })
            .collect()
    }
    #[cfg(not(feature = "discovery"))]
    {
        Vec::new()
    }
}

#[derive(Clone, Copy)]
enum Span {
    /// About this long (the age of the snapshot the counts start from).
    Last(Duration),
    /// Since the metrics were created: no snapshot is old enough yet.
    SinceStart,
}

struct ServiceView {
    name: String,
    rpcs: Vec<RpcView>,
    requests: u64,
    errors: u64,
    /// Over all its RPCs.
    p99: Option<f64>,
}

impl ServiceView {
    fn new(name: &str) -> Self {
        ServiceView {
            name: name.to_owned(),
            rpcs: Vec::new(),
            requests: 0,
            errors: 0,
            p99: None,
        }
    }

    fn live(&self) -> bool {
        self.rpcs.iter().any(|r| r.live)
    }

    /// The RPC in the worst state (most failures among equals).
    fn worst(&self) -> &RpcView {
        let mut worst = &self.rpcs[0];
        for r in &self.rpcs {
            let key = |r: &RpcView| (r.live, severity(r.state), r.consecutive_failures);
            if key(r) > key(worst) {
                worst = r;
            }
        }
        worst
    }

    /// What the service's line says: the worst RPC when its RPCs differ; otherwise the
    /// shared state, the most consecutive failures and the p99 over all its RPCs.
    fn headline(&self) -> RpcView {
        let worst = self.worst();
        let mut line = worst.clone();
        if !self.mixed() {
            line.p99 = self.p99;
        }
        line
    }

    /// RPCs in different states (or modes).
    fn mixed(&self) -> bool {
        let mut live = self.rpcs.iter().filter(|r| r.live);
        match live.next() {
            Some(first) => live.any(|r| r.state != first.state || r.mode != first.mode),
            None => false,
        }
    }

    fn summarize(&mut self, bounds: Option<&[f64]>) {
        self.requests = self.rpcs.iter().map(|r| r.requests).sum();
        self.errors = self.rpcs.iter().map(|r| r.errors).sum();
        if let Some(bounds) = bounds {
            let mut all = vec![0u64; bounds.len() + 1];
            for r in &mut self.rpcs {
                r.p99 = quantile(0.99, bounds, &r.buckets);
                for (sum, n) in all.iter_mut().zip(&r.buckets) {
                    *sum += n;
                }
            }
            self.p99 = quantile(0.99, bounds, &all);
        }
    }

    fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors.min(self.requests) as f64 / self.requests as f64)
    }
}

#[derive(Clone)]
struct RpcView {
    rpc: String,
    /// A breaker with these labels is alive.
    live: bool,
    state: CircuitBreakerState,
    mode: Mode,
    consecutive_failures: u32,
    retry_after: Option<Duration>,
    open_reason: Option<String>,
    requests: u64,
    errors: u64,
    buckets: Vec<u64>,
    p99: Option<f64>,
}

impl RpcView {
    fn live(l: Live) -> Self {
        let mode = l.mode();
        RpcView {
            rpc: l.rpc,
            live: true,
            state: l.state,
            mode,
            consecutive_failures: l.consecutive_failures,
            retry_after: l.retry_after,
            open_reason: None,
            requests: 0,
            errors: 0,
            buckets: Vec::new(),
            p99: None,
        }
    }

    fn gone(rpc: &str) -> Self {
        RpcView {
            rpc: rpc.to_owned(),
            live: false,
            state: CircuitBreakerState::Closed,
            mode: Mode::Normal,
            consecutive_failures: 0,
            retry_after: None,
            open_reason: None,
            requests: 0,
            errors: 0,
            buckets: Vec::new(),
            p99: None,
        }
    }

    fn add(&mut self, s: &SeriesWindow) {
        self.requests = s.requests;
        self.errors = s.errors;
        self.buckets = s.buckets.clone();
        self.open_reason = s.last_open_reason.clone();
    }
}

fn severity(state: CircuitBreakerState) -> u8 {
    match state {
        CircuitBreakerState::Closed => 0,
        CircuitBreakerState::HalfOpen => 1,
        CircuitBreakerState::Open => 2,
    }
}

fn state_name(state: CircuitBreakerState) -> &'static str {
    match state {
        CircuitBreakerState::Closed => "CLOSED",
        CircuitBreakerState::HalfOpen => "HALF-OPEN",
        CircuitBreakerState::Open => "OPEN",
    }
}

fn state_icon(state: CircuitBreakerState) -> &'static str {
    match state {
        CircuitBreakerState::Closed => "✓",
        CircuitBreakerState::HalfOpen => "⚠️",
        CircuitBreakerState::Open => "❌",
    }
}

/// Icons every system font has (colour emoji fonts are not everywhere).
fn html_icon(state: CircuitBreakerState) -> &'static str {
    match state {
        CircuitBreakerState::Closed => "✓",
        CircuitBreakerState::HalfOpen => "⚠",
        CircuitBreakerState::Open => "✕",
    }
}

fn format_percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// `850µs`, `8ms`, `1.2s`.
fn format_latency(secs: f64) -> String {
    if secs < 0.001 {
        format!("{:.0}µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.0}ms", secs * 1e3)
    } else {
        format!("{secs:.1}s")
    }
}

/// `42s`, `5m`, `1h 5m`.
fn format_span(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else {
        format!("{}h {}m", secs / 3600, secs % 3600 / 60)
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_lines_show_the_states_that_have_endpoints() {
        let pool = |active, ejected, unhealthy| PoolView {
            target: "dns:///auth:8083".into(),
            active,
            ejected,
            unhealthy,
        };
        assert_eq!(pool(3, 0, 0).counts(), "3 active");
        assert_eq!(pool(1, 1, 2).counts(), "1 active, 1 ejected, 2 unhealthy");
        assert!(!pool(1, 1, 0).none_active());
        assert!(pool(0, 2, 0).none_active());
        let view = View {
            services: Vec::new(),
            pools: vec![pool(0, 2, 0)],
            span: None,
            latency: false,
        };
        let mut text = String::new();
        Dashboard::default().write_text(&view, &mut text).unwrap();
        assert!(
            text.ends_with("Endpoints:\n└── dns:///auth:8083: 0 active, 2 ejected ← CRITICAL\n"),
            "{text}"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format_latency(0.0008), "800µs");
        assert_eq!(format_latency(0.008), "8ms");
        assert_eq!(format_latency(1.25), "1.2s");
        assert_eq!(format_span(Duration::from_secs(42)), "42s");
        assert_eq!(format_span(Duration::from_secs(300)), "5m");
        assert_eq!(format_span(Duration::from_secs(3900)), "1h 5m");
        assert_eq!(format_percent(0.021), "2.1%");
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn marks_follow_the_thresholds() {
        let d = Dashboard::new();
        assert_eq!(d.mark(0.001), None);
        assert_eq!(d.mark(0.01), Some("HIGH"));
        assert_eq!(d.mark(0.049), Some("HIGH"));
        assert_eq!(d.mark(0.05), Some("CRITICAL"));
        let d = d.thresholds(f64::NAN, 0.5);
        assert_eq!(d.mark(0.2), Some("HIGH"));
    }
}
