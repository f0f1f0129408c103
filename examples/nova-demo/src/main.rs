//! Runs the nova system on loopback and plays a failure scenario against it.
//!
//! ```text
//! cargo run --release -p nova-demo -- [--scenario full|auth-outage|slow-media|kill-replica]
//!                                     [--rate REQUESTS_PER_SECOND] [--phase SECONDS]
//!                                     [--design-timing] [--quiet]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use nova_demo::scenario::{self, Options, Scenario, Timing};

const USAGE: &str = "usage: nova-demo [--scenario full|auth-outage|slow-media|kill-replica] \
[--rate N] [--phase SECONDS] [--design-timing] [--quiet]";

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--scenario" => options.scenario = value("--scenario")?.parse::<Scenario>()?,
            "--rate" => {
                let v = value("--rate")?;
                options.rate = v
                    .parse()
                    .ok()
                    .filter(|r| (1..=5_000).contains(r))
                    .ok_or_else(|| {
                        format!("--rate takes 1..=5000 requests per second, not {v:?}")
                    })?;
            }
            "--phase" => {
                let v = value("--phase")?;
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=120).contains(s))
                    .ok_or_else(|| format!("--phase takes 1..=120 seconds, not {v:?}"))?;
                options.phase = Duration::from_secs(secs);
            }
            "--design-timing" => options.timing = Timing::Design,
            "--quiet" => options.dashboard_every = Duration::ZERO,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,resilient_runtime=info")
            }),
        )
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        resilient_runtime::Metrics::install_global();
        scenario::run(options).await
    });
    match result {
        Ok(report) => {
            println!("\n{}", report.table());
            println!("finished in {:.1} s", started.elapsed().as_secs_f64());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                eprintln!("some checks failed");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("nova-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
