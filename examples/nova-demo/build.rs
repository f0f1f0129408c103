//! Generates the nova services' messages, servers and resilient clients, with the
//! per-service tuning of the design: auth fails fast, media is tolerant of slow uploads.

use std::time::Duration;

use resilient_build::Policy;

fn main() -> std::io::Result<()> {
    resilient_build::configure()
        .policy(
            ".nova.auth.v1.AuthService",
            Policy::new()
                .failure_threshold(3)
                .success_threshold(3)
                .open_for(Duration::from_secs(30))
                .timeout(Duration::from_secs(2)),
        )
        .policy(
            ".nova.media.v1.MediaService",
            Policy::new()
                .failure_threshold(5)
                .success_threshold(5)
                .open_for(Duration::from_secs(60)),
        )
        .policy(
            ".nova.media.v1.MediaService.UploadMedia",
            Policy::new().timeout(Duration::from_secs(30)),
        )
        .compile_protos(
            &[
                "../../proto/nova/auth/v1/auth.proto",
                "../../proto/nova/user/v1/user.proto",
                "../../proto/nova/content/v1/content.proto",
                "../../proto/nova/media/v1/media.proto",
            ],
            &["../../proto"],
        )
}
