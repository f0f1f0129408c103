// `test.nested.deep.v1` is generated with `expose_raw_clients(false)`: tonic's client,
// which has no breaker, cannot be named outside the generated code.
use codegen_tests::test::nested::deep::v1::keyword_service_client::KeywordServiceClient;

fn main() {
    let _ = KeywordServiceClient::<tonic::transport::Channel>::connect("http://127.0.0.1:1");
}
