/// Stores and streams media.
///
/// See \[RFC 6838\] for media types, and <https://example.com/media> for the guide.
/// Returns List\<Media> where a list is asked for.
///
/// Resilient client for `MediaService`: wraps `media_service_client::MediaServiceClient`, which this build keeps private, with a circuit breaker, a timeout and a fallback per RPC.
pub mod media_service_resilient {
    /// Stores and streams media.
    ///
    /// See \[RFC 6838\] for media types, and <https://example.com/media> for the guide.
    /// Returns List\<Media> where a list is asked for.
    ///
    /// Degraded answers for the RPCs of `MediaService`.
    ///
    /// A client built with [`MediaServiceResilientClient::with_fallback`] calls these when an RPC's breaker is open or its call times out (the policy can narrow or widen the causes per RPC). Every method has a default that returns the error unchanged, so implement only those with a sensible degraded answer, with plain `async fn`.
    pub trait MediaServiceFallback: Send + Sync + 'static {
        #[doc(hidden)]
        const ENABLED: bool = true;
        /// Fallback for `GetMedia`: gets the request message and why the call did not succeed. The default returns `cause.into_status()`.
        ///
        /// Fetches one media item.
        ///
        /// Example request:
        ///
        /// ```text
        /// { "id": "m-1" }
        /// ```
        #[allow(unused_variables)]
        fn get_media(
            &self,
            request: super::GetMediaRequest,
            cause: resilient_runtime::FallbackCause,
        ) -> impl std::future::Future<
            Output = Result<tonic::Response<super::Media>, tonic::Status>,
        > + Send {
            async move { Err(cause.into_status()) }
        }
        /// Fallback for `GetThumbnail`: gets the request message and why the call did not succeed. The default returns `cause.into_status()`.
        ///
        /// Fetches a small preview of one media item: hedged rather than retried.
        #[allow(unused_variables)]
        fn get_thumbnail(
            &self,
            request: super::GetMediaRequest,
            cause: resilient_runtime::FallbackCause,
        ) -> impl std::future::Future<
            Output = Result<tonic::Response<super::Media>, tonic::Status>,
        > + Send {
            async move { Err(cause.into_status()) }
        }
        /// Fallback for `StreamMedia`: gets the request message and why the call did not succeed. The default returns `cause.into_status()`.
        ///
        /// Streams the chunks of one media item.
        #[allow(unused_variables)]
        fn stream_media(
            &self,
            request: super::GetMediaRequest,
            cause: resilient_runtime::FallbackCause,
        ) -> impl std::future::Future<
            Output = Result<
                tonic::Response<
                    resilient_runtime::ResilientStreaming<super::MediaChunk>,
                >,
                tonic::Status,
            >,
        > + Send {
            async move { Err(cause.into_status()) }
        }
        /// Fallback for `UploadMedia`: gets why the call did not succeed (the request stream is already consumed). The default returns `cause.into_status()`.
        ///
        /// Uploads a media item chunk by chunk.
        fn upload_media(
            &self,
            cause: resilient_runtime::FallbackCause,
        ) -> impl std::future::Future<
            Output = Result<tonic::Response<super::Media>, tonic::Status>,
        > + Send {
            async move { Err(cause.into_status()) }
        }
        /// Fallback for `Chat`: gets why the call did not succeed (the request stream is already consumed). The default returns `cause.into_status()`.
        ///
        /// Talks about media, both ways.
        fn chat(
            &self,
            cause: resilient_runtime::FallbackCause,
        ) -> impl std::future::Future<
            Output = Result<
                tonic::Response<
                    resilient_runtime::ResilientStreaming<super::ChatMessage>,
                >,
                tonic::Status,
            >,
        > + Send {
            async move { Err(cause.into_status()) }
        }
        /// Fallback for `Type`: gets the request message and why the call did not succeed. The default returns `cause.into_status()`.
        ///
        /// Old name of GetMedia; use GetMedia.
        #[deprecated]
        #[allow(unused_variables)]
        fn r#type(
            &self,
            request: super::GetMediaRequest,
            cause: resilient_runtime::FallbackCause,
        ) -> impl std::future::Future<
            Output = Result<tonic::Response<()>, tonic::Status>,
        > + Send {
            async move { Err(cause.into_status()) }
        }
    }
    impl MediaServiceFallback for resilient_runtime::NoFallback {
        const ENABLED: bool = false;
    }
    #[allow(clippy::needless_update)]
    static SERVICE: resilient_runtime::spec::ServiceSpec = resilient_runtime::spec::ServiceSpec {
        path: ".golden.media.v1.MediaService",
        name: "MediaService",
        shared_breaker: false,
        methods: &[
            resilient_runtime::spec::MethodSpec {
                name: "GetMedia",
                kind: resilient_runtime::spec::RpcKind::Unary,
                idempotent: true,
                policy: resilient_runtime::spec::PolicySpec {
                    failure_threshold: Some(3),
                    success_threshold: None,
                    open_for: None,
                    timeout: Some(std::time::Duration::from_millis(2000)),
                    half_open_max_calls: Some(2),
                    fallback: Some(resilient_runtime::spec::FallbackMode {
                        open: true,
                        timeout: true,
                        failure: false,
                    }),
                    retry: Some(resilient_runtime::spec::RetrySpec {
                        max_attempts: 4,
                        initial_backoff: std::time::Duration::from_millis(50),
                        max_backoff: std::time::Duration::from_millis(1000),
                        multiplier: 1.5,
                        retryable: resilient_runtime::spec::CodeSet::of(
                            &[
                                tonic::Code::ResourceExhausted as i32,
                                tonic::Code::Unavailable as i32,
                            ],
                        ),
                        attempt_timeout: Some(std::time::Duration::from_millis(600)),
                    }),
                    bulkhead: Some(resilient_runtime::spec::BulkheadSpec {
                        max_concurrent: 16,
                        max_wait: std::time::Duration::from_millis(0),
                        shared: false,
                    }),
                    hedge: None,
                    propagate_deadline: None,
                    ..resilient_runtime::spec::PolicySpec::EMPTY
                },
            },
            resilient_runtime::spec::MethodSpec {
                name: "GetThumbnail",
                kind: resilient_runtime::spec::RpcKind::Unary,
                idempotent: true,
                policy: resilient_runtime::spec::PolicySpec {
                    failure_threshold: Some(3),
                    success_threshold: None,
                    open_for: None,
                    timeout: Some(std::time::Duration::from_millis(1500)),
                    half_open_max_calls: Some(2),
                    fallback: None,
                    retry: None,
                    bulkhead: Some(resilient_runtime::spec::BulkheadSpec {
                        max_concurrent: 16,
                        max_wait: std::time::Duration::from_millis(0),
                        shared: false,
                    }),
                    hedge: Some(resilient_runtime::spec::HedgeSpec {
                        max_attempts: 3,
                        delay: std::time::Duration::from_millis(40),
                        percentile: None,
                    }),
                    propagate_deadline: None,
                    ..resilient_runtime::spec::PolicySpec::EMPTY
                },
            },
            resilient_runtime::spec::MethodSpec {
                name: "StreamMedia",
                kind: resilient_runtime::spec::RpcKind::ServerStreaming,
                idempotent: true,
                policy: resilient_runtime::spec::PolicySpec {
                    failure_threshold: Some(3),
                    success_threshold: None,
                    open_for: None,
                    timeout: Some(std::time::Duration::from_millis(1500)),
                    half_open_max_calls: Some(2),
                    fallback: Some(resilient_runtime::spec::FallbackMode {
                        open: true,
                        timeout: true,
                        failure: true,
                    }),
                    retry: Some(resilient_runtime::spec::RetrySpec {
                        max_attempts: 3,
                        initial_backoff: std::time::Duration::from_millis(20),
                        max_backoff: std::time::Duration::from_millis(500),
                        multiplier: 2.0,
                        retryable: resilient_runtime::spec::CodeSet::of(
                            &[tonic::Code::Unavailable as i32],
                        ),
                        attempt_timeout: None,
                    }),
                    bulkhead: Some(resilient_runtime::spec::BulkheadSpec {
                        max_concurrent: 16,
                        max_wait: std::time::Duration::from_millis(0),
                        shared: false,
                    }),
                    hedge: None,
                    propagate_deadline: None,
                    ..resilient_runtime::spec::PolicySpec::EMPTY
                },
            },
            resilient_runtime::spec::MethodSpec {
                name: "UploadMedia",
                kind: resilient_runtime::spec::RpcKind::ClientStreaming,
                idempotent: false,
                policy: resilient_runtime::spec::PolicySpec {
                    failure_threshold: Some(5),
                    success_threshold: None,
                    open_for: Some(std::time::Duration::from_millis(60000)),
                    timeout: Some(std::time::Duration::from_millis(30000)),
                    half_open_max_calls: Some(2),
                    fallback: None,
                    retry: None,
                    bulkhead: Some(resilient_runtime::spec::BulkheadSpec {
                        max_concurrent: 16,
                        max_wait: std::time::Duration::from_millis(100),
                        shared: true,
                    }),
                    hedge: None,
                    propagate_deadline: Some(false),
                    ..resilient_runtime::spec::PolicySpec::EMPTY
                },
            },
            resilient_runtime::spec::MethodSpec {
                name: "Chat",
                kind: resilient_runtime::spec::RpcKind::BidiStreaming,
                idempotent: false,
                policy: resilient_runtime::spec::PolicySpec {
                    failure_threshold: Some(3),
                    success_threshold: None,
                    open_for: None,
                    timeout: Some(std::time::Duration::from_millis(1500)),
                    half_open_max_calls: Some(2),
                    fallback: Some(resilient_runtime::spec::FallbackMode {
                        open: false,
                        timeout: false,
                        failure: false,
                    }),
                    retry: None,
                    bulkhead: Some(resilient_runtime::spec::BulkheadSpec {
                        max_concurrent: 4,
                        max_wait: std::time::Duration::from_millis(250),
                        shared: false,
                    }),
                    hedge: None,
                    propagate_deadline: None,
                    ..resilient_runtime::spec::PolicySpec::EMPTY
                },
            },
            resilient_runtime::spec::MethodSpec {
                name: "Type",
                kind: resilient_runtime::spec::RpcKind::Unary,
                idempotent: false,
                policy: resilient_runtime::spec::PolicySpec {
                    failure_threshold: Some(3),
                    success_threshold: None,
                    open_for: None,
                    timeout: Some(std::time::Duration::from_millis(1500)),
                    half_open_max_calls: Some(2),
                    fallback: None,
                    retry: None,
                    bulkhead: Some(resilient_runtime::spec::BulkheadSpec {
                        max_concurrent: 16,
                        max_wait: std::time::Duration::from_millis(0),
                        shared: false,
                    }),
                    hedge: None,
                    propagate_deadline: None,
                    ..resilient_runtime::spec::PolicySpec::EMPTY
                },
            },
        ],
    };
    /// A drop-in for `media_service_client::MediaServiceClient`: every RPC of `MediaService` goes through its circuit breaker and timeout and, when the client has one, its fallback.
    ///
    /// Methods take `&self`; clones share breakers, which are also registered process-wide by (service, RPC) for metrics. Unary and client-streaming calls time out over the whole call and record the final status. Server-streaming and bidi calls time out on the response headers and return a stream that records its terminal status when it ends; a stream dropped early counts as neither success nor failure.
    pub struct MediaServiceResilientClient<
        T = tonic::transport::Channel,
        F = resilient_runtime::NoFallback,
    > {
        inner: super::media_service_client::MediaServiceClient<T>,
        /// Copies of `inner` that calls are done with, reused by later calls.
        spares: std::sync::Arc<
            resilient_runtime::spares::Spares<
                super::media_service_client::MediaServiceClient<T>,
            >,
        >,
        fallback: std::sync::Arc<F>,
        runtime: std::sync::Arc<resilient_runtime::client::ServiceRuntime>,
    }
    impl<T: Clone, F> Clone for MediaServiceResilientClient<T, F> {
        fn clone(&self) -> Self {
            Self {
                inner: std::clone::Clone::clone(&self.inner),
                spares: std::sync::Arc::clone(&self.spares),
                fallback: std::sync::Arc::clone(&self.fallback),
                runtime: std::sync::Arc::clone(&self.runtime),
            }
        }
    }
    impl<T: std::fmt::Debug, F> std::fmt::Debug for MediaServiceResilientClient<T, F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MediaServiceResilientClient")
                .field("inner", &self.inner)
                .field("fallback", &std::any::type_name::<F>())
                .field("runtime", &self.runtime)
                .finish_non_exhaustive()
        }
    }
    impl MediaServiceResilientClient<tonic::transport::Channel> {
        /// Connects to `dst` like tonic's `connect`, then sets the client up as
        /// [`Self::try_new`] does.
        pub async fn connect<D>(
            dst: D,
        ) -> Result<Self, resilient_runtime::client::ConnectError>
        where
            D: TryInto<tonic::transport::Endpoint>,
            D::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        {
            let inner = super::media_service_client::MediaServiceClient::connect(dst)
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
    impl<T> MediaServiceResilientClient<T>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes>
            + std::marker::Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError>
            + std::marker::Send,
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
                inner: super::media_service_client::MediaServiceClient::new(transport),
                spares: std::sync::Arc::default(),
                fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                runtime: resilient_runtime::client::ServiceRuntime::new_or_log(&SERVICE),
            }
        }
        /// Like [`Self::new`], but returns the error of a runtime configuration that
        /// cannot be loaded (an unknown key, a bad value) instead of logging it.
        pub fn try_new(transport: T) -> Result<Self, resilient_runtime::ConfigError> {
            Ok(Self {
                inner: super::media_service_client::MediaServiceClient::new(transport),
                spares: std::sync::Arc::default(),
                fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                runtime: resilient_runtime::client::ServiceRuntime::try_new(&SERVICE)?,
            })
        }
        /// Uses breakers and policies resolved by the caller (e.g.
        /// `ServiceRuntime::resolve(Self::spec(), env, Some(&config))`, see
        /// [`ServiceRuntime::resolve`](resilient_runtime::client::ServiceRuntime::resolve)),
        /// so no environment variable is read: for tests, and for services that load their
        /// configuration themselves. Clients built with the same runtime share breakers.
        ///
        /// # Panics
        ///
        /// If `runtime` was resolved from another spec than [`Self::spec`].
        pub fn with_runtime(
            transport: T,
            runtime: std::sync::Arc<resilient_runtime::client::ServiceRuntime>,
        ) -> Self {
            assert!(
                std::ptr::eq(runtime.spec(), Self::spec()),
                "MediaServiceResilientClient::with_runtime: the runtime was resolved for {}, not .golden.media.v1.MediaService; resolve it from `MediaServiceResilientClient::spec()`",
                runtime.spec().path,
            );
            Self {
                inner: super::media_service_client::MediaServiceClient::new(transport),
                spares: std::sync::Arc::default(),
                fallback: std::sync::Arc::new(resilient_runtime::NoFallback),
                runtime,
            }
        }
    }
    impl<T> MediaServiceResilientClient<T>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes>
            + std::marker::Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError>
            + std::marker::Send,
    {
        /// Like tonic's `with_interceptor`: the client over `inner` with every request
        /// going through `interceptor` (each attempt of a retried call, after its
        /// breaker admitted it), then set up as [`Self::new`] does.
        pub fn with_interceptor<I>(
            inner: T,
            interceptor: I,
        ) -> MediaServiceResilientClient<
            tonic::service::interceptor::InterceptedService<T, I>,
        >
        where
            I: tonic::service::Interceptor,
            T::ResponseBody: Default,
            T: tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<
                    <T as tonic::client::GrpcService<tonic::body::Body>>::ResponseBody,
                >,
            >,
            <T as tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
            >>::Error: Into<tonic::codegen::StdError> + std::marker::Send
                + std::marker::Sync,
        {
            MediaServiceResilientClient::new(
                tonic::service::interceptor::InterceptedService::new(inner, interceptor),
            )
        }
    }
    impl MediaServiceResilientClient<resilient_runtime::Pool> {
        /// Builds the client from configuration, with no address in code: the target in `MEDIA_SERVICE_URL`, else `target` in the `[".golden.media.v1.MediaService"]` table of the file named by `RESILIENT_CONFIG`, else an error naming both. Targets are discovery strings (`dns:///auth-service.nova.svc.cluster.local:8083`, `consul:///auth-service`, `etcd:///nova/services/auth-service`, `static:///10.0.0.1:8083,10.0.0.2:8083`); switching from one registry to another is a change of that string.
        ///
        /// Call it inside a tokio runtime: the pool resolves in the background.
        pub fn from_config() -> Result<Self, resilient_runtime::client::ConnectError> {
            let pool = resilient_runtime::Pool::for_service(&SERVICE)
                .map_err(resilient_runtime::client::ConnectError::Discovery)?;
            Self::try_new(pool).map_err(resilient_runtime::client::ConnectError::Config)
        }
    }
    impl<T, F> MediaServiceResilientClient<T, F> {
        /// The same client with `fallback` answering for failed calls (see [`MediaServiceFallback`]). Breakers stay shared with the clones of `self`.
        pub fn with_fallback<G: MediaServiceFallback>(
            self,
            fallback: G,
        ) -> MediaServiceResilientClient<T, G> {
            MediaServiceResilientClient {
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
    }
    impl<T, F> MediaServiceResilientClient<T, F>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes>
            + std::marker::Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError>
            + std::marker::Send,
    {
        /// Compresses requests with `encoding`, as tonic's client does; the server
        /// must accept it.
        #[must_use]
        pub fn send_compressed(
            self,
            encoding: tonic::codec::CompressionEncoding,
        ) -> Self {
            self.map_inner(|inner| inner.send_compressed(encoding))
        }
        /// Accepts responses compressed with `encoding`, as tonic's client does.
        #[must_use]
        pub fn accept_compressed(
            self,
            encoding: tonic::codec::CompressionEncoding,
        ) -> Self {
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
        fn map_inner(
            self,
            f: impl FnOnce(
                super::media_service_client::MediaServiceClient<T>,
            ) -> super::media_service_client::MediaServiceClient<T>,
        ) -> Self {
            Self {
                inner: f(self.inner),
                spares: std::sync::Arc::default(),
                fallback: self.fallback,
                runtime: self.runtime,
            }
        }
    }
    impl<T, F> MediaServiceResilientClient<T, F>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes>
            + std::marker::Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError>
            + std::marker::Send,
        T: Clone + Send + 'static,
        T::Future: Send,
        F: MediaServiceFallback,
    {
        /// Fetches one media item.
        ///
        /// Example request:
        ///
        /// ```text
        /// { "id": "m-1" }
        /// ```
        ///
        /// Calls `GetMedia` through its breaker, timeout and fallback.
        pub async fn get_media(
            &self,
            request: impl tonic::IntoRequest<super::GetMediaRequest>,
        ) -> Result<tonic::Response<super::Media>, tonic::Status> {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::unary(
                    self.runtime.method(0),
                    request.into_request(),
                    F::ENABLED,
                    move |request| {
                        let mut inner = spares.take(inner);
                        async move {
                            let response = super::media_service_client::MediaServiceClient::get_media(
                                    &mut inner,
                                    request,
                                )
                                .await;
                            spares.put(inner);
                            response
                        }
                    },
                    move |message, cause| <F as MediaServiceFallback>::get_media(
                        fallback,
                        message,
                        cause,
                    ),
                )
                .await
        }
        /// Fetches a small preview of one media item: hedged rather than retried.
        ///
        /// Calls `GetThumbnail` through its breaker, timeout and fallback.
        pub async fn get_thumbnail(
            &self,
            request: impl tonic::IntoRequest<super::GetMediaRequest>,
        ) -> Result<tonic::Response<super::Media>, tonic::Status> {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::unary(
                    self.runtime.method(1),
                    request.into_request(),
                    F::ENABLED,
                    move |request| {
                        let mut inner = spares.take(inner);
                        async move {
                            let response = super::media_service_client::MediaServiceClient::get_thumbnail(
                                    &mut inner,
                                    request,
                                )
                                .await;
                            spares.put(inner);
                            response
                        }
                    },
                    move |message, cause| <F as MediaServiceFallback>::get_thumbnail(
                        fallback,
                        message,
                        cause,
                    ),
                )
                .await
        }
        /// Streams the chunks of one media item.
        ///
        /// Calls `StreamMedia` through its breaker, timeout and fallback.
        pub async fn stream_media(
            &self,
            request: impl tonic::IntoRequest<super::GetMediaRequest>,
        ) -> Result<
            tonic::Response<resilient_runtime::ResilientStreaming<super::MediaChunk>>,
            tonic::Status,
        > {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::server_streaming(
                    self.runtime.method(2),
                    request.into_request(),
                    F::ENABLED,
                    move |request| {
                        let mut inner = spares.take(inner);
                        async move {
                            let response = super::media_service_client::MediaServiceClient::stream_media(
                                    &mut inner,
                                    request,
                                )
                                .await;
                            spares.put(inner);
                            response
                        }
                    },
                    move |message, cause| <F as MediaServiceFallback>::stream_media(
                        fallback,
                        message,
                        cause,
                    ),
                )
                .await
        }
        /// Uploads a media item chunk by chunk.
        ///
        /// Calls `UploadMedia` through its breaker, timeout and fallback.
        pub async fn upload_media(
            &self,
            request: impl tonic::IntoStreamingRequest<Message = super::MediaChunk>,
        ) -> Result<tonic::Response<super::Media>, tonic::Status> {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::client_streaming(
                    self.runtime.method(3),
                    request.into_streaming_request(),
                    F::ENABLED,
                    move |request| {
                        let mut inner = spares.take(inner);
                        async move {
                            let response = super::media_service_client::MediaServiceClient::upload_media(
                                    &mut inner,
                                    request,
                                )
                                .await;
                            spares.put(inner);
                            response
                        }
                    },
                    move |cause| <F as MediaServiceFallback>::upload_media(
                        fallback,
                        cause,
                    ),
                )
                .await
        }
        /// Talks about media, both ways.
        ///
        /// Calls `Chat` through its breaker, timeout and fallback.
        pub async fn chat(
            &self,
            request: impl tonic::IntoStreamingRequest<Message = super::ChatMessage>,
        ) -> Result<
            tonic::Response<resilient_runtime::ResilientStreaming<super::ChatMessage>>,
            tonic::Status,
        > {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::bidi_streaming(
                    self.runtime.method(4),
                    request.into_streaming_request(),
                    F::ENABLED,
                    move |request| {
                        let mut inner = spares.take(inner);
                        async move {
                            let response = super::media_service_client::MediaServiceClient::chat(
                                    &mut inner,
                                    request,
                                )
                                .await;
                            spares.put(inner);
                            response
                        }
                    },
                    move |cause| <F as MediaServiceFallback>::chat(fallback, cause),
                )
                .await
        }
        /// Old name of GetMedia; use GetMedia.
        ///
        /// Calls `Type` through its breaker, timeout and fallback.
        #[deprecated]
        #[allow(deprecated)]
        pub async fn r#type(
            &self,
            request: impl tonic::IntoRequest<super::GetMediaRequest>,
        ) -> Result<tonic::Response<()>, tonic::Status> {
            let (inner, spares) = (&self.inner, &*self.spares);
            let fallback = &*self.fallback;
            resilient_runtime::call::unary(
                    self.runtime.method(5),
                    request.into_request(),
                    F::ENABLED,
                    move |request| {
                        let mut inner = spares.take(inner);
                        async move {
                            let response = super::media_service_client::MediaServiceClient::r#type(
                                    &mut inner,
                                    request,
                                )
                                .await;
                            spares.put(inner);
                            response
                        }
                    },
                    move |message, cause| <F as MediaServiceFallback>::r#type(
                        fallback,
                        message,
                        cause,
                    ),
                )
                .await
        }
    }
}
