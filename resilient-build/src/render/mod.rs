//! Model to Rust source, formatted with prettyplease. Pure: no file or environment access.

mod client;
pub(crate) mod docs;
mod fallback;

use std::io;
use std::ops::Range;

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::model::{MethodModel, ServiceModel};
use crate::parse::{client_module_name, module_name};

/// Build-wide choices that change the generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenderOptions {
    /// Whether tonic's client stays public and the resilient client offers `inner()`.
    pub(crate) expose_raw_clients: bool,
}

/// The `<service>_resilient` module of one service, formatted.
pub(crate) fn render_service(
    service: &ServiceModel,
    options: &RenderOptions,
) -> io::Result<String> {
    let module = format_ident!("{}", module_name(service));
    let raw = format!(
        "{}::{}Client",
        client_module_name(service),
        service.rust_name
    );

    let mut lines = docs::from_proto(&service.comments);
    if !lines.is_empty() {
        lines.push(String::new());
    }
    lines.push(if options.expose_raw_clients {
        format!(
            "Resilient client for `{}`: wraps `{raw}` with a circuit breaker, a timeout and a \
             fallback per RPC.",
            service.proto_name
        )
    } else {
        format!(
            "Resilient client for `{}`: wraps `{raw}`, which this build keeps private, with a \
             circuit breaker, a timeout and a fallback per RPC.",
            service.proto_name
        )
    });
    if service.deprecated {
        lines.push(String::new());
        lines.push(format!(
            "`{}` is deprecated in its proto file.",
            service.proto_name
        ));
    }
    let module_docs = docs::attrs(&lines);

    let fallback = fallback::render(service)?;
    let spec = client::spec_table(service)?;
    let client = client::render(service, options)?;
    format(quote! {
        #module_docs
        pub mod #module {
            #fallback
            #spec
            #client
        }
    })
}

/// Makes tonic's client module `module` private to the package module, so only the
/// resilient client next to it can reach the raw client.
///
/// The module keeps tonic's `#![allow(..)]`s and gets `#![allow(unreachable_pub)]`, as
/// its items stay `pub` inside a now private module. `tonic_code` is tonic's formatted
/// output, where the module starts a line of its own: editing that line keeps the code
/// formatted without parsing and printing it again.
pub(crate) fn hide_client_module(tonic_code: &str, module: &str) -> io::Result<String> {
    let public = format!("pub mod {module} {{\n");
    let at = tonic_code
        .match_indices(&public)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || tonic_code[..at].ends_with('\n'))
        .ok_or_else(|| internal(&format!("tonic's output has no module `{module}`")))?;
    let mut code = String::with_capacity(tonic_code.len() + 32);
    code.push_str(&tonic_code[..at]);
    // Inner, as tonic's own `#![allow(..)]`: clippy rejects a mix of styles.
    code.push_str("mod ");
    code.push_str(module);
    code.push_str(" {\n    #![allow(unreachable_pub)]\n");
    code.push_str(&tonic_code[at + public.len()..]);
    Ok(code)
}

/// Formats `code` except its `formatted` byte ranges (in order, not overlapping), which
/// are copied as they are.
///
/// prost-build writes its messages unformatted, while tonic's services and our modules
/// arrive formatted. prettyplease prints top-level items one after the other, so
/// formatting only the unformatted stretches gives the same text as a pass over the whole
/// file, without parsing and printing the formatted code a second time.
pub(crate) fn format_rest(code: &str, formatted: &[Range<usize>]) -> io::Result<String> {
    let mut out = String::with_capacity(code.len() + code.len() / 4);
    let mut at = 0;
    for range in formatted {
        format_items(&code[at..range.start], &mut out)?;
        out.push_str(&code[range.clone()]);
        at = range.end;
    }
    format_items(&code[at..], &mut out)?;
    Ok(out)
}

/// Appends `items` (prost's Rust source, whole items), formatted, to `out`.
fn format_items(items: &str, out: &mut String) -> io::Result<()> {
    if items.trim().is_empty() {
        return Ok(());
    }
    let file = syn::parse_file(items)
        .map_err(|e| internal(&format!("prost's output does not parse: {e}")))?;
    out.push_str(&prettyplease::unparse(&file));
    Ok(())
}

/// Parses and formats generated tokens.
fn format(tokens: TokenStream) -> io::Result<String> {
    let file = syn::parse2::<syn::File>(tokens)
        .map_err(|e| internal(&format!("generated code does not parse: {e}")))?;
    Ok(prettyplease::unparse(&file))
}

/// The Rust method name of an RPC, raw when it is a keyword (`r#type`).
fn method_ident(method: &MethodModel) -> Ident {
    format_ident!("{}", method.rust_name)
}

/// A Rust type written as a string: `super::Claims`, `()`, a user's `extern_path`.
fn rust_type(text: &str) -> io::Result<syn::Type> {
    syn::parse_str(text).map_err(|e| {
        crate::error::invalid_input(format!(
            "`{text}` is not a Rust type ({e}); check the extern_path that maps to it"
        ))
    })
}

pub(crate) fn internal(what: &str) -> io::Error {
    crate::error::build_error(
        io::ErrorKind::Other,
        format!(
            "resilient-build internal error: {what}; please report this with the proto that causes it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_rest_formats_around_formatted_ranges() {
        let formatted = "pub mod m {\n    pub fn kept( ) {}\n}\n";
        let code = format!("pub struct A{{x:u32}}\n{formatted}pub enum B{{X}}");
        let start = code.find(formatted).unwrap();
        let range = start..start + formatted.len();
        let out = format_rest(&code, std::slice::from_ref(&range)).unwrap();
        assert_eq!(
            out,
            format!("pub struct A {{\n    x: u32,\n}}\n{formatted}pub enum B {{\n    X,\n}}\n")
        );
        // Nothing formatted yet: one pass over everything.
        assert_eq!(format_rest("fn f(){}", &[]).unwrap(), "fn f() {}\n");
        assert_eq!(format_rest(" \n", &[]).unwrap(), "");
        let error = format_rest("fn f(", &[]).unwrap_err().to_string();
        assert!(error.contains("prost's output does not parse"), "{error}");
    }

    #[test]
    fn hide_client_module_edits_only_the_module_line() {
        let tonic = "/// Generated client implementations.\n\
                     pub mod s_client {\n    #![allow(dead_code)]\n    pub struct SClient;\n}\n\
                     /// Generated server implementations.\n\
                     pub mod s_server {\n    /// Not `pub mod s_client {`.\n    pub struct SServer;\n}\n";
        let hidden = hide_client_module(tonic, "s_client").unwrap();
        assert_eq!(
            hidden,
            tonic.replace(
                "pub mod s_client {\n",
                "mod s_client {\n    #![allow(unreachable_pub)]\n"
            )
        );
        assert_eq!(
            prettyplease::unparse(&syn::parse_file(&hidden).unwrap()),
            hidden,
            "still formatted"
        );
        let error = hide_client_module(tonic, "t_client")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no module `t_client`"), "{error}");
    }
}
