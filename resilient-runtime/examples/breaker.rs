//! A dependency that goes down and comes back, called through a circuit breaker.
//!
//! `cargo run -p resilient-runtime --example breaker`
//!
//! Prints each call's result and the breaker's state: failures open the circuit, calls
//! are then answered at once without reaching the dependency (served from a cache), and
//! after the open time a probe finds the dependency healthy and the circuit closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt().with_target(false).init();

    let healthy = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicU32::new(0));
    let cb = CircuitBreaker::named(
        "auth-service",
        CircuitBreakerConfig {
            failure_threshold: 3,
            success_threshold: 2,
            timeout: Duration::from_millis(600),
            call_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    );

    let started = Instant::now();
    for i in 0..24u32 {
        if i == 4 {
            println!("--- auth-service goes down (hangs) ---");
            healthy.store(false, Ordering::SeqCst);
        }
        if i == 14 {
            println!("--- auth-service comes back ---");
            healthy.store(true, Ordering::SeqCst);
        }
        let t = Instant::now();
        let result = cb
            .call(|| {
                let healthy = healthy.clone();
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if healthy.load(Ordering::SeqCst) {
                        Ok::<_, String>(format!("claims for user {i}"))
                    } else {
                        std::future::pending().await
                    }
                }
            })
            .await;
        let answer = match result {
            Ok(claims) => claims,
            Err(CircuitBreakerError::Open) => "cached claims (circuit open)".to_string(),
            Err(CircuitBreakerError::Timeout) => "error: timed out".to_string(),
            Err(CircuitBreakerError::Inner(e)) => format!("error: {e}"),
        };
        println!(
            "call {i:>2}: {:<30} {:>6.1} ms   state={}",
            answer,
            t.elapsed().as_secs_f64() * 1000.0,
            cb.state()
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    println!(
        "\n24 calls in {:.1} s; the dependency was reached {} times; final state {}",
        started.elapsed().as_secs_f64(),
        hits.load(Ordering::SeqCst),
        cb.state()
    );
}
