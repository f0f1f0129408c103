//! The README's demo, run as a test: the full scenario with the demo's timings, every
//! check it prints must hold.

use std::time::Duration;

use nova_demo::scenario::{self, Options, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_demo_scenario_passes_every_check() {
    resilient_runtime::Metrics::install_global();
    let report = scenario::run(Options {
        scenario: Scenario::Full,
        dashboard_every: Duration::ZERO,
        ..Options::default()
    })
    .await
    .expect("the cluster starts on loopback");
    println!("\n{}", report.table());
    // the full scenario makes seven checks; fewer means a phase was skipped
    assert_eq!(
        report.checks.len(),
        7,
        "a check of the scenario did not run"
    );
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.what.as_str())
        .collect();
    assert!(failed.is_empty(), "demo checks failed: {failed:#?}");
}
