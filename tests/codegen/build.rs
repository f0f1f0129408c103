//! Generates the test packages with resilient-build.

use std::time::Duration;

use resilient_build::{Hedge, Policy, Retry};

fn main() -> std::io::Result<()> {
    resilient_build::configure()
        .policy(
            ".nova.auth.v1.AuthService",
            Policy::new()
                .failure_threshold(3)
                .success_threshold(3)
                .timeout(Duration::from_secs(2)),
        )
        // Create is not idempotent: the build warns and it is never retried.
        .policy(
            ".test.flaky.v1.FlakyService",
            Policy::new().retry(
                Retry::new()
                    .max_attempts(2)
                    .initial_backoff(Duration::from_millis(1))
                    .max_backoff(Duration::from_millis(5)),
            ),
        )
        // Write is not idempotent: the build warns and it is never hedged.
        .policy(
            ".test.flaky.v1.HedgedService",
            Policy::new().hedge(Hedge::new().fixed_delay()),
        )
        .compile_protos(
            &[
                "proto/nova/auth/v1/auth.proto",
                "proto/test/echo/v1/echo.proto",
                "proto/test/a/v1/catalog.proto",
                "proto/test/hops/v1/hops.proto",
                "proto/test/flaky/v1/flaky.proto",
            ],
            &["proto"],
        )?;
    // A package whose unprotected tonic client is not reachable from outside the
    // generated code.
    resilient_build::configure()
        .expose_raw_clients(false)
        .compile_protos(&["proto/test/nested/deep/v1/keywords.proto"], &["proto"])?;
    // The well-known types generated into `google.protobuf.rs` instead of prost-types.
    resilient_build::configure()
        .compile_well_known_types(true)
        .compile_protos(&["proto/test/wkt/v1/clock.proto"], &["proto"])
}
