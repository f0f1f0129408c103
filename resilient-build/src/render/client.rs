//! The `<Service>ResilientClient` and the static `ServiceSpec` table it runs on.

use std::io;
use std::time::Duration;

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use super::{RenderOptions, docs, method_ident, rust_type};
use crate::model::{MethodModel, RpcKind, ServiceModel, Sourced};
use crate::parse::client_module_name;
use crate::policy::{FallbackMode, HedgeValues, RetryValues};

/// The `SERVICE` table: names, kinds and build-time policies the runtime reads.
pub(crate) fn spec_table(service: &ServiceModel) -> io::Result<TokenStream> {
    let path = &service.path;
    let name = &service.proto_name;
    let shared = service.shared_breaker.as_ref().is_some_and(|s| s.value);
    let methods = service
        .methods
        .iter()
        .map(method_spec)
        .collect::<io::Result<Vec<_>>>()?;
    // `..PolicySpec::EMPTY` lets the runtime add policy fields without breaking code
    // generated before them; today it names no missing field, hence the allow.
    Ok(quote! {
        #[allow(clippy::needless_update)]
        static SERVICE: resilient_runtime::spec::ServiceSpec = resilient_runtime::spec::ServiceSpec {
            path: #path,
            name: #name,
            shared_breaker: #shared,
            methods: &[#(#methods),*],
        };
    })
}

fn method_spec(method: &MethodModel) -> io::Result<TokenStream> {
    let name = &method.proto_name;
    let kind = format_ident!("{}", method.kind.spec_variant());
    let idempotent = method.policy.is_idempotent();
    let policy = &method.policy;
    let count = |value: &Option<Sourced<u32>>| match value {
        Some(v) => {
            let n = Literal::u32_unsuffixed(v.value);
            quote!(Some(#n))
        }
        None => quote!(None),
    };
    let duration = |option: &str, value: &Option<Sourced<Duration>>| match value {
        Some(v) => duration_tokens(&method.path, option, v.value).map(|d| quote!(Some(#d))),
        None => Ok(quote!(None)),
    };
    let failure_threshold = count(&policy.failure_threshold);
    let success_threshold = count(&policy.success_threshold);
    let half_open_max_calls = count(&policy.half_open_max_calls);
    let open_for = duration("open_for", &policy.open_for)?;
    let timeout = duration("timeout", &policy.timeout)?;
    let fallback = match &policy.fallback {
        Some(Sourced {
            value:
                FallbackMode {
                    open,
                    timeout,
                    failure,
                },
            ..
        }) => quote! {
            Some(resilient_runtime::spec::FallbackMode { open: #open, timeout: #timeout, failure: #failure })
        },
        None => quote!(None),
    };
    let propagate_deadline = match &policy.propagate_deadline {
        Some(v) => {
            let on = v.value;
            quote!(Some(#on))
        }
        None => quote!(None),
    };
    let retry = retry_spec(method)?;
    let bulkhead = bulkhead_spec(method)?;
    let hedge = hedge_spec(method)?;
    Ok(quote! {
        resilient_runtime::spec::MethodSpec {
            name: #name,
            kind: resilient_runtime::spec::RpcKind::#kind,
            idempotent: #idempotent,
            policy: resilient_runtime::spec::PolicySpec {
                failure_threshold: #failure_threshold,
                success_threshold: #success_threshold,
                open_for: #open_for,
                timeout: #timeout,
                half_open_max_calls: #half_open_max_calls,
                fallback: #fallback,
                retry: #retry,
                bulkhead: #bulkhead,
                hedge: #hedge,
                propagate_deadline: #propagate_deadline,
                ..resilient_runtime::spec::PolicySpec::EMPTY
            },
        }
    })
}

/// `Some(RetrySpec { .. })` with the runtime's defaults for unset fields, when a layer sets
/// a retry field and the RPC can be retried; `None` otherwise.
///
/// An RPC that is not idempotent, or whose request streams, is never retried: its spec
/// carries no retry policy at all, rather than one the runtime would ignore (and warn
/// about each time a client is built); the build has already warned, and the report
/// shows what was asked.
fn retry_spec(method: &MethodModel) -> io::Result<TokenStream> {
    let Some(retry) = RetryValues::of(&method.policy).filter(|_| method.no_retry().is_none())
    else {
        return Ok(quote!(None));
    };
    let path = &method.path;
    let max_attempts = Literal::u32_unsuffixed(retry.max_attempts);
    let initial_backoff = duration_tokens(path, "initial_backoff", retry.initial_backoff)?;
    let max_backoff = duration_tokens(path, "max_backoff", retry.max_backoff)?;
    if !retry.backoff_multiplier.is_finite() {
        return Err(crate::error::invalid_input(format!(
            "invalid policy for {path}: backoff_multiplier = {} is not a finite number",
            retry.backoff_multiplier
        )));
    }
    // Rust prints the shortest decimal that reads back as the same f64: exact.
    let multiplier = Literal::f64_unsuffixed(retry.backoff_multiplier);
    let codes = retry.retryable.iter().map(|code| {
        let variant = format_ident!("{}", code.variant);
        quote!(tonic::Code::#variant as i32)
    });
    let attempt_timeout = match retry.attempt_timeout {
        Some(t) => {
            let t = duration_tokens(path, "attempt_timeout", t)?;
            quote!(Some(#t))
        }
        None => quote!(None),
    };
    Ok(quote! {
        Some(resilient_runtime::spec::RetrySpec {
            max_attempts: #max_attempts,
            initial_backoff: #initial_backoff,
            max_backoff: #max_backoff,
            multiplier: #multiplier,
            retryable: resilient_runtime::spec::CodeSet::of(&[#(#codes),*]),
            attempt_timeout: #attempt_timeout,
        })
    })
}

/// `Some(HedgeSpec { .. })` with the runtime's defaults for unset fields, when a layer
/// sets a hedging field and the RPC can be hedged; `None` otherwise (an RPC that is not
/// idempotent or not unary is never hedged; the build has already warned).
fn hedge_spec(method: &MethodModel) -> io::Result<TokenStream> {
    let Some(hedge) = HedgeValues::of(&method.policy).filter(|_| method.no_hedge().is_none())
    else {
        return Ok(quote!(None));
    };
    let max_attempts = Literal::u32_unsuffixed(hedge.max_attempts);
    let delay = duration_tokens(&method.path, "hedge_delay", hedge.delay)?;
    let percentile = match hedge.percentile {
        Some(q) if q.is_finite() => {
            // Rust prints the shortest decimal that reads back as the same f64: exact.
            let q = Literal::f64_unsuffixed(q);
            quote!(Some(#q))
        }
        Some(q) => {
            return Err(crate::error::invalid_input(format!(
                "invalid policy for {}: hedge_percentile = {q} is not a finite number",
                method.path
            )));
        }
        None => quote!(None),
    };
    Ok(quote! {
        Some(resilient_runtime::spec::HedgeSpec {
            max_attempts: #max_attempts,
            delay: #delay,
            percentile: #percentile,
        })
    })
}

/// `Some(BulkheadSpec { .. })` when a layer sets `max_concurrent`; `None` otherwise.
fn bulkhead_spec(method: &MethodModel) -> io::Result<TokenStream> {
    let policy = &method.policy;
    let Some(max_concurrent) = &policy.max_concurrent else {
        return Ok(quote!(None));
    };
    let max_concurrent = Literal::u32_unsuffixed(max_concurrent.value);
    let max_wait = duration_tokens(
        &method.path,
        "max_wait",
        policy.max_wait.as_ref().map_or(Duration::ZERO, |w| w.value),
    )?;
    let shared = policy.shared_bulkhead.as_ref().is_some_and(|s| s.value);
    Ok(quote! {
        Some(resilient_runtime::spec::BulkheadSpec {
            max_concurrent: #max_concurrent,
            max_wait: #max_wait,
            shared: #shared,
        })
    })
}

/// `std::time::Duration::from_millis(N)` when the value is whole milliseconds, the exact
/// seconds and nanoseconds otherwise.
fn duration_tokens(path: &str, option: &str, value: Duration) -> io::Result<TokenStream> {
    if value.subsec_nanos().is_multiple_of(1_000_000)
        && let Ok(millis) = u64::try_from(value.as_millis())
    {
        let millis = Literal::u64_unsuffixed(millis);
        return Ok(quote!(std::time::Duration::from_millis(#millis)));
    }
    if value.as_secs() > u64::from(u32::MAX) {
        return Err(crate::error::invalid_input(format!(
            "invalid policy for {path}: {option} = {value:?} is too large; use at most {} seconds",
            u32::MAX
        )));
    }
    let secs = Literal::u64_unsuffixed(value.as_secs());
    let nanos = Literal::u32_unsuffixed(value.subsec_nanos());
    Ok(quote!(std::time::Duration::new(#secs, #nanos)))
}

/// The client struct, its constructors, accessors and one method per RPC.
pub(crate) fn render(service: &ServiceModel, options: &RenderOptions) -> io::Result<TokenStream> {
    let client = format_ident!("{}ResilientClient", service.rust_name);
    let fallback_trait = format_ident!("{}Fallback", service.rust_name);
    let raw_module = format_ident!("{}", client_module_name(service));
    let raw_client = format_ident!("{}Client", service.rust_name);
    let raw = quote!(super::#raw_module::#raw_client);
    let raw_name = format!("{}::{}", client_module_name(service), raw_client);

    let struct_docs = docs::attrs(&[
        format!(
            "A drop-in for `{raw_name}`: every RPC of `{}` goes through its circuit breaker \
             and timeout and, when the client has one, its fallback.",
            service.proto_name
        ),
        String::new(),
        "Methods take `&self`; clones share breakers, which are also registered process-wide \
         by (service, RPC) for metrics. Unary and client-streaming calls time out over the \
         whole call and record the final status. Server-streaming and bidi calls time out on \
         the response headers and return a stream that records its terminal status when it \
         ends; a stream dropped early counts as neither success nor failure."
            .to_owned(),
    ]);

    let tonic_bounds = quote! {
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + std::marker::Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + std::marker::Send,
    };

    let runtime_check_message = format!(
        "{client}::with_runtime: the runtime was resolved for {{}}, not {}; resolve it from \
         `{client}::spec()`",
        service.path
    );
    let runtime_check = quote! {
        assert!(
            std::ptr::eq(runtime.spec(), Self::spec()),
            #runtime_check_message,
            runtime.spec().path,
        );
    };
    let with_runtime_docs = quote! {
        /// Uses breakers and policies resolved by the caller (e.g.
        /// `ServiceRuntime::resolve(Self::spec(), env, Some(&config))`, see
        /// [`ServiceRuntime::resolve`](resilient_runtime::client::ServiceRuntime::resolve)),
        /// so no environment variable is read: for tests, and for services that load their
        /// configuration themselves. Clients built with the same runtime share breakers.
        ///
        /// # Panics
        ///
        /// If `runtime` was resolved from another spec than [`Self::spec`].
    };

    let env_var = format!(
        "{}_URL",
        heck::ToShoutySnakeCase::to_shouty_snake_case(service.proto_name.as_str())
    );
    let from_config_docs = format!(
        " Builds the client from configuration, with no address in code: the target in \
         `{env_var}`, else `target` in the `[\"{path}\"]` table of the file named by \
         `RESILIENT_CONFIG`, else an error naming both. Targets are discovery strings \
         (`dns:///auth-service.nova.svc.cluster.local:8083`, `consul:///auth-service`, \
         `etcd:///nova/services/auth-service`, `static:///10.0.0.1:8083,10.0.0.2:8083`); \
         switching from one registry to another is a change of that string.",
        path = service.path,
    );
    let from_config_inner = if options.expose_raw_clients {
        quote! { #raw::new(pool) }
    } else {
        quote! { pool }
    };
    let from_config = quote! {
        impl #client<resilient_runtime::Pool> {
            #[doc = #from_config_docs]
            ///
            /// Call it inside a tokio runtime: the pool resolves in the background.
            pub fn from_config() -> Result<Self, resilient_runtime::client::ConnectError> {
                let pool = resilient_runtime::Pool::for_service(&SERVICE)
                    .map_err(resilient_runtime::client::ConnectError::Discovery)?;
                Self::try_new(#from_config_inner)
                    .map_err(resilient_runtime::client::ConnectError::Config)
            }
        }
    };

    let constructors = if options.expose_raw_clients {
        quote! {
            impl #client<tonic::transport::Channel> {
                /// Connects to `dst` like tonic's `connect`, then wraps the client as
                /// [`Self::try_new`] does.
                pub async fn connect<D>(dst: D) -> Result<Self, resilient_runtime::client::ConnectError>
                where
                    D: TryInto<tonic::transport::Endpoint>,
                    D::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
                {
                    let inner = #raw::connect(dst)
                        .await
                        .map_err(resilient_runtime::client::ConnectError::Transport)?;
                    Self::try_new(inner).map_err(resilient_runtime::client::ConnectError::Config)
                }
            }

            impl<T> #client<T> {
                /// Wraps `inner`, with the build-time policy of every RPC overlaid by the
                /// runtime configuration (`RESILIENT_ENV`, `RESILIENT_CONFIG`).
                ///
                /// A runtime configuration that cannot be loaded is logged with `tracing`
                /// and ignored: the client then runs on the build-time policy and the
                /// environment preset. Use [`Self::try_new`] to get the error instead.
                pub fn new(inner: #raw<T>) -> Self {
                    Self {
                        inner,
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime: resilient_runtime::client::ServiceRuntime::new_or_log(&SERVICE),
                    }
                }

                /// Like [`Self::new`], but returns the error of a runtime configuration that
                /// cannot be loaded (an unknown key, a bad value) instead of logging it.
                pub fn try_new(inner: #raw<T>) -> Result<Self, resilient_runtime::ConfigError> {
                    Ok(Self {
                        inner,
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime: resilient_runtime::client::ServiceRuntime::try_new(&SERVICE)?,
                    })
                }

                #with_runtime_docs
                pub fn with_runtime(
                    inner: #raw<T>,
                    runtime: std::sync::Arc<resilient_runtime::client::ServiceRuntime>,
                ) -> Self {
                    #runtime_check
                    Self {
                        inner,
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime,
                    }
                }
            }
        }
    } else {
        quote! {
            impl #client<tonic::transport::Channel> {
                /// Connects to `dst` like tonic's `connect`, then sets the client up as
                /// [`Self::try_new`] does.
                pub async fn connect<D>(dst: D) -> Result<Self, resilient_runtime::client::ConnectError>
                where
                    D: TryInto<tonic::transport::Endpoint>,
                    D::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
                {
                    let inner = #raw::connect(dst)
                        .await
                        .map_err(resilient_runtime::client::ConnectError::Transport)?;
                    let runtime = resilient_runtime::client::ServiceRuntime::try_new(&SERVICE)
                        .map_err(resilient_runtime::client::ConnectError::Config)?;
                    Ok(Self {
                        inner,
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime,
                    })
                }
            }

            impl<T> #client<T>
            where
                #tonic_bounds
            {
                /// Builds the client over `transport` (a `Channel`, or any tonic
                /// `GrpcService`), with the build-time policy of every RPC overlaid by the
                /// runtime configuration (`RESILIENT_ENV`, `RESILIENT_CONFIG`).
                ///
                /// This build hides tonic's raw client, so the only way to call the service
                /// is through the breakers.
                ///
                /// A runtime configuration that cannot be loaded is logged with `tracing`
                /// and ignored: the client then runs on the build-time policy and the
                /// environment preset. Use [`Self::try_new`] to get the error instead.
                pub fn new(transport: T) -> Self {
                    Self {
                        inner: #raw::new(transport),
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime: resilient_runtime::client::ServiceRuntime::new_or_log(&SERVICE),
                    }
                }

                /// Like [`Self::new`], but returns the error of a runtime configuration that
                /// cannot be loaded (an unknown key, a bad value) instead of logging it.
                pub fn try_new(transport: T) -> Result<Self, resilient_runtime::ConfigError> {
                    Ok(Self {
                        inner: #raw::new(transport),
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime: resilient_runtime::client::ServiceRuntime::try_new(&SERVICE)?,
                    })
                }

                #with_runtime_docs
                pub fn with_runtime(
                    transport: T,
                    runtime: std::sync::Arc<resilient_runtime::client::ServiceRuntime>,
                ) -> Self {
                    #runtime_check
                    Self {
                        inner: #raw::new(transport),
                        spares: std::sync::Arc::default(),
                        fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                        runtime,
                    }
                }
            }
        }
    };

    let intercepted = if options.expose_raw_clients {
        quote! { #raw::with_interceptor(inner, interceptor) }
    } else {
        quote! { tonic::service::interceptor::InterceptedService::new(inner, interceptor) }
    };
    let with_interceptor = quote! {
        impl<T> #client<T>
        where
            #tonic_bounds
        {
            /// Like tonic's `with_interceptor`: the client over `inner` with every request
            /// going through `interceptor` (each attempt of a retried call, after its
            /// breaker admitted it), then set up as [`Self::new`] does.
            pub fn with_interceptor<I>(
                inner: T,
                interceptor: I,
            ) -> #client<tonic::service::interceptor::InterceptedService<T, I>>
            where
                I: tonic::service::Interceptor,
                T::ResponseBody: Default,
                T: tonic::codegen::Service<
                    tonic::codegen::http::Request<tonic::body::Body>,
                    Response = tonic::codegen::http::Response<
                        <T as tonic::client::GrpcService<tonic::body::Body>>::ResponseBody,
                    >,
                >,
                <T as tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>>::Error:
                    Into<tonic::codegen::StdError> + std::marker::Send + std::marker::Sync,
            {
                #client::new(#intercepted)
            }
        }
    };

    let raw_access = options.expose_raw_clients.then(|| {
        quote! {
            /// The tonic client underneath. Calls made on it bypass the breakers.
            pub fn inner(&self) -> &#raw<T> {
                &self.inner
            }

            /// Unwraps the tonic client underneath. Calls made on it bypass the breakers.
            pub fn into_inner(self) -> #raw<T> {
                self.inner
            }
        }
    });

    let with_fallback_docs = docs::attrs(&[format!(
        "The same client with `fallback` answering for failed calls (see \
         [`{fallback_trait}`]). Breakers stay shared with the clones of `self`."
    )]);

    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| rpc_method(index, method, &raw, &fallback_trait))
        .collect::<io::Result<Vec<_>>>()?;
    let client_name = client.to_string();

    Ok(quote! {
        #struct_docs
        pub struct #client<T = tonic::transport::Channel, F = resilient_runtime::NoFallback> {
            inner: #raw<T>,
            /// Copies of `inner` that calls are done with, reused by later calls.
            spares: std::sync::Arc<resilient_runtime::spares::Spares<#raw<T>>>,
            fallback: std::sync::Arc<F>,
            runtime: std::sync::Arc<resilient_runtime::client::ServiceRuntime>,
        }

        impl<T: Clone, F> Clone for #client<T, F> {
            fn clone(&self) -> Self {
                Self {
                    inner: std::clone::Clone::clone(&self.inner),
                    spares: std::sync::Arc::clone(&self.spares),
                    fallback: std::sync::Arc::clone(&self.fallback),
                    runtime: std::sync::Arc::clone(&self.runtime),
                }
            }
        }

        // Like tonic's clients, `Debug` when the transport is; a fallback shows as its
        // type name, so that it need not implement `Debug` itself.
        impl<T: std::fmt::Debug, F> std::fmt::Debug for #client<T, F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(#client_name)
                    .field("inner", &self.inner)
                    .field("fallback", &std::any::type_name::<F>())
                    .field("runtime", &self.runtime)
                    .finish_non_exhaustive()
            }
        }

        #constructors
        #with_interceptor
        #from_config

        impl<T, F> #client<T, F> {
            #with_fallback_docs
            pub fn with_fallback<G: #fallback_trait>(self, fallback: G) -> #client<T, G> {
                #client {
                    inner: self.inner,
                    spares: self.spares,
                    fallback: std::sync::Arc::new(fallback),
                    runtime: self.runtime,
                }
            }

            /// The breaker guarding `rpc`, by its proto name (`"ValidateToken"`); `None` for
            /// a name the service does not have. With a shared breaker every RPC returns
            /// the same one.
            pub fn breaker(&self, rpc: &str) -> Option<&resilient_runtime::CircuitBreaker> {
                self.runtime.breaker(rpc)
            }

            /// The breakers, effective policies and configuration of this service.
            pub fn runtime(&self) -> &resilient_runtime::client::ServiceRuntime {
                &self.runtime
            }

            /// The build-time description of this service: names, kinds, policies.
            pub fn spec() -> &'static resilient_runtime::spec::ServiceSpec {
                &SERVICE
            }

            #raw_access
        }

        impl<T, F> #client<T, F>
        where
            #tonic_bounds
        {
            /// Compresses requests with `encoding`, as tonic's client does; the server
            /// must accept it.
            #[must_use]
            pub fn send_compressed(self, encoding: tonic::codec::CompressionEncoding) -> Self {
                self.map_inner(|inner| inner.send_compressed(encoding))
            }

            /// Accepts responses compressed with `encoding`, as tonic's client does.
            #[must_use]
            pub fn accept_compressed(self, encoding: tonic::codec::CompressionEncoding) -> Self {
                self.map_inner(|inner| inner.accept_compressed(encoding))
            }

            /// Limits the size of a decoded response message, as tonic's client does
            /// (default 4 MB).
            #[must_use]
            pub fn max_decoding_message_size(self, limit: usize) -> Self {
                self.map_inner(|inner| inner.max_decoding_message_size(limit))
            }

            /// Limits the size of an encoded request message, as tonic's client does
            /// (default `usize::MAX`).
            #[must_use]
            pub fn max_encoding_message_size(self, limit: usize) -> Self {
                self.map_inner(|inner| inner.max_encoding_message_size(limit))
            }

            /// The same client over a reconfigured tonic client; copies of the old one
            /// are not reused.
            fn map_inner(self, f: impl FnOnce(#raw<T>) -> #raw<T>) -> Self {
                Self {
                    inner: f(self.inner),
                    spares: std::sync::Arc::default(),
                    fallback: self.fallback,
                    runtime: self.runtime,
                }
            }
        }

        impl<T, F> #client<T, F>
        where
            #tonic_bounds
            T: Clone + Send + 'static,
            T::Future: Send,
            F: #fallback_trait,
        {
            #(#methods)*
        }
    })
}

/// One RPC's method. tonic's and the fallback's methods are called by their full path,
/// so that an RPC named like a method in scope (`Clone`, `Into`, `AsRef`, `Drop`...)
/// still calls its own.
fn rpc_method(
    index: usize,
    method: &MethodModel,
    raw: &TokenStream,
    fallback_trait: &Ident,
) -> io::Result<TokenStream> {
    let ident = method_ident(method);
    let input = rust_type(&method.input_type)?;
    let output = rust_type(&method.output_type)?;
    let index = Literal::usize_unsuffixed(index);

    let mut lines = docs::from_proto(&method.comments);
    if !lines.is_empty() {
        lines.push(String::new());
    }
    lines.push(format!(
        "Calls `{}` through its breaker, timeout and fallback.",
        method.proto_name
    ));
    let doc = docs::attrs(&lines);
    // The client and fallback methods it calls are deprecated too; that is not news here.
    let deprecated = method
        .deprecated
        .then(|| quote!(#[deprecated] #[allow(deprecated)]));

    // Every attempt takes a copy of tonic's client from the spares when it starts, and
    // hands it back when it is done: unary and server-streaming executors may retry and
    // call this closure again; client-streaming and bidi ones call it at most once (a
    // consumed request stream cannot be retried), and not at all for an open circuit.
    let (argument, request, executor, fallback_call) = match method.kind {
        RpcKind::Unary | RpcKind::ServerStreaming => (
            quote!(request: impl tonic::IntoRequest<#input>),
            quote!(request.into_request()),
            if method.kind == RpcKind::Unary {
                quote!(unary)
            } else {
                quote!(server_streaming)
            },
            quote!(move |message, cause| <F as #fallback_trait>::#ident(fallback, message, cause)),
        ),
        RpcKind::ClientStreaming | RpcKind::BidiStreaming => (
            quote!(request: impl tonic::IntoStreamingRequest<Message = #input>),
            quote!(request.into_streaming_request()),
            if method.kind == RpcKind::ClientStreaming {
                quote!(client_streaming)
            } else {
                quote!(bidi_streaming)
            },
            quote!(move |cause| <F as #fallback_trait>::#ident(fallback, cause)),
        ),
    };
    let call = quote! {
        move |request| {
            let mut inner = spares.take(inner);
            async move {
                let response = #raw::#ident(&mut inner, request).await;
                spares.put(inner);
                response
            }
        }
    };
    let response = match method.kind {
        RpcKind::Unary | RpcKind::ClientStreaming => quote!(tonic::Response<#output>),
        RpcKind::ServerStreaming | RpcKind::BidiStreaming => {
            quote!(tonic::Response<resilient_runtime::ResilientStreaming<#output>>)
        }
    };

    Ok(quote! {
        #doc
        #deprecated
        pub async fn #ident(&self, #argument) -> Result<#response, tonic::Status> {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::#executor(
                self.runtime.method(#index),
                #request,
                F::ENABLED,
                #call,
                #fallback_call,
            )
            .await
        }
    })
}
