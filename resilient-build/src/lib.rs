//! Generates tonic clients that protect every RPC with a circuit breaker, a timeout and a
//! fallback, from a `build.rs`.
//!
//! `resilient-build` reads `.proto` files with `protox` (no `protoc` needed), generates
//! prost messages and tonic clients and servers as `tonic-prost-build` does, and adds, for
//! every proto service, a resilient client whose behaviour lives in `resilient-runtime`.
//!
//! # Quick start
//!
//! ```no_run
//! // build.rs
//! use std::time::Duration;
//! use resilient_build::Policy;
//!
//! fn main() -> std::io::Result<()> {
//!     resilient_build::configure()
//!         .policy(
//!             ".nova.auth.v1.AuthService",
//!             Policy::new().failure_threshold(3).success_threshold(3).timeout(Duration::from_secs(2)),
//!         )
//!         .policy(
//!             ".nova.media.v1.MediaService.UploadMedia",
//!             Policy::new().failure_threshold(5).open_for(Duration::from_secs(60)).timeout(Duration::from_secs(30)),
//!         )
//!         .compile_protos(&["proto/nova/auth/v1/auth.proto", "proto/nova/media/v1/media.proto"], &["proto"])
//! }
//! ```
//!
//! With the defaults, one line does: `resilient_build::compile_protos("proto/auth.proto")`.
//!
//! The crate then includes the package as usual and swaps one type name:
//!
//! ```text
//! pub mod auth { tonic::include_proto!("nova.auth.v1"); }
//! use auth::auth_service_resilient::{AuthServiceFallback, AuthServiceResilientClient};
//!
//! let client = AuthServiceResilientClient::connect("http://auth:8083").await?;
//! let claims = client.validate_token(request).await?;      // same call as tonic's client
//! ```
//!
//! (That snippet needs the generated code and `resilient-runtime`, so it is compiled by
//! the workspace's `tests/` crates rather than here.)
//!
//! # What is generated
//!
//! Everything for package `nova.auth.v1` lands in one `nova.auth.v1.rs`: prost's
//! messages, tonic's `auth_service_client` and `auth_service_server`, and for each service
//! a module `auth_service_resilient` holding:
//!
//! - `AuthServiceResilientClient<T = Channel, F = NoFallback>`: one method per RPC with
//!   the name and argument types of tonic's client, taking `&self` and returning the same
//!   `Result<Response<_>, Status>`; `connect`, `new(tonic_client)`, `try_new`,
//!   `with_runtime(tonic_client, runtime)` (breakers and policies resolved by the caller,
//!   e.g. `ServiceRuntime::resolve(Self::spec(), env, Some(&config))`, no environment
//!   read), `with_fallback`, `breaker("ValidateToken")`, `runtime()`, `spec()`, `inner()`.
//!   Clones share breakers.
//! - `AuthServiceFallback`: one method per RPC with a default that returns the error, so
//!   a user overrides only what has a degraded answer, with plain `async fn`:
//!
//! ```text
//! impl AuthServiceFallback for CachedClaims {
//!     async fn validate_token(&self, request: ValidateTokenRequest, cause: FallbackCause)
//!         -> Result<tonic::Response<Claims>, tonic::Status> { ... }
//! }
//! ```
//!
//!   Unary and server-streaming fallbacks receive the request message; client-streaming
//!   and bidi ones only the cause, as their request stream is consumed.
//! - A static `ServiceSpec` with each RPC's kind, idempotency and build-time policy
//!   (breaker, timeout, fallback, retry, hedging and bulkhead).
//!
//! Proto comments become the docs of the generated items (tonic's service and method
//! docs included), read as markdown and made safe for rustdoc: indented and unlabelled
//! fenced code becomes a `text` block, so no proto example runs as a doctest; `[x]`,
//! `<tag>` and bare URLs outside code spans are escaped or linked, so no broken-link or
//! HTML warning; lazy continuation lines of lists and quotes are made explicit, as
//! clippy's `doc_lazy_continuation` asks. Deprecated RPCs are `#[deprecated]`. The
//! generated code is formatted and clean under `missing_docs`, `clippy -D warnings` and
//! `RUSTDOCFLAGS=-D warnings`.
//!
//! # Streaming
//!
//! Unary and client-streaming calls time out over the whole call and record the final
//! status. Server-streaming and bidi calls time out on the response headers and return a
//! stream that records its terminal status when it ends; a stream dropped early counts as
//! neither success nor failure.
//!
//! # Where a policy comes from
//!
//! Each field of an RPC's policy is taken from the highest layer that sets it:
//!
//! 1. runtime configuration (the operator: the TOML file named by `RESILIENT_CONFIG`,
//!    applied by `resilient-runtime` when the client is built);
//! 2. build.rs, per RPC: `.policy(".nova.auth.v1.AuthService.ValidateToken", ..)`;
//! 3. build.rs, per service or package: `.policy(".nova.auth.v1.AuthService", ..)`,
//!    `.policy(".nova", ..)` (a longer path wins);
//! 4. the proto method option `(resilient.v1.policy)`, then `idempotency_level`;
//! 5. the proto service option `(resilient.v1.service_policy)`;
//! 6. build.rs default: `.policy(".", ..)` or [`Builder::default_policy`];
//! 7. the environment preset chosen by `RESILIENT_ENV` (run time).
//!
//! Layers 2 to 6 are merged here and written into the generated code, with unset fields
//! left to the runtime; `$OUT_DIR/resilient-report.md` lists every RPC, its values and
//! where each came from.
//!
//! The proto options are declared in `resilient/v1/options.proto`, which this crate
//! embeds ([`OPTIONS_PROTO`]), so a proto imports it with no include path:
//!
//! ```proto
//! import "resilient/v1/options.proto";
//!
//! service AuthService {
//!   option (resilient.v1.service_policy) = { failure_threshold: 3 };
//!   rpc ValidateToken(ValidateTokenRequest) returns (Claims) {
//!     option (resilient.v1.policy) = { timeout_ms: 2000 fallback: true };
//!   }
//! }
//! ```
//!
//! # Retries and bulkheads
//!
//! A policy can also retry failed calls ([`Retry`]) and limit the calls in flight (a
//! bulkhead). Both merge field by field like the rest:
//!
//! ```no_run
//! // build.rs
//! use std::time::Duration;
//! use resilient_build::{Policy, Retry};
//!
//! fn main() -> std::io::Result<()> {
//!     resilient_build::configure()
//!         // Every RPC of the service: at most 32 calls in flight, waiting up to 20 ms
//!         // for a slot, and 3 attempts on UNAVAILABLE (the defaults of `Retry::new()`)...
//!         .policy(
//!             ".nova.media.v1.MediaService",
//!             Policy::new()
//!                 .retry(Retry::new())
//!                 .bulkhead(32)
//!                 .bulkhead_wait(Duration::from_millis(20)),
//!         )
//!         // ...GetMedia is safe to repeat and retries longer, also on RESOURCE_EXHAUSTED...
//!         .policy(
//!             ".nova.media.v1.MediaService.GetMedia",
//!             Policy::new().idempotent(true).retry(
//!                 Retry::new()
//!                     .max_attempts(5)
//!                     .initial_backoff(Duration::from_millis(20))
//!                     .retryable_codes(&["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
//!                     .attempt_timeout(Duration::from_millis(300)),
//!             ),
//!         )
//!         // ...and UploadMedia, which streams its request, does not retry at all.
//!         .policy(".nova.media.v1.MediaService.UploadMedia", Policy::new().no_retry())
//!         .compile_protos(&["proto/nova/media/v1/media.proto"], &["proto"])
//! }
//! ```
//!
//! or in the proto, where `max_attempts` above 1 turns retries on:
//!
//! ```proto
//! service MediaService {
//!   option (resilient.v1.service_policy) = { max_concurrent: 32 max_wait_ms: 20 };
//!   rpc GetMedia(GetMediaRequest) returns (Media) {
//!     option idempotency_level = NO_SIDE_EFFECTS;
//!     option (resilient.v1.policy) = {
//!       max_attempts: 5
//!       initial_backoff_ms: 20
//!       max_backoff_ms: 1000
//!       backoff_multiplier: 2.0
//!       retryable_codes: ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
//!       attempt_timeout_ms: 300
//!     };
//!   }
//! }
//! ```
//!
//! Only RPCs that are safe to repeat are retried: `option idempotency_level =
//! NO_SIDE_EFFECTS` or `IDEMPOTENT`, `idempotent: true` in a `resilient.v1` option, or
//! [`Policy::idempotent`]. Client-streaming and bidi RPCs are never retried either, as
//! their request stream is consumed by the first attempt. When a policy asks for retries
//! on such an RPC, the build prints a `cargo:warning` naming it and how to mark it, and
//! the generated spec carries no retry policy for it (rather than one the runtime would
//! ignore); the report still shows what was asked. Retry fields that no layer sets take
//! the runtime's defaults ([`Retry::new`]); a bulkhead exists only where `max_concurrent`
//! is set. The runtime configuration can change every one of these values.
//!
//! # Hedging
//!
//! Instead of retrying a failed call, an idempotent unary RPC can be hedged ([`Hedge`]):
//! when an attempt has not answered after a delay (a percentile of its recent latencies,
//! or a fixed one), another is sent and the first answer wins. Hedging and retries
//! exclude each other, so an RPC that ends up with both fails the build, naming where
//! each came from:
//!
//! ```no_run
//! // build.rs
//! use std::time::Duration;
//! use resilient_build::{Hedge, Policy, Retry};
//!
//! fn main() -> std::io::Result<()> {
//!     resilient_build::configure()
//!         .policy(".nova.media.v1.MediaService", Policy::new().retry(Retry::new()))
//!         // GetMedia is hedged instead: a second attempt after the 95th percentile of
//!         // its recent latencies (30 ms until it is known).
//!         .policy(
//!             ".nova.media.v1.MediaService.GetMedia",
//!             Policy::new()
//!                 .idempotent(true)
//!                 .no_retry()
//!                 .hedge(Hedge::new().delay(Duration::from_millis(30))),
//!         )
//!         .compile_protos(&["proto/nova/media/v1/media.proto"], &["proto"])
//! }
//! ```
//!
//! or in the proto, where any hedging field turns hedging on (`hedge_max_attempts: 1`
//! turns it off, `hedge_percentile: 0` waits the fixed delay):
//!
//! ```proto
//! rpc GetMedia(GetMediaRequest) returns (Media) {
//!   option idempotency_level = NO_SIDE_EFFECTS;
//!   option (resilient.v1.policy) = {
//!     hedge_max_attempts: 2 hedge_delay_ms: 30 hedge_percentile: 0.95
//!   };
//! }
//! ```
//!
//! As with retries, a policy that hedges an RPC that is not idempotent, or that streams,
//! makes the build warn, and the generated spec carries no hedging policy for it.
//!
//! # Keeping raw clients out of reach
//!
//! With `.expose_raw_clients(false)` (see [`Builder::expose_raw_clients`]), tonic's client
//! module is private to the generated package module, so no code can call a dependency
//! around its breaker: the resilient client is built from the transport (`new(channel)`)
//! and has no `inner()`.
//!
//! # Errors
//!
//! Nothing here panics on a user's mistake: [`Builder::compile_protos`] returns an
//! `io::Error` that says where and what to do, for a proto syntax error
//! (`path:line:column`), a policy path that matches nothing (with the nearest real
//! path), an invalid value (naming the RPC, the option and the layer that set it: a zero
//! threshold or duration, `max_attempts` outside 1 to 10, a `backoff_multiplier` below 1,
//! an unknown status code with the nearest real one, `hedge_max_attempts` outside 1 to 5,
//! a `hedge_percentile` outside 0.5 to 0.999, RPCs that share a bulkhead but size it
//! differently), hedging and retries on one RPC, `shared_breaker` on an RPC, or names
//! that would not compile (these start with the proto's `path:line`): two RPCs or services
//! with one Rust name, an RPC named like a method the clients define (`connect`, `new`,
//! `with_fallback`...), a message whose nested-types module is named like a generated
//! one, or `BoolValue` and the other wrappers that prost makes Rust primitives as an RPC's
//! request or response. A build script whose `main` returns the error shows its
//! message as written (quotes unescaped, one problem per line), not as an escaped string:
//!
//! ```text
//! Error: Custom { kind: InvalidInput, error: no service or method matches ".nova.auth.v1.AuthServic"; did you mean ".nova.auth.v1.AuthService"? }
//! ```
//!
//! # Names
//!
//! RPCs keep tonic's Rust names (`Type` is `r#type`, `Self` is `self_`). The generated
//! client calls tonic's and the fallback's methods by their full path, so an RPC named
//! like a std trait method (`Clone`, `Drop`, `AsRef`, `Into`) still reaches its own. In
//! the caller's code, Rust's method lookup applies as for any type: `client.clone(req)`
//! is the RPC (copy the client with `Clone::clone(&client)`), while `client.into(req)`
//! finds `Into::into(self)` first, so call such an RPC by its path:
//! `FooResilientClient::into(&client, request)`.
//!
//! # Rebuilds
//!
//! The builder prints `cargo:rerun-if-changed` for every proto file it read, imports
//! included, and writes a file only when its content changed.

mod builder;
mod codes;
mod error;
mod model;
mod parse;
mod policy;
mod render;
mod report;

#[cfg(test)]
mod golden_tests;

use std::io;
use std::path::Path;

pub use builder::Builder;
pub use policy::{FallbackMode, Hedge, Policy, Retry};

/// The source of `resilient/v1/options.proto`, which user protos import for the
/// `(resilient.v1.policy)` and `(resilient.v1.service_policy)` options. The builder serves
/// it to protox itself; this is for tools that need the file (linters, other generators).
pub const OPTIONS_PROTO: &str = include_str!("../proto/resilient/v1/options.proto");

/// Starts a [`Builder`] with every option at its default.
pub fn configure() -> Builder {
    Builder::default()
}

/// Compiles one proto file with the default options, using its directory as the include
/// path: `resilient_build::compile_protos("proto/auth.proto")`.
///
/// ```no_run
/// // build.rs
/// fn main() -> std::io::Result<()> {
///     resilient_build::compile_protos("proto/auth.proto")
/// }
/// ```
pub fn compile_protos(proto: impl AsRef<Path>) -> io::Result<()> {
    let proto = proto.as_ref();
    let include = proto.parent().ok_or_else(|| {
        error::invalid_input(format!("{} is not a proto file path", proto.display()))
    })?;
    configure().compile_protos(&[proto], &[include])
}
