//! The server side of `DataPlaneService` with a codec of the caller's choice.
//!
//! tonic's generated server decodes every frame with prost. A node that wants the frames as
//! bytes (the reference relay routes Publishes from their bytes; the load tool's null relay
//! forwards them untouched) serves `OpenChannel` through [`OpenChannelServer`] instead: the same
//! gRPC method, its handler a [`StreamingService`] over the codec's types, every other method
//! answered `UNIMPLEMENTED`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codec::Codec;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{NamedService, StreamingService};
use tonic::Status;

/// The tower service tonic's router takes for `dataplane.proto.v1.DataPlaneService`.
#[derive(Debug, Clone)]
pub struct OpenChannelServer<S, C> {
    handler: S,
    codec: C,
    max_decoding_message_size: usize,
}

impl<S, C> OpenChannelServer<S, C> {
    /// Serves `OpenChannel` with `handler`, reading and writing frames with `codec`, refusing
    /// frames larger than [`crate::MAX_MESSAGE_SIZE`] (tonic's `OUT_OF_RANGE` "message length
    /// too large").
    pub fn new(handler: S, codec: C) -> Self {
        Self {
            handler,
            codec,
            max_decoding_message_size: crate::MAX_MESSAGE_SIZE,
        }
    }
}

impl<S, C> NamedService for OpenChannelServer<S, C> {
    const NAME: &'static str = "dataplane.proto.v1.DataPlaneService";
}

impl<S, C, B> Service<http::Request<B>> for OpenChannelServer<S, C>
where
    C: Codec + Clone + Send + 'static,
    S: StreamingService<C::Decode, Response = C::Encode> + Clone + Send + 'static,
    S::Future: Send,
    S::ResponseStream: Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let handler = self.handler.clone();
        let codec = self.codec.clone();
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            if req.uri().path() != crate::OPEN_CHANNEL {
                let method = req.uri().path().to_string();
                return Ok(Status::unimplemented(format!(
                    "{method}: a SLIM node serves only {}",
                    crate::OPEN_CHANNEL
                ))
                .into_http());
            }
            let mut grpc = tonic::server::Grpc::new(codec).max_decoding_message_size(limit);
            Ok(grpc.streaming(handler, req).await)
        })
    }
}
