use codegen_tests::test::echo::v1::EchoReply;
use codegen_tests::test::echo::v1::echo_service_resilient::EchoServiceFallback;
use resilient_runtime::FallbackCause;

struct Cached;

impl EchoServiceFallback for Cached {
    // The request is an `EchoRequest`, not a `String`.
    async fn echo(
        &self,
        request: String,
        cause: FallbackCause,
    ) -> Result<tonic::Response<EchoReply>, tonic::Status> {
        let _ = request;
        Err(cause.into_status())
    }
}

fn main() {}
