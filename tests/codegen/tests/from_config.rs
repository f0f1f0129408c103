//! A generated client built from configuration alone: the target comes from the service's
//! environment variable, else the runtime config file, else an error naming both.
//! (One test in its own binary: it sets environment variables.)

mod common;

use codegen_tests::test::echo::v1::echo_service_resilient::EchoServiceResilientClient;
use common::{req, start};

#[test]
fn the_target_comes_from_the_env_var_then_the_config_file() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // SAFETY: this binary runs this one test; no other thread reads the environment
    // while these variables change (the tokio runtime's threads are idle).
    unsafe {
        std::env::remove_var("ECHO_SERVICE_URL");
        std::env::remove_var("RESILIENT_CONFIG");
    }
    runtime.block_on(async {
        let err = EchoServiceResilientClient::from_config().expect_err("no target anywhere");
        let text = err.to_string();
        assert!(text.contains("ECHO_SERVICE_URL"), "{text}");
        assert!(text.contains("RESILIENT_CONFIG"), "{text}");
    });

    let server = runtime.block_on(start());
    unsafe {
        std::env::set_var("ECHO_SERVICE_URL", format!("static:///{}", server.addr));
    }
    runtime.block_on(async {
        let client = EchoServiceResilientClient::from_config().unwrap();
        let reply = client.echo(req("from env")).await.unwrap().into_inner();
        assert_eq!(reply.message, "from env");
    });

    let dir = std::env::temp_dir().join(format!("resilient-from-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("resilient.toml");
    std::fs::write(
        &file,
        format!(
            "[\".test.echo.v1.EchoService\"]\ntarget = \"static:///{}\"\n",
            server.addr
        ),
    )
    .unwrap();
    unsafe {
        std::env::remove_var("ECHO_SERVICE_URL");
        std::env::set_var("RESILIENT_CONFIG", &file);
    }
    runtime.block_on(async {
        let client = EchoServiceResilientClient::from_config().unwrap();
        let reply = client.echo(req("from file")).await.unwrap().into_inner();
        assert_eq!(reply.message, "from file");
        assert_eq!(server.hits.echo(), 2);
    });
    unsafe {
        std::env::remove_var("RESILIENT_CONFIG");
    }
    let _ = std::fs::remove_dir_all(dir);
}
