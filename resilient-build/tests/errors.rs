//! A user's mistake fails the build with a message that says where and what to do.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use resilient_build::{Hedge, Policy, Retry};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "resilient-build-errors-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("proto/nova/auth/v1")).unwrap();
        TempDir(dir)
    }

    fn proto(&self, source: &str) -> PathBuf {
        let path = self.0.join("proto/nova/auth/v1/auth.proto");
        fs::write(&path, source).unwrap();
        path
    }

    fn compile(&self, builder: resilient_build::Builder) -> String {
        builder
            .out_dir(self.0.join("out"))
            .emit_rerun_if_changed(false)
            .compile_protos(
                &[self.0.join("proto/nova/auth/v1/auth.proto")],
                &[self.0.join("proto")],
            )
            .expect_err("the build must fail")
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const AUTH: &str = r#"syntax = "proto3";
package nova.auth.v1;
import "resilient/v1/options.proto";

service AuthService {
  rpc ValidateToken(ValidateTokenRequest) returns (Claims) {
    option (resilient.v1.policy) = { success_threshold: 0 };
  }
  rpc Refresh(ValidateTokenRequest) returns (Claims);
}
message ValidateTokenRequest { string token = 1; }
message Claims { string sub = 1; }
"#;

fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let dir = TempDir::new("syntax");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\n\nmessage Claims {\n  string sub = 1\n}\n",
    );
    let message = dir.compile(resilient_build::configure());
    assert_eq!(
        message,
        format!(
            "failed to compile protos: {}:6:1: expected ';' or '[', but found '}}'",
            shown(&path)
        )
    );
}

/// protox reads proto2 and proto3 only: an editions file says so, with the way out.
#[test]
fn an_editions_file_says_editions_are_not_supported() {
    let dir = TempDir::new("editions");
    let path = dir.proto("edition = \"2023\";\npackage nova.auth.v1;\nmessage M {}\n");
    let message = dir.compile(resilient_build::configure());
    assert!(
        message.starts_with(&format!("failed to compile protos: {}:1:1:", shown(&path))),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; protobuf editions are not supported by the proto parser (protox): write the \
             file with `syntax = \"proto3\";` or `syntax = \"proto2\";`"
        ),
        "{message}"
    );
}

#[test]
fn unresolved_type_names_file_line_and_column() {
    let dir = TempDir::new("type");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\nmessage Claims {\n  Missing sub = 1;\n}\n",
    );
    let message = dir.compile(resilient_build::configure());
    assert!(
        message.starts_with(&format!("failed to compile protos: {}:4:3:", shown(&path))),
        "{message}"
    );
    assert!(message.contains("Missing"), "{message}");
}

#[test]
fn missing_import_is_an_error() {
    let dir = TempDir::new("import");
    dir.proto("syntax = \"proto3\";\nimport \"nova/common/v1/missing.proto\";\n");
    let message = dir.compile(resilient_build::configure());
    assert!(
        message.contains("nova/common/v1/missing.proto"),
        "{message}"
    );
}

#[test]
fn misspelt_policy_path_suggests_the_nearest() {
    let dir = TempDir::new("path");
    dir.proto(&AUTH.replace("success_threshold: 0", "success_threshold: 1"));
    let message =
        dir.compile(resilient_build::configure().policy(".nova.auth.v1.AuthServce", Policy::new()));
    assert_eq!(
        message,
        "no service or method matches \".nova.auth.v1.AuthServce\"; did you mean \".nova.auth.v1.AuthService\"?"
    );
    let message = dir.compile(
        resilient_build::configure().policy(".nova.auth.v1.AuthService.Refesh", Policy::new()),
    );
    assert!(
        message.ends_with("did you mean \".nova.auth.v1.AuthService.Refresh\"?"),
        "{message}"
    );
}

#[test]
fn zero_values_name_the_rpc_the_option_and_the_source() {
    let dir = TempDir::new("zero");
    let path = dir.proto(AUTH);
    let message = dir.compile(resilient_build::configure().policy(
        ".nova.auth.v1.AuthService.Refresh",
        Policy::new().failure_threshold(0),
    ));
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 2, "{message}");
    assert!(
        lines[0].starts_with(&format!(
            "invalid policy for .nova.auth.v1.AuthService.ValidateToken: success_threshold = 0 \
             (set by `(resilient.v1.policy)` at {}:7)",
            shown(&path)
        )),
        "{message}"
    );
    assert!(
        lines[1].starts_with(
            "invalid policy for .nova.auth.v1.AuthService.Refresh: failure_threshold = 0 \
             (set by build.rs `.policy(\".nova.auth.v1.AuthService.Refresh\", ..)`)"
        ),
        "{message}"
    );
    assert!(
        lines.iter().all(|l| l.contains("leave it unset")),
        "{message}"
    );

    let message = dir.compile(
        resilient_build::configure().default_policy(Policy::new().timeout(Duration::ZERO)),
    );
    assert!(
        message.contains("timeout = 0 (set by build.rs default policy"),
        "{message}"
    );
}

#[test]
fn shared_breaker_on_an_rpc_is_rejected() {
    let dir = TempDir::new("shared");
    dir.proto(&AUTH.replace("success_threshold: 0", "success_threshold: 1"));
    let message = dir.compile(resilient_build::configure().policy(
        ".nova.auth.v1.AuthService.Refresh",
        Policy::new().shared_breaker(true),
    ));
    assert!(
        message
            .contains("sets shared_breaker, but \".nova.auth.v1.AuthService.Refresh\" is an RPC"),
        "{message}"
    );
    assert!(
        message.contains("service path \".nova.auth.v1.AuthService\""),
        "{message}"
    );
}

/// `_` is a valid proto name with no Rust name (it snake-cases to nothing): an error
/// naming it and where it is declared, not a panic in the generator.
#[test]
fn names_made_only_of_underscores_are_rejected() {
    let dir = TempDir::new("underscores");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\nservice AuthService {\n  rpc __(M) returns (M);\n}\nservice _ {\n  rpc Get(M) returns (M);\n}\nmessage M {}\n",
    );
    let message = dir.compile(resilient_build::configure());
    let file = shown(&path);
    for expected in [
        format!(
            "{file}:4: RPC .nova.auth.v1.AuthService.__ has no Rust name: `__` is only underscores"
        ),
        format!("{file}:6: service .nova.auth.v1._ has no Rust name: `_` is only underscores"),
    ] {
        assert!(message.contains(&expected), "{expected}\n---\n{message}");
    }
}

#[test]
fn clashing_method_names_are_rejected() {
    let dir = TempDir::new("clash");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\nservice AuthService {\n  rpc GetKey(M) returns (M);\n  rpc get_key(M) returns (M);\n}\nmessage M {}\n",
    );
    let message = dir.compile(resilient_build::configure());
    let expected = format!(
        "{}:5: RPCs `GetKey` and `get_key` of .nova.auth.v1.AuthService both become the Rust \
         method `get_key`; rename one of them",
        shown(&path)
    );
    assert_eq!(message, expected);
}

/// Every method the clients define for themselves is refused as an RPC name, one error per
/// RPC, each with its line.
#[test]
fn rpc_names_taken_by_the_clients_are_rejected_with_their_lines() {
    let dir = TempDir::new("reserved");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\nservice AuthService {\n  rpc Connect(M) returns (M);\n  rpc FromConfig(M) returns (M);\n  rpc MapInner(M) returns (M);\n  rpc WithInterceptor(M) returns (M);\n}\nmessage M {}\n",
    );
    let message = dir.compile(resilient_build::configure());
    let file = shown(&path);
    assert_eq!(
        message.lines().collect::<Vec<_>>(),
        [
            format!(
                "{file}:4: RPC .nova.auth.v1.AuthService.Connect becomes the Rust method \
                 `connect`, which both clients already define; rename the RPC"
            ),
            format!(
                "{file}:5: RPC .nova.auth.v1.AuthService.FromConfig becomes the Rust method \
                 `from_config`, which the resilient client already defines; rename the RPC"
            ),
            format!(
                "{file}:6: RPC .nova.auth.v1.AuthService.MapInner becomes the Rust method \
                 `map_inner`, which the resilient client already defines; rename the RPC"
            ),
            format!(
                "{file}:7: RPC .nova.auth.v1.AuthService.WithInterceptor becomes the Rust method \
                 `with_interceptor`, which both clients already define; rename the RPC"
            ),
        ]
    );
}

/// prost maps `BoolValue` and its kind to Rust primitives, which tonic's generated code
/// names as `super::bool`: refused with the RPC's line, not left to rustc.
#[test]
fn primitive_wrapper_types_as_rpc_messages_are_rejected() {
    let dir = TempDir::new("wrappers");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\nimport \"google/protobuf/wrappers.proto\";\nservice AuthService {\n  rpc Flag(google.protobuf.StringValue) returns (google.protobuf.BoolValue);\n  rpc Count(google.protobuf.UInt64Value) returns (google.protobuf.StringValue);\n}\n",
    );
    let message = dir.compile(resilient_build::configure());
    let file = shown(&path);
    assert_eq!(
        message.lines().collect::<Vec<_>>(),
        [
            format!(
                "{file}:5: RPC .nova.auth.v1.AuthService.Flag has .google.protobuf.BoolValue as \
                 its response, which prost turns into Rust's `bool`, a type tonic's generated \
                 code cannot name; use a message of your own with a `bool` field instead"
            ),
            format!(
                "{file}:6: RPC .nova.auth.v1.AuthService.Count has .google.protobuf.UInt64Value \
                 as its request, which prost turns into Rust's `u64`, a type tonic's generated \
                 code cannot name; use a message of your own with a `u64` field instead"
            ),
        ]
    );
}

/// A message `AuthServiceClient` with nested types makes prost write a module
/// `auth_service_client`, which is also tonic's client module.
#[test]
fn a_message_named_like_tonics_client_module_is_rejected() {
    let dir = TempDir::new("module");
    let path = dir.proto(
        "syntax = \"proto3\";\npackage nova.auth.v1;\nservice AuthService {\n  rpc Get(AuthServiceClient) returns (AuthServiceClient);\n}\nmessage AuthServiceClient {\n  enum Kind { KIND_UNSPECIFIED = 0; }\n  Kind kind = 1;\n}\n",
    );
    let message = dir.compile(resilient_build::configure());
    assert_eq!(
        message,
        format!(
            "{}:3: tonic's client module `auth_service_client` of .nova.auth.v1.AuthService \
             clashes with the module prost generates for the nested types of message \
             .nova.auth.v1.AuthServiceClient; rename the message or the service",
            shown(&path)
        )
    );
}

#[test]
fn unknown_proto_file_is_an_error() {
    let dir = TempDir::new("unknown");
    let message = resilient_build::configure()
        .out_dir(dir.0.join("out"))
        .compile_protos(&[dir.0.join("proto/none.proto")], &[dir.0.join("proto")])
        .unwrap_err()
        .to_string();
    assert!(message.contains("none.proto"), "{message}");
}

#[test]
fn unknown_retryable_code_in_a_proto_names_the_place_and_the_nearest_code() {
    let dir = TempDir::new("code");
    let path = dir.proto(&AUTH.replace(
        "success_threshold: 0",
        "max_attempts: 3 retryable_codes: [\"UNAVAILABLE\", \"RESOURCE_EXHAUSTD\"]",
    ));
    let message = dir.compile(resilient_build::configure());
    assert_eq!(
        message,
        format!(
            "invalid policy for .nova.auth.v1.AuthService.ValidateToken: retryable_codes names \
             \"RESOURCE_EXHAUSTD\" (set by `(resilient.v1.policy)` at {}:7), which is not a gRPC \
             status code; did you mean \"RESOURCE_EXHAUSTED\"?",
            shown(&path)
        )
    );
}

#[test]
fn out_of_range_retry_and_bulkhead_values_are_rejected() {
    let dir = TempDir::new("retry");
    let path = dir.proto(&AUTH.replace("success_threshold: 0", "backoff_multiplier: 0.5"));
    let message = dir.compile(
        resilient_build::configure()
            .policy(
                ".nova.auth.v1.AuthService",
                Policy::new().retry(Retry::new().max_attempts(11)),
            )
            .policy(
                ".nova.auth.v1.AuthService.Refresh",
                Policy::new().bulkhead(0),
            ),
    );
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 4, "{message}");
    assert!(
        lines[0].starts_with(
            "invalid policy for .nova.auth.v1.AuthService.ValidateToken: max_attempts = 11 \
             (set by build.rs `.policy(\".nova.auth.v1.AuthService\", ..)`)"
        ),
        "{message}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "invalid policy for .nova.auth.v1.AuthService.ValidateToken: backoff_multiplier = \
             0.5 (set by `(resilient.v1.policy)` at {}:7)",
            shown(&path)
        )),
        "{message}"
    );
    assert!(
        lines[2]
            .starts_with("invalid policy for .nova.auth.v1.AuthService.Refresh: max_attempts = 11"),
        "{message}"
    );
    assert!(
        lines[3].starts_with(
            "invalid policy for .nova.auth.v1.AuthService.Refresh: max_concurrent = 0 (set by \
             build.rs `.policy(\".nova.auth.v1.AuthService.Refresh\", ..)`)"
        ),
        "{message}"
    );

    let message = dir.compile(
        resilient_build::configure()
            .default_policy(Policy::new().retry(Retry::new().attempt_timeout(Duration::ZERO))),
    );
    assert!(
        message.contains("attempt_timeout = 0 (set by build.rs default policy"),
        "{message}"
    );
}

#[test]
fn option_value_errors_say_which_field_and_suggest_a_fix() {
    let dir = TempDir::new("fields");
    let path = dir.proto(&AUTH.replace("success_threshold: 0", "failure_treshold: 3"));
    let message = dir.compile(resilient_build::configure());
    assert_eq!(
        message,
        format!(
            "failed to compile protos: {}:7:5: invalid value of type 'resilient.v1.Policy' for \
             option '(resilient.v1.policy)': field 'failure_treshold' not found for message \
             'resilient.v1.Policy'; did you mean `failure_threshold`?",
            shown(&path)
        )
    );

    dir.proto(&AUTH.replace("success_threshold: 0", "shared_breaker: true"));
    let message = dir.compile(resilient_build::configure());
    assert!(
        message.ends_with(
            "`shared_breaker` is a field of `(resilient.v1.service_policy)` on the service, not \
             of `(resilient.v1.policy)`"
        ),
        "{message}"
    );

    dir.proto(&AUTH.replace("success_threshold: 0", "timeout_ms: -1"));
    let message = dir.compile(resilient_build::configure());
    assert!(
        message.ends_with(
            "expected value to be an unsigned 32-bit integer, but the value -1 is out of range"
        ),
        "{message}"
    );
}

#[test]
fn a_file_cut_short_names_the_file_and_its_last_line() {
    let dir = TempDir::new("cut");
    let path = dir.proto("syntax = \"proto3\";\npackage nova.auth.v1;\nservice AuthService {\n");
    let message = dir.compile(resilient_build::configure());
    assert_eq!(
        message,
        format!(
            "failed to compile protos: {}:3: expected 'rpc', '}}', 'option' or ';', but reached end \
             of file",
            shown(&path)
        )
    );
}

#[test]
fn out_of_range_hedge_values_are_rejected() {
    let dir = TempDir::new("hedge");
    let path = dir.proto(&AUTH.replace(
        "success_threshold: 0",
        "idempotent: true hedge_percentile: 0.2",
    ));
    let message = dir.compile(resilient_build::configure().policy(
        ".nova.auth.v1.AuthService.Refresh",
        Policy::new().hedge(Hedge::new().max_attempts(8).delay(Duration::ZERO)),
    ));
    assert_eq!(
        message.lines().collect::<Vec<_>>(),
        [
            format!(
                "invalid policy for .nova.auth.v1.AuthService.ValidateToken: hedge_percentile = \
                 0.2 (set by `(resilient.v1.policy)` at {}:7); most calls would be hedged. Use \
                 0.5 to 0.999, or 0 (`.fixed_delay()`) to wait the fixed hedge_delay",
                shown(&path)
            ),
            "invalid policy for .nova.auth.v1.AuthService.Refresh: hedge_max_attempts = 8 (set \
             by build.rs `.policy(\".nova.auth.v1.AuthService.Refresh\", ..)`); more attempts \
             would multiply the load on a slow dependency. Use 1 (no hedging) to 5"
                .to_owned(),
            "invalid policy for .nova.auth.v1.AuthService.Refresh: hedge_delay = 0 (set by \
             build.rs `.policy(\".nova.auth.v1.AuthService.Refresh\", ..)`); every attempt \
             would be sent at once. Use a positive duration, or leave it unset for the \
             runtime's default (50ms)"
                .to_owned(),
        ]
    );
}

#[test]
fn hedging_and_retries_on_one_rpc_name_both_sources_and_the_fix() {
    let dir = TempDir::new("hedge-retry");
    let path = dir.proto(&AUTH.replace(
        "success_threshold: 0",
        "idempotent: true hedge_max_attempts: 2 hedge_delay_ms: 30",
    ));
    let message = dir.compile(resilient_build::configure().policy(
        ".nova.auth.v1.AuthService",
        Policy::new().retry(Retry::new().max_attempts(4)),
    ));
    assert_eq!(
        message,
        format!(
            "invalid policy for .nova.auth.v1.AuthService.ValidateToken: hedging \
             (hedge_max_attempts = 2, set by `(resilient.v1.policy)` at {}:7) and retries \
             (max_attempts = 4, set by build.rs `.policy(\".nova.auth.v1.AuthService\", ..)`) \
             exclude each other. To hedge it, turn retries off for this RPC with `.no_retry()` \
             or `max_attempts: 1`; to retry it, turn hedging off with `.no_hedge()` or \
             `hedge_max_attempts: 1`",
            shown(&path)
        )
    );

    // The fix the message names: retries off for that RPC.
    let out = dir.0.join("out");
    resilient_build::configure()
        .policy(
            ".nova.auth.v1.AuthService",
            Policy::new().retry(Retry::new().max_attempts(4)),
        )
        .policy(
            ".nova.auth.v1.AuthService.ValidateToken",
            Policy::new().no_retry(),
        )
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile_protos(&[path], &[dir.0.join("proto")])
        .unwrap();
    let generated = fs::read_to_string(out.join("nova.auth.v1.rs")).unwrap();
    assert!(
        generated.contains("hedge: Some(resilient_runtime::spec::HedgeSpec"),
        "{generated}"
    );
}
