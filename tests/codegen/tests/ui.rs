//! The compile errors a user gets for a wrong fallback signature and for reaching around
//! the breaker to a hidden raw client.

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
