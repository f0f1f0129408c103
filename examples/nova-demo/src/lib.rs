//! The nova system of the design document, built on resilient clients: auth-service
//! (ValidateToken), user-service (GetUser, GetUserPosts; calls auth-service and
//! content-service), content-service (CreatePost, GetPosts; calls media-service) and
//! media-service (UploadMedia, GetMedia), with fault injection, a load generator and the
//! failure scenario that `cargo run -p nova-demo` plays.

pub mod cluster;
pub mod dns;
pub mod load;
pub mod scenario;
pub mod services;

/// The generated code of the four services.
pub mod proto {
    /// `nova.auth.v1`.
    pub mod auth {
        tonic::include_proto!("nova.auth.v1");
    }
    /// `nova.user.v1`.
    pub mod user {
        tonic::include_proto!("nova.user.v1");
    }
    /// `nova.content.v1`.
    pub mod content {
        tonic::include_proto!("nova.content.v1");
    }
    /// `nova.media.v1`.
    pub mod media {
        tonic::include_proto!("nova.media.v1");
    }
}
