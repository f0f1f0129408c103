//! The `<Service>Fallback` trait: one method per RPC whose default returns the error.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{docs, method_ident, rust_type};
use crate::model::{RpcKind, ServiceModel};
use std::io;

/// The fallback trait and its `NoFallback` implementation.
pub(crate) fn render(service: &ServiceModel) -> io::Result<TokenStream> {
    let trait_ident = format_ident!("{}Fallback", service.rust_name);
    let client_ident = format_ident!("{}ResilientClient", service.rust_name);

    let mut trait_docs = docs::from_proto(&service.comments);
    if !trait_docs.is_empty() {
        trait_docs.push(String::new());
    }
    trait_docs.extend([
        format!("Degraded answers for the RPCs of `{}`.", service.proto_name),
        String::new(),
        format!(
            "A client built with [`{client_ident}::with_fallback`] calls these when an RPC's \
             breaker is open or its call times out (the policy can narrow or widen the causes \
             per RPC). Every method has a default that returns the error unchanged, so \
             implement only those with a sensible degraded answer, with plain `async fn`."
        ),
    ]);
    let trait_docs = docs::attrs(&trait_docs);

    let methods = service
        .methods
        .iter()
        .map(|method| {
            let ident = method_ident(method);
            let output = rust_type(&method.output_type)?;
            let response = match method.kind {
                RpcKind::Unary | RpcKind::ClientStreaming => quote!(tonic::Response<#output>),
                RpcKind::ServerStreaming | RpcKind::BidiStreaming => {
                    quote!(tonic::Response<resilient_runtime::ResilientStreaming<#output>>)
                }
            };
            let takes_request = matches!(method.kind, RpcKind::Unary | RpcKind::ServerStreaming);
            let mut lines = vec![if takes_request {
                format!(
                    "Fallback for `{}`: gets the request message and why the call did not \
                     succeed. The default returns `cause.into_status()`.",
                    method.proto_name
                )
            } else {
                format!(
                    "Fallback for `{}`: gets why the call did not succeed (the request stream \
                     is already consumed). The default returns `cause.into_status()`.",
                    method.proto_name
                )
            }];
            let proto_docs = docs::from_proto(&method.comments);
            if !proto_docs.is_empty() {
                lines.push(String::new());
                lines.extend(proto_docs);
            }
            let doc = docs::attrs(&lines);
            let deprecated = method.deprecated.then(|| quote!(#[deprecated]));
            let returns = quote! {
                impl std::future::Future<Output = Result<#response, tonic::Status>> + Send
            };
            Ok(if takes_request {
                let input = rust_type(&method.input_type)?;
                // `let _ = request;` would trip clippy's let_unit_value when the request
                // is `google.protobuf.Empty`, which tonic maps to `()`.
                quote! {
                    #doc
                    #deprecated
                    #[allow(unused_variables)]
                    fn #ident(&self, request: #input, cause: resilient_runtime::FallbackCause) -> #returns {
                        async move { Err(cause.into_status()) }
                    }
                }
            } else {
                quote! {
                    #doc
                    #deprecated
                    fn #ident(&self, cause: resilient_runtime::FallbackCause) -> #returns {
                        async move { Err(cause.into_status()) }
                    }
                }
            })
        })
        .collect::<io::Result<Vec<_>>>()?;

    Ok(quote! {
        #trait_docs
        pub trait #trait_ident: Send + Sync + 'static {
            #[doc(hidden)]
            const ENABLED: bool = true;
            #(#methods)*
        }

        impl #trait_ident for resilient_runtime::NoFallback {
            const ENABLED: bool = false;
        }
    })
}
