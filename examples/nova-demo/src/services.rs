//! The four services, each with a switch for the faults a scenario injects.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::proto::auth::auth_service_client::AuthServiceClient;
use crate::proto::auth::auth_service_resilient::{AuthServiceFallback, AuthServiceResilientClient};
use crate::proto::auth::auth_service_server::AuthService;
use crate::proto::auth::{Claims, ValidateTokenRequest};
use crate::proto::content::content_service_client::ContentServiceClient;
use crate::proto::content::content_service_resilient::{
    ContentServiceFallback, ContentServiceResilientClient,
};
use crate::proto::content::content_service_server::ContentService;
use crate::proto::content::{
    ContentPost, CreatePostRequest, CreatePostResponse, GetPostsRequest, GetPostsResponse,
};
use crate::proto::media::media_service_client::MediaServiceClient;
use crate::proto::media::media_service_resilient::MediaServiceResilientClient;
use crate::proto::media::media_service_server::MediaService;
use crate::proto::media::{GetMediaRequest, MediaChunk, MediaResponse, UploadChunk};
use crate::proto::user::user_service_server::UserService;
use crate::proto::user::{GetUserPostsRequest, GetUserRequest, Post, User, UserPosts};
use resilient_runtime::{FallbackCause, Pool};

/// How a replica misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers normally.
    Healthy,
    /// Never answers.
    Hang,
    /// Answers after this long.
    Slow(Duration),
    /// Fails every call with this code.
    Fail(Code),
}

/// The fault switch of one replica, and the calls it received.
#[derive(Debug)]
pub struct Faults {
    fault: Mutex<Fault>,
    hits: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fault: Mutex::new(Fault::Healthy),
            hits: AtomicU64::new(0),
        }
    }
}

impl Faults {
    /// Sets the fault.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// The current fault.
    pub fn get(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls received.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Counts a call and applies the fault.
    async fn apply(&self) -> Result<(), Status> {
        self.hits.fetch_add(1, Ordering::Relaxed);
        match self.get() {
            Fault::Healthy => Ok(()),
            Fault::Hang => std::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Fault::Fail(code) => Err(Status::new(code, "injected failure")),
        }
    }
}

/// A token for `user_id`, as the demo's clients send it.
pub fn token_for(user_id: &str) -> String {
    format!("t-{user_id}")
}

// ---------------------------------------------------------------------------------------
// auth-service

/// auth-service: tokens are `t-<user>`.
#[derive(Debug, Default)]
pub struct Auth {
    /// The fault switch.
    pub faults: Arc<Faults>,
}

#[tonic::async_trait]
impl AuthService for Auth {
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<Claims>, Status> {
        self.faults.apply().await?;
        let token = request.into_inner().token;
        let Some(user_id) = token.strip_prefix("t-") else {
            return Err(Status::unauthenticated("not a token"));
        };
        Ok(Response::new(Claims {
            user_id: user_id.to_string(),
            roles: vec!["user".into()],
            expires_at: 4_102_444_800,
        }))
    }
}

/// Marks a response served from a cache by a fallback.
#[derive(Debug, Clone, Copy)]
pub struct FromCache;

/// user-service's fallback for auth-service: claims it saw for a token before.
#[derive(Debug, Clone, Default)]
pub struct CachedClaims {
    claims: Arc<Mutex<HashMap<String, Claims>>>,
}

impl CachedClaims {
    fn remember(&self, token: &str, claims: &Claims) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), claims.clone());
    }
}

impl AuthServiceFallback for CachedClaims {
    async fn validate_token(
        &self,
        request: ValidateTokenRequest,
        cause: FallbackCause,
    ) -> Result<Response<Claims>, Status> {
        let cached = self
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&request.token)
            .cloned();
        match cached {
            Some(claims) => {
                let mut response = Response::new(claims);
                response.extensions_mut().insert(FromCache);
                Ok(response)
            }
            None => Err(cause.into_status()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// media-service

/// media-service: stores uploads in memory.
#[derive(Debug, Default)]
pub struct Media {
    /// The fault switch.
    pub faults: Arc<Faults>,
    store: Mutex<HashMap<String, Vec<u8>>>,
    next_id: AtomicU64,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<MediaChunk, Status>> + Send>>;

#[tonic::async_trait]
impl MediaService for Media {
    async fn upload_media(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<MediaResponse>, Status> {
        let mut stream = request.into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        self.faults.apply().await?;
        let id = format!("m-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let size = data.len() as u64;
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), data);
        Ok(Response::new(MediaResponse { media_id: id, size }))
    }

    type GetMediaStream = ChunkStream;

    async fn get_media(
        &self,
        request: Request<GetMediaRequest>,
    ) -> Result<Response<Self::GetMediaStream>, Status> {
        self.faults.apply().await?;
        let id = request.into_inner().media_id;
        let data = self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no media {id}")))?;
        let chunks: Vec<Result<MediaChunk, Status>> = data
            .chunks(16 * 1024)
            .map(|c| Ok(MediaChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

// ---------------------------------------------------------------------------------------
// content-service

/// content-service's client of media-service.
#[derive(Clone)]
pub enum MediaDep {
    /// Through a resilient client over a discovery pool.
    Resilient(MediaServiceResilientClient<Pool>),
    /// A raw tonic client: no timeout, no breaker.
    Raw(MediaServiceClient<tonic::transport::Channel>),
}

/// content-service: posts in memory; media uploaded to media-service.
pub struct Content {
    /// The fault switch.
    pub faults: Arc<Faults>,
    media: MediaDep,
    posts: Mutex<HashMap<String, Vec<ContentPost>>>,
    next_id: AtomicU64,
}

impl Content {
    /// content-service calling media-service through `media`.
    pub fn new(media: MediaDep) -> Self {
        Self {
            faults: Arc::default(),
            media,
            posts: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

#[tonic::async_trait]
impl ContentService for Content {
    async fn create_post(
        &self,
        request: Request<CreatePostRequest>,
    ) -> Result<Response<CreatePostResponse>, Status> {
        self.faults.apply().await?;
        let req = request.into_inner();
        let post_id = format!("p-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut media_id = String::new();
        if !req.media.is_empty() {
            let chunks: Vec<UploadChunk> = req
                .media
                .chunks(16 * 1024)
                .map(|c| UploadChunk {
                    user_id: req.user_id.clone(),
                    data: c.to_vec(),
                })
                .collect();
            let uploaded = match &self.media {
                MediaDep::Resilient(c) => c.upload_media(tokio_stream::iter(chunks)).await,
                MediaDep::Raw(c) => c.clone().upload_media(tokio_stream::iter(chunks)).await,
            };
            // A post without its media is better than no post: degrade, do not fail.
            if let Ok(response) = uploaded {
                media_id = response.into_inner().media_id;
            }
        }
        self.posts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(req.user_id)
            .or_default()
            .insert(
                0,
                ContentPost {
                    post_id: post_id.clone(),
                    body: req.body,
                },
            );
        Ok(Response::new(CreatePostResponse { post_id, media_id }))
    }

    async fn get_posts(
        &self,
        request: Request<GetPostsRequest>,
    ) -> Result<Response<GetPostsResponse>, Status> {
        self.faults.apply().await?;
        let user = request.into_inner().user_id;
        let posts = self
            .posts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(GetPostsResponse { posts }))
    }
}

// ---------------------------------------------------------------------------------------
// user-service

/// user-service's fallback for content-service: the posts it last saw, stale.
#[derive(Debug, Clone, Default)]
pub struct PostsCache {
    posts: Arc<Mutex<HashMap<String, Vec<ContentPost>>>>,
}

impl PostsCache {
    fn remember(&self, user: &str, posts: &[ContentPost]) {
        self.posts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string(), posts.to_vec());
    }
}

impl ContentServiceFallback for PostsCache {
    async fn get_posts(
        &self,
        request: GetPostsRequest,
        _cause: FallbackCause,
    ) -> Result<Response<GetPostsResponse>, Status> {
        // Stale data rather than an error; nothing cached yet means no posts.
        let posts = self
            .posts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&request.user_id)
            .cloned()
            .unwrap_or_default();
        let mut response = Response::new(GetPostsResponse { posts });
        response.extensions_mut().insert(FromCache);
        Ok(response)
    }
}

/// user-service's clients of its dependencies.
#[derive(Clone)]
pub enum UserDeps {
    /// Resilient clients over discovery pools, with fallbacks.
    Resilient {
        /// auth-service, falling back to cached claims.
        auth: AuthServiceResilientClient<Pool, CachedClaims>,
        /// The claims cache the fallback reads.
        claims: CachedClaims,
        /// content-service, falling back to stale posts.
        content: ContentServiceResilientClient<Pool, PostsCache>,
        /// The posts cache the fallback reads.
        posts: PostsCache,
    },
    /// Raw tonic clients: no timeout, no breaker, no fallback.
    Raw {
        /// auth-service.
        auth: AuthServiceClient<tonic::transport::Channel>,
        /// content-service.
        content: ContentServiceClient<tonic::transport::Channel>,
    },
}

/// A dependency's error as this service's answer.
///
/// `UNAVAILABLE` tells the caller's load balancer that *this* replica cannot be reached:
/// passed on as it is, a dependency's outage (or its open circuit) would get healthy
/// replicas ejected by their callers, which is the cascade breakers are there to stop. It
/// becomes `INTERNAL`, naming the dependency; other codes (a deadline, a refused token)
/// pass through.
fn from_dependency(dependency: &str, status: Status) -> Status {
    if status.code() == Code::Unavailable {
        Status::internal(format!("{dependency}: {}", status.message()))
    } else {
        status
    }
}

/// user-service: every call checks the caller's token with auth-service.
pub struct Users {
    /// The fault switch.
    pub faults: Arc<Faults>,
    deps: UserDeps,
}

impl Users {
    /// user-service calling its dependencies through `deps`.
    pub fn new(deps: UserDeps) -> Self {
        Self {
            faults: Arc::default(),
            deps,
        }
    }

    /// Checks `token`; the flag says the claims came from the cache.
    async fn authenticate(&self, token: String) -> Result<(Claims, bool), Status> {
        let request = ValidateTokenRequest {
            token: token.clone(),
        };
        match &self.deps {
            UserDeps::Resilient { auth, claims, .. } => {
                let response = auth
                    .validate_token(request)
                    .await
                    .map_err(|s| from_dependency("auth-service", s))?;
                let degraded = response.extensions().get::<FromCache>().is_some();
                let found = response.into_inner();
                if !degraded {
                    claims.remember(&token, &found);
                }
                Ok((found, degraded))
            }
            UserDeps::Raw { auth, .. } => {
                let found = auth
                    .clone()
                    .validate_token(request)
                    .await
                    .map_err(|s| from_dependency("auth-service", s))?
                    .into_inner();
                Ok((found, false))
            }
        }
    }
}

#[tonic::async_trait]
impl UserService for Users {
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        self.faults.apply().await?;
        let req = request.into_inner();
        let (claims, degraded) = self.authenticate(req.token).await?;
        Ok(Response::new(User {
            name: format!("user {}", req.user_id),
            user_id: req.user_id,
            auth_degraded: degraded || claims.user_id.is_empty(),
        }))
    }

    async fn get_user_posts(
        &self,
        request: Request<GetUserPostsRequest>,
    ) -> Result<Response<UserPosts>, Status> {
        self.faults.apply().await?;
        let req = request.into_inner();
        self.authenticate(req.token).await?;
        let query = GetPostsRequest {
            user_id: req.user_id.clone(),
        };
        let (posts, stale) = match &self.deps {
            UserDeps::Resilient { content, posts, .. } => {
                let response = content
                    .get_posts(query)
                    .await
                    .map_err(|s| from_dependency("content-service", s))?;
                let stale = response.extensions().get::<FromCache>().is_some();
                let found = response.into_inner().posts;
                if !stale {
                    posts.remember(&req.user_id, &found);
                }
                (found, stale)
            }
            UserDeps::Raw { content, .. } => (
                content
                    .clone()
                    .get_posts(query)
                    .await
                    .map_err(|s| from_dependency("content-service", s))?
                    .into_inner()
                    .posts,
                false,
            ),
        };
        Ok(Response::new(UserPosts {
            posts: posts
                .into_iter()
                .map(|p| Post {
                    post_id: p.post_id,
                    body: p.body,
                })
                .collect(),
            stale,
        }))
    }
}

/// A stream of `n` upload chunks of `size` bytes each, for the load generator.
pub fn upload(user: &str, n: usize, size: usize) -> impl Stream<Item = UploadChunk> + Send {
    let user = user.to_string();
    tokio_stream::iter(0..n).map(move |_| UploadChunk {
        user_id: user.clone(),
        data: vec![7u8; size],
    })
}
