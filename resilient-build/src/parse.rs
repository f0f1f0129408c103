//! Descriptors to model: services, RPCs, comments, standard and `resilient.v1` options.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use heck::{ToSnakeCase, ToUpperCamelCase};
use prost_types::method_options::IdempotencyLevel;
use protox::prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FileDescriptor, MessageDescriptor, Value,
};

use crate::error::invalid_input;
use crate::model::{
    DeclaredIdempotency, EffectivePolicy, MethodModel, PolicyValues, ProtoLocation, ProtoOption,
    RpcKind, ServiceModel,
};
use crate::policy::FallbackMode;

/// Name under which user protos import the embedded options.
pub(crate) const OPTIONS_FILE: &str = "resilient/v1/options.proto";
/// Package of the embedded options; prost must not emit a module for it.
pub(crate) const OPTIONS_PACKAGE: &str = "resilient.v1";

const METHOD_OPTION: &str = "resilient.v1.policy";
const SERVICE_OPTION: &str = "resilient.v1.service_policy";

// Field numbers from descriptor.proto, for locating options in the source info.
const SERVICE_OPTIONS: i32 = 3;
const METHOD_OPTIONS: i32 = 4;
const IDEMPOTENCY_LEVEL: i32 = 34;

/// Methods of tonic's generated client and of ours: an RPC with one of these Rust names
/// would clash with them.
const RESERVED_METHODS: &[(&str, &str)] = &[
    ("new", "both clients already define"),
    ("connect", "both clients already define"),
    ("with_origin", "tonic's client already defines"),
    ("with_interceptor", "both clients already define"),
    ("send_compressed", "tonic's client already defines"),
    ("accept_compressed", "tonic's client already defines"),
    (
        "max_decoding_message_size",
        "tonic's client already defines",
    ),
    (
        "max_encoding_message_size",
        "tonic's client already defines",
    ),
    ("try_new", "the resilient client already defines"),
    ("with_fallback", "the resilient client already defines"),
    ("breaker", "the resilient client already defines"),
    ("runtime", "the resilient client already defines"),
    ("spec", "the resilient client already defines"),
    ("inner", "the resilient client already defines"),
    ("into_inner", "the resilient client already defines"),
    ("with_runtime", "the resilient client already defines"),
    ("from_config", "the resilient client already defines"),
    ("map_inner", "the resilient client already defines"),
];

/// Builds the model of every service in `pool`, except those of the embedded options file.
///
/// `display` turns a proto file name into what error messages and the report show (the
/// path on disk when there is one).
pub(crate) fn parse_services(
    pool: &DescriptorPool,
    types: &TypeResolver,
    display: &dyn Fn(&str) -> String,
) -> Vec<ServiceModel> {
    let method_option = pool.get_extension_by_name(METHOD_OPTION);
    let service_option = pool.get_extension_by_name(SERVICE_OPTION);
    let mut services = Vec::new();
    for file in pool.files().filter(|f| f.name() != OPTIONS_FILE) {
        let shown = display(file.name());
        let locate = |path: &[i32], fallback: &[i32]| ProtoLocation {
            file: shown.clone(),
            line: line_of(&file, path)
                .or_else(|| line_of(&file, fallback))
                .unwrap_or(1),
        };
        for service in file.services() {
            let package = service.package_name().to_owned();
            let service_path = format!(".{}", service.full_name());
            let service_proto = service.service_descriptor_proto();
            let option = service_option.as_ref().and_then(|ext| {
                read_option(&service.options(), ext).map(|values| ProtoOption {
                    values,
                    at: locate(
                        &extend(service.path(), &[SERVICE_OPTIONS, ext.number() as i32]),
                        service.path(),
                    ),
                })
            });
            let methods = service
                .methods()
                .map(|method| {
                    let proto = method.method_descriptor_proto();
                    let options = proto.options.clone().unwrap_or_default();
                    let idempotency_level = match options.idempotency_level() {
                        IdempotencyLevel::IdempotencyUnknown => None,
                        level => Some(DeclaredIdempotency {
                            level: if level == IdempotencyLevel::NoSideEffects {
                                "NO_SIDE_EFFECTS"
                            } else {
                                "IDEMPOTENT"
                            },
                            at: locate(
                                &extend(method.path(), &[METHOD_OPTIONS, IDEMPOTENCY_LEVEL]),
                                method.path(),
                            ),
                        }),
                    };
                    let option = method_option.as_ref().and_then(|ext| {
                        read_option(&method.options(), ext).map(|values| ProtoOption {
                            values,
                            at: locate(
                                &extend(method.path(), &[METHOD_OPTIONS, ext.number() as i32]),
                                method.path(),
                            ),
                        })
                    });
                    MethodModel {
                        path: format!("{service_path}.{}", method.name()),
                        proto_name: method.name().to_owned(),
                        line: line_of(&file, method.path()).unwrap_or(1),
                        rust_name: to_snake(method.name()),
                        kind: RpcKind::from_streaming(
                            method.is_client_streaming(),
                            method.is_server_streaming(),
                        ),
                        input_type: types
                            .tonic_type(&format!(".{}", method.input().full_name()), &package),
                        output_type: types
                            .tonic_type(&format!(".{}", method.output().full_name()), &package),
                        comments: comments_at(&file, method.path()),
                        deprecated: options.deprecated(),
                        idempotency_level,
                        option,
                        policy: EffectivePolicy::default(),
                    }
                })
                .collect();
            services.push(ServiceModel {
                path: service_path,
                package,
                proto_name: service.name().to_owned(),
                rust_name: to_upper_camel(service.name()),
                file: shown.clone(),
                line: line_of(&file, service.path()).unwrap_or(1),
                comments: comments_at(&file, service.path()),
                deprecated: service_proto
                    .options
                    .as_ref()
                    .is_some_and(|o| o.deprecated()),
                option,
                methods,
                shared_breaker: None,
            });
        }
    }
    services
}

/// prost-build's Rust types for the wrapper types that tonic cannot name as an RPC's
/// input or output (it writes `super::bool`).
const PRIMITIVE_WRAPPERS: &[(&str, &str)] = &[
    ("google.protobuf.BoolValue", "bool"),
    ("google.protobuf.DoubleValue", "f64"),
    ("google.protobuf.FloatValue", "f32"),
    ("google.protobuf.Int32Value", "i32"),
    ("google.protobuf.Int64Value", "i64"),
    ("google.protobuf.UInt32Value", "u32"),
    ("google.protobuf.UInt64Value", "u64"),
];

/// Rejects protos whose generated Rust names would clash, or that tonic's code could not
/// compile, before rustc says it less clearly. Each problem starts with the proto file
/// and line of the service or RPC.
/// `wrappers_are_primitives`: prost maps the wrapper types to Rust primitives (unless it
/// compiles the well-known types itself).
pub(crate) fn check_names(
    pool: &DescriptorPool,
    services: &[ServiceModel],
    build_server: bool,
    wrappers_are_primitives: bool,
) -> io::Result<()> {
    let mut problems = Vec::new();
    let mut service_names: HashMap<(&str, &str), &ServiceModel> = HashMap::new();
    for service in services {
        let here = format!("{}:{}", service.file, service.line);
        if let Some(other) = service_names.insert((&service.package, &service.rust_name), service) {
            problems.push(format!(
                "{here}: services {} ({}:{}) and {} both become the Rust type `{}`; rename one of them",
                other.path, other.file, other.line, service.path, service.rust_name
            ));
        }
        let mut modules = vec![
            (module_name(service), "the resilient module"),
            (client_module_name(service), "tonic's client module"),
        ];
        if build_server {
            modules.push((
                format!("{}_server", naive_snake_case(&service.rust_name)),
                "tonic's server module",
            ));
        }
        for (module, what) in modules {
            if let Some(message) = nested_types_module(pool, &service.package, &module) {
                problems.push(format!(
                    "{here}: {what} `{module}` of {} clashes with the module prost generates \
                     for the nested types of message .{}; rename the message or the service",
                    service.path,
                    message.full_name()
                ));
            }
        }

        if service.rust_name.is_empty() {
            problems.push(format!(
                "{here}: service {} has no Rust name: `{}` is only underscores; rename the service",
                service.path, service.proto_name
            ));
        }
        let descriptor = pool.get_service_by_name(service.path.trim_start_matches('.'));
        let mut method_names: HashMap<&str, &str> = HashMap::new();
        for (index, method) in service.methods.iter().enumerate() {
            let here = format!("{}:{}", service.file, method.line);
            if method.rust_name.is_empty() {
                problems.push(format!(
                    "{here}: RPC {} has no Rust name: `{}` is only underscores; rename the RPC",
                    method.path, method.proto_name
                ));
            }
            if let Some(other) = method_names.insert(&method.rust_name, &method.proto_name) {
                problems.push(format!(
                    "{here}: RPCs `{other}` and `{}` of {} both become the Rust method `{}`; rename one of them",
                    method.proto_name, service.path, method.rust_name
                ));
            }
            if let Some((_, owner)) = RESERVED_METHODS
                .iter()
                .find(|(name, _)| *name == method.rust_name)
            {
                problems.push(format!(
                    "{here}: RPC {} becomes the Rust method `{}`, which {owner}; rename the RPC",
                    method.path, method.rust_name
                ));
            }
            let Some(proto) = descriptor.as_ref().and_then(|d| d.methods().nth(index)) else {
                continue;
            };
            for (role, message) in [("request", proto.input()), ("response", proto.output())] {
                if wrappers_are_primitives
                    && let Some((wrapper, rust)) = PRIMITIVE_WRAPPERS
                        .iter()
                        .find(|(name, _)| *name == message.full_name())
                {
                    problems.push(format!(
                        "{here}: RPC {} has .{wrapper} as its {role}, which prost turns into \
                         Rust's `{rust}`, a type tonic's generated code cannot name; use a \
                         message of your own with a `{rust}` field instead",
                        method.path
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid_input(problems.join("\n")))
    }
}

/// The top-level message of `package` for whose nested types prost makes module `module`.
fn nested_types_module(
    pool: &DescriptorPool,
    package: &str,
    module: &str,
) -> Option<MessageDescriptor> {
    pool.all_messages().find(|message| {
        message.package_name() == package
            && message.parent_message().is_none()
            && to_snake(message.name()) == module
            && (message.child_messages().len() > 0
                || message.child_enums().len() > 0
                || message.oneofs().any(|oneof| !oneof.is_synthetic()))
    })
}

/// Reads one `resilient.v1` option message; `None` when the option is absent.
fn read_option(options: &DynamicMessage, extension: &ExtensionDescriptor) -> Option<PolicyValues> {
    if !options.has_extension(extension) {
        return None;
    }
    let value = options.get_extension(extension);
    let message = value.as_message()?;
    let uint = |name: &str| match field(message, name) {
        Some(Value::U32(n)) => Some(n),
        _ => None,
    };
    let boolean = |name: &str| match field(message, name) {
        Some(Value::Bool(b)) => Some(b),
        _ => None,
    };
    let millis = |name: &str| uint(name).map(|ms| Duration::from_millis(u64::from(ms)));
    let double = |name: &str| match field(message, name) {
        Some(Value::F64(x)) => Some(x),
        _ => None,
    };
    let strings = |name: &str| match field(message, name) {
        Some(Value::List(items)) => Some(
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    Some(PolicyValues {
        failure_threshold: uint("failure_threshold"),
        success_threshold: uint("success_threshold"),
        open_for: millis("open_for_ms"),
        timeout: millis("timeout_ms"),
        half_open_max_calls: uint("half_open_max_calls"),
        fallback: boolean("fallback").map(|on| {
            if on {
                FallbackMode::DEFAULT
            } else {
                FallbackMode::NONE
            }
        }),
        idempotent: boolean("idempotent"),
        shared_breaker: boolean("shared_breaker"),
        max_attempts: uint("max_attempts"),
        // A proto option turns retries on with `max_attempts` alone.
        retry_requested: false,
        initial_backoff: millis("initial_backoff_ms"),
        max_backoff: millis("max_backoff_ms"),
        backoff_multiplier: double("backoff_multiplier"),
        retryable_codes: strings("retryable_codes"),
        attempt_timeout: millis("attempt_timeout_ms"),
        max_concurrent: uint("max_concurrent"),
        max_wait: millis("max_wait_ms"),
        shared_bulkhead: boolean("shared_bulkhead"),
        hedge_max_attempts: uint("hedge_max_attempts"),
        // Like the runtime configuration, any hedging field turns hedging on.
        hedge_requested: false,
        hedge_delay: millis("hedge_delay_ms"),
        hedge_percentile: double("hedge_percentile"),
        propagate_deadline: boolean("propagate_deadline"),
    })
}

/// A field that is present in the message (explicit zeros included).
fn field(message: &DynamicMessage, name: &str) -> Option<Value> {
    if message.has_field_by_name(name) {
        message.get_field_by_name(name).map(|v| v.into_owned())
    } else {
        None
    }
}

fn extend(path: &[i32], tail: &[i32]) -> Vec<i32> {
    path.iter().chain(tail).copied().collect()
}

fn line_of(file: &FileDescriptor, path: &[i32]) -> Option<u32> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let line = *location.span.first()?;
    u32::try_from(line).ok().map(|l| l + 1)
}

/// Leading comments, then trailing ones after a blank line, split into lines.
fn comments_at(file: &FileDescriptor, path: &[i32]) -> Vec<String> {
    let Some(info) = file.file_descriptor_proto().source_code_info.as_ref() else {
        return Vec::new();
    };
    let Some(location) = info.location.iter().find(|l| l.path == path) else {
        return Vec::new();
    };
    let mut lines: Vec<String> = location
        .leading_comments
        .iter()
        .flat_map(|c| c.lines())
        .map(str::to_owned)
        .collect();
    if let Some(trailing) = &location.trailing_comments {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        lines.extend(trailing.lines().map(str::to_owned));
    }
    lines
}

/// Name of the generated module for a service: `auth_service_resilient`.
pub(crate) fn module_name(service: &ServiceModel) -> String {
    format!("{}_resilient", naive_snake_case(&service.rust_name))
}

/// Name of tonic's client module for a service: `auth_service_client`.
pub(crate) fn client_module_name(service: &ServiceModel) -> String {
    format!("{}_client", naive_snake_case(&service.rust_name))
}

/// tonic-build's module naming: lower-case, `_` before every upper-case letter but the first.
pub(crate) fn naive_snake_case(name: &str) -> String {
    let mut s = String::new();
    let mut it = name.chars().peekable();
    while let Some(x) = it.next() {
        s.push(x.to_ascii_lowercase());
        if let Some(y) = it.peek()
            && y.is_uppercase()
        {
            s.push('_');
        }
    }
    s
}

/// prost-build's identifier escaping: raw identifiers for keywords, `_` for the few that
/// cannot be raw.
fn sanitize_identifier(ident: String) -> String {
    match ident.as_str() {
        "as" | "break" | "const" | "continue" | "else" | "enum" | "false" | "fn" | "for" | "if"
        | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move" | "mut" | "pub" | "ref"
        | "return" | "static" | "struct" | "trait" | "true" | "type" | "unsafe" | "use"
        | "where" | "while" | "dyn" | "abstract" | "become" | "box" | "do" | "final" | "macro"
        | "override" | "priv" | "typeof" | "unsized" | "virtual" | "yield" | "async" | "await"
        | "try" | "gen" => format!("r#{ident}"),
        "_" | "super" | "self" | "Self" | "extern" | "crate" => format!("{ident}_"),
        s if s.starts_with(|c: char| c.is_numeric()) => format!("_{ident}"),
        _ => ident,
    }
}

/// prost-build's `to_snake`, which tonic uses for method names.
pub(crate) fn to_snake(name: &str) -> String {
    sanitize_identifier(name.to_snake_case())
}

/// prost-build's `to_upper_camel`, used for type names.
pub(crate) fn to_upper_camel(name: &str) -> String {
    sanitize_identifier(name.to_upper_camel_case())
}

/// tonic-prost-build's `request_response_name` on a type prost-build resolved: `()` and
/// absolute paths stay, anything else is relative to the package module.
pub(crate) fn tonic_path(prost: String) -> String {
    if prost.ends_with("()") || prost.starts_with("::") || prost.starts_with("crate::") {
        prost
    } else {
        format!("super::{prost}")
    }
}

/// Resolves proto message names to the Rust paths tonic's client uses for them.
///
/// This follows prost-build (`CodeGenerator::resolve_ident` with its `ExternPaths`,
/// including the well-known types it maps to `prost_types` and primitives) and then
/// tonic-prost-build (`request_response_name` with `proto_path = "super"`), so the
/// resilient client names exactly the types the tonic client it wraps names.
#[derive(Debug, Clone)]
pub(crate) struct TypeResolver {
    extern_paths: HashMap<String, String>,
}

impl TypeResolver {
    /// With the user's `extern_path` pairs and prost's defaults for `google.protobuf`.
    #[cfg(test)]
    pub(crate) fn new(user_extern_paths: &[(String, String)]) -> io::Result<Self> {
        Self::with_well_known_types(user_extern_paths, false)
    }

    /// Like [`new`](Self::new); with `compiled` (prost's `compile_well_known_types`),
    /// without the defaults: the `google.protobuf` messages are generated like any
    /// other package's.
    pub(crate) fn with_well_known_types(
        user_extern_paths: &[(String, String)],
        compiled: bool,
    ) -> io::Result<Self> {
        let mut extern_paths = HashMap::new();
        let defaults = [
            (".google.protobuf", "::prost_types"),
            (".google.protobuf.BoolValue", "bool"),
            (
                ".google.protobuf.BytesValue",
                "::prost::alloc::vec::Vec<u8>",
            ),
            (".google.protobuf.DoubleValue", "f64"),
            (".google.protobuf.Empty", "()"),
            (".google.protobuf.FloatValue", "f32"),
            (".google.protobuf.Int32Value", "i32"),
            (".google.protobuf.Int64Value", "i64"),
            (
                ".google.protobuf.StringValue",
                "::prost::alloc::string::String",
            ),
            (".google.protobuf.UInt32Value", "u32"),
            (".google.protobuf.UInt64Value", "u64"),
        ];
        let pairs = user_extern_paths
            .iter()
            .map(|(p, r)| (p.as_str(), r.as_str()))
            .chain(defaults.into_iter().filter(|_| !compiled));
        for (proto, rust) in pairs {
            if !proto.starts_with('.') || proto.split('.').skip(1).any(str::is_empty) {
                return Err(invalid_input(format!(
                    "extern_path \"{proto}\" must be a fully qualified proto path starting with \".\""
                )));
            }
            if extern_paths
                .insert(proto.to_owned(), rust.to_owned())
                .is_some()
            {
                return Err(invalid_input(format!(
                    "extern_path \"{proto}\" is given twice"
                )));
            }
        }
        Ok(TypeResolver { extern_paths })
    }

    /// The Rust type of message `proto_type` (fully qualified, leading dot) as the tonic
    /// client in package `package` writes it.
    pub(crate) fn tonic_type(&self, proto_type: &str, package: &str) -> String {
        tonic_path(self.prost_type(proto_type, package))
    }

    /// prost-build's `resolve_ident` seen from the package module (services are not nested
    /// in messages, so the type path inside the package is empty).
    fn prost_type(&self, proto_type: &str, package: &str) -> String {
        if let Some(rust) = self.resolve_extern(proto_type) {
            return rust;
        }
        let mut local = package.split('.').filter(|s| !s.is_empty()).peekable();
        let mut ident: Vec<&str> = proto_type[1..].split('.').collect();
        let last = ident.pop().unwrap_or_default();
        let mut ident = ident.into_iter().peekable();
        while local.peek().is_some() && local.peek() == ident.peek() {
            local.next();
            ident.next();
        }
        local
            .map(|_| "super".to_owned())
            .chain(ident.map(to_snake))
            .chain(std::iter::once(to_upper_camel(last)))
            .collect::<Vec<_>>()
            .join("::")
    }

    fn resolve_extern(&self, proto_type: &str) -> Option<String> {
        if let Some(rust) = self.extern_paths.get(proto_type) {
            return Some(rust.clone());
        }
        for (idx, _) in proto_type.rmatch_indices('.') {
            if let Some(rust) = self.extern_paths.get(&proto_type[..idx]) {
                let mut segments = proto_type[idx + 1..].split('.');
                let last = segments.next_back().map(to_upper_camel);
                let parts: Vec<String> = rust
                    .split("::")
                    .chain(segments)
                    .enumerate()
                    .map(|(i, segment)| {
                        if i == 0 && segment == "crate" {
                            segment.to_owned()
                        } else {
                            to_snake(segment)
                        }
                    })
                    .chain(last)
                    .collect();
                return Some(parts.join("::"));
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protox::file::{File, FileResolver};

    /// Serves proto sources from memory, plus the embedded options and google files.
    pub(crate) struct Memory(pub(crate) Vec<(&'static str, String)>);

    impl FileResolver for Memory {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            if name == OPTIONS_FILE {
                return File::from_source(name, crate::OPTIONS_PROTO);
            }
            match self.0.iter().find(|(n, _)| *n == name) {
                Some((_, source)) => File::from_source(name, source),
                None => protox::file::GoogleFileResolver::new().open_file(name),
            }
        }
    }

    pub(crate) fn compile(files: Vec<(&'static str, String)>) -> DescriptorPool {
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        let mut compiler = protox::Compiler::with_file_resolver(Memory(files.clone()));
        compiler.include_imports(true).include_source_info(true);
        compiler.open_files(names).unwrap();
        compiler.descriptor_pool()
    }

    fn parse(files: Vec<(&'static str, String)>) -> Vec<ServiceModel> {
        let pool = compile(files);
        parse_services(&pool, &TypeResolver::new(&[]).unwrap(), &|name| {
            name.to_owned()
        })
    }

    const AUTH: &str = r#"syntax = "proto3";
package nova.auth.v1;
import "resilient/v1/options.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/timestamp.proto";
import "nova/common/v1/common.proto";

// Checks tokens.
service AuthService {
  option (resilient.v1.service_policy) = { failure_threshold: 3 shared_breaker: true };

  // Validates a token.
  // Second line.
  rpc ValidateToken(ValidateTokenRequest) returns (Claims) {
    option (resilient.v1.policy) = { timeout_ms: 2000 fallback: false open_for_ms: 0 };
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  rpc Type(stream Claims) returns (google.protobuf.Empty) { option deprecated = true; } // trailing
  rpc Watch(google.protobuf.Timestamp) returns (stream nova.common.v1.Ping.Pong);
  rpc Chat(stream Outer.Inner) returns (stream Claims) { option idempotency_level = IDEMPOTENT; }
}
message ValidateTokenRequest { string token = 1; }
message Claims { string sub = 1; }
message Outer { message Inner {} }
"#;

    const COMMON: &str = r#"syntax = "proto3";
package nova.common.v1;
message Ping { message Pong {} }
"#;

    fn auth() -> Vec<ServiceModel> {
        parse(vec![
            ("nova/common/v1/common.proto", COMMON.to_owned()),
            ("nova/auth/v1/auth.proto", AUTH.to_owned()),
        ])
    }

    #[test]
    fn services_methods_kinds_and_types() {
        let services = auth();
        assert_eq!(services.len(), 1);
        let service = &services[0];
        assert_eq!(service.path, ".nova.auth.v1.AuthService");
        assert_eq!(service.package, "nova.auth.v1");
        assert_eq!(service.rust_name, "AuthService");
        assert_eq!(service.file, "nova/auth/v1/auth.proto");
        assert_eq!(service.comments, vec![" Checks tokens."]);
        let shape: Vec<(&str, &str, RpcKind, &str, &str)> = service
            .methods
            .iter()
            .map(|m| {
                (
                    m.path.as_str(),
                    m.rust_name.as_str(),
                    m.kind,
                    m.input_type.as_str(),
                    m.output_type.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    ".nova.auth.v1.AuthService.ValidateToken",
                    "validate_token",
                    RpcKind::Unary,
                    "super::ValidateTokenRequest",
                    "super::Claims"
                ),
                (
                    ".nova.auth.v1.AuthService.Type",
                    "r#type",
                    RpcKind::ClientStreaming,
                    "super::Claims",
                    "()"
                ),
                (
                    ".nova.auth.v1.AuthService.Watch",
                    "watch",
                    RpcKind::ServerStreaming,
                    "::prost_types::Timestamp",
                    "super::super::super::common::v1::ping::Pong"
                ),
                (
                    ".nova.auth.v1.AuthService.Chat",
                    "chat",
                    RpcKind::BidiStreaming,
                    "super::outer::Inner",
                    "super::Claims"
                ),
            ]
        );
    }

    #[test]
    fn comments_deprecation_and_idempotency() {
        let services = auth();
        let methods = &services[0].methods;
        assert_eq!(
            methods[0].comments,
            vec![" Validates a token.", " Second line."]
        );
        assert_eq!(methods[1].comments, vec![" trailing"]);
        assert!(methods[1].deprecated);
        assert!(!methods[0].deprecated);
        let level = methods[0].idempotency_level.as_ref().unwrap();
        assert_eq!(level.level, "NO_SIDE_EFFECTS");
        assert_eq!(level.at.line, 16);
        assert_eq!(
            methods[3].idempotency_level.as_ref().unwrap().level,
            "IDEMPOTENT"
        );
        assert_eq!(methods[2].idempotency_level, None);
    }

    #[test]
    fn custom_options_keep_presence_and_location() {
        let services = auth();
        let service_option = services[0].option.as_ref().unwrap();
        assert_eq!(
            service_option.at,
            ProtoLocation {
                file: "nova/auth/v1/auth.proto".into(),
                line: 10
            }
        );
        assert_eq!(
            service_option.values,
            PolicyValues {
                failure_threshold: Some(3),
                shared_breaker: Some(true),
                ..PolicyValues::default()
            }
        );
        let method_option = services[0].methods[0].option.as_ref().unwrap();
        assert_eq!(method_option.at.line, 15);
        assert_eq!(
            method_option.values,
            PolicyValues {
                timeout: Some(Duration::from_millis(2000)),
                fallback: Some(FallbackMode::NONE),
                // an explicit zero is kept, so validation can report it
                open_for: Some(Duration::ZERO),
                ..PolicyValues::default()
            }
        );
        assert_eq!(services[0].methods[1].option, None);
    }

    #[test]
    fn retry_and_bulkhead_options_are_read() {
        let source = r#"syntax = "proto3"; package p;
import "resilient/v1/options.proto";
service S {
  option (resilient.v1.service_policy) = {
    max_attempts: 4 initial_backoff_ms: 20 max_backoff_ms: 400 backoff_multiplier: 1.5
    retryable_codes: ["UNAVAILABLE", "aborted"] attempt_timeout_ms: 250
    max_concurrent: 8 max_wait_ms: 0 shared_bulkhead: true
  };
  rpc A(M) returns (M) {
    option (resilient.v1.policy) = { max_attempts: 1 retryable_codes: "INTERNAL" shared_bulkhead: false };
  }
}
message M {}"#;
        let services = parse(vec![("p.proto", source.to_owned())]);
        assert_eq!(
            services[0].option.as_ref().unwrap().values,
            PolicyValues {
                max_attempts: Some(4),
                initial_backoff: Some(Duration::from_millis(20)),
                max_backoff: Some(Duration::from_millis(400)),
                backoff_multiplier: Some(1.5),
                retryable_codes: Some(vec!["UNAVAILABLE".to_owned(), "aborted".to_owned()]),
                attempt_timeout: Some(Duration::from_millis(250)),
                max_concurrent: Some(8),
                // an explicit zero is kept: no wait
                max_wait: Some(Duration::ZERO),
                shared_bulkhead: Some(true),
                ..PolicyValues::default()
            }
        );
        assert_eq!(
            services[0].methods[0].option.as_ref().unwrap().values,
            PolicyValues {
                max_attempts: Some(1),
                retryable_codes: Some(vec!["INTERNAL".to_owned()]),
                shared_bulkhead: Some(false),
                ..PolicyValues::default()
            }
        );
    }

    #[test]
    fn hedge_options_are_read() {
        let source = r#"syntax = "proto3"; package p;
import "resilient/v1/options.proto";
service S {
  option (resilient.v1.service_policy) = { hedge_max_attempts: 3 hedge_delay_ms: 40 };
  rpc A(M) returns (M) {
    option (resilient.v1.policy) = { hedge_percentile: 0 hedge_max_attempts: 1 };
  }
  rpc B(M) returns (M) {
    option (resilient.v1.policy) = { hedge_percentile: 0.99 };
  }
}
message M {}"#;
        let services = parse(vec![("p.proto", source.to_owned())]);
        assert_eq!(
            services[0].option.as_ref().unwrap().values,
            PolicyValues {
                hedge_max_attempts: Some(3),
                hedge_delay: Some(Duration::from_millis(40)),
                ..PolicyValues::default()
            }
        );
        assert_eq!(
            services[0].methods[0].option.as_ref().unwrap().values,
            PolicyValues {
                hedge_max_attempts: Some(1),
                // an explicit zero is kept: the fixed delay
                hedge_percentile: Some(0.0),
                ..PolicyValues::default()
            }
        );
        assert_eq!(
            services[0].methods[1].option.as_ref().unwrap().values,
            PolicyValues {
                hedge_percentile: Some(0.99),
                ..PolicyValues::default()
            }
        );
    }

    #[test]
    fn propagate_deadline_is_read_from_both_options() {
        let source = r#"syntax = "proto3"; package p;
import "resilient/v1/options.proto";
service S {
  option (resilient.v1.service_policy) = { propagate_deadline: false };
  rpc A(M) returns (M) {
    option (resilient.v1.policy) = { propagate_deadline: true };
  }
}
message M {}"#;
        let services = parse(vec![("p.proto", source.to_owned())]);
        assert_eq!(
            services[0].option.as_ref().unwrap().values,
            PolicyValues {
                propagate_deadline: Some(false),
                ..PolicyValues::default()
            }
        );
        assert_eq!(
            services[0].methods[0].option.as_ref().unwrap().values,
            PolicyValues {
                propagate_deadline: Some(true),
                ..PolicyValues::default()
            }
        );
    }

    #[test]
    fn protos_without_the_options_import_parse() {
        let services = parse(vec![(
            "plain.proto",
            "syntax = \"proto3\"; service Plain { rpc Ping(P) returns (P); } message P {}"
                .to_owned(),
        )]);
        assert_eq!(services[0].path, ".Plain");
        assert_eq!(services[0].methods[0].input_type, "super::P");
        assert_eq!(services[0].option, None);
    }

    #[test]
    fn name_clashes_are_errors() {
        let source = r#"syntax = "proto3"; package p;
service S { rpc GetFoo(M) returns (M); rpc get_foo(M) returns (M); rpc Connect(M) returns (M); }
service Svc { rpc A(M) returns (M); }
message SvcResilient { oneof x { int32 a = 1; } }
message SvcServer { enum E { E_UNSPECIFIED = 0; } }
message M {}"#;
        let pool = compile(vec![("p.proto", source.to_owned())]);
        let services = parse_services(&pool, &TypeResolver::new(&[]).unwrap(), &|n| n.to_owned());
        let message = check_names(&pool, &services, true, true)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "p.proto:2: RPCs `GetFoo` and `get_foo` of .p.S both become the Rust method `get_foo`"
            ),
            "{message}"
        );
        assert!(
            message.contains("RPC .p.S.Connect becomes the Rust method `connect`"),
            "{message}"
        );
        assert!(
            message.contains("p.proto:3: the resilient module `svc_resilient` of .p.Svc clashes"),
            "{message}"
        );
        assert!(
            message.contains("tonic's server module `svc_server` of .p.Svc clashes"),
            "{message}"
        );
        // Without servers, `svc_server` is prost's alone.
        let without_servers = check_names(&pool, &services[1..], false, true)
            .unwrap_err()
            .to_string();
        assert!(!without_servers.contains("svc_server"), "{without_servers}");
        assert!(check_names(&pool, &services[1..1], true, true).is_ok());
    }

    #[test]
    fn identifier_rules_follow_prost_and_tonic() {
        for (proto, snake) in [
            ("ValidateToken", "validate_token"),
            ("Type", "r#type"),
            ("Self", "self_"),
            ("Match", "r#match"),
            ("HTTPGet", "http_get"),
        ] {
            assert_eq!(to_snake(proto), snake);
        }
        assert_eq!(naive_snake_case("AuthService"), "auth_service");
        assert_eq!(naive_snake_case("HTTPService"), "h_t_t_p_service");
        assert_eq!(to_upper_camel("auth_service"), "AuthService");
    }

    #[test]
    fn extern_paths_resolve_like_prost() {
        let types = TypeResolver::new(&[
            (".nova.common".to_owned(), "::common_types".to_owned()),
            (".other.Thing".to_owned(), "crate::things::Thing".to_owned()),
        ])
        .unwrap();
        assert_eq!(
            types.tonic_type(".nova.common.v1.Ping.Pong", "nova.auth.v1"),
            "::common_types::v1::ping::Pong"
        );
        assert_eq!(
            types.tonic_type(".other.Thing", "nova.auth.v1"),
            "crate::things::Thing"
        );
        assert_eq!(types.tonic_type(".google.protobuf.Empty", "x"), "()");
        assert_eq!(
            types.tonic_type(".google.protobuf.Timestamp", "x"),
            "::prost_types::Timestamp"
        );
        assert_eq!(
            types.tonic_type(".nova.auth.v1.Claims", "nova.auth.v1"),
            "super::Claims"
        );
        assert_eq!(types.tonic_type(".Top", ""), "super::Top");
        assert!(TypeResolver::new(&[("nova".to_owned(), "::x".to_owned())]).is_err());
        assert!(TypeResolver::new(&[(".google.protobuf".to_owned(), "::x".to_owned())]).is_err());
    }
}
