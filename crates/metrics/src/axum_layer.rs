//! A tower layer for axum routers that runs each request inside a [`RequestContext`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{Request, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{NO_ENDPOINT, RequestContext, UNKNOWN, with_request_context};

/// Sets the request context of every request: `method`, `host` (the Host header, or the URI
/// authority for HTTP/2) and `path` (the matched route *template*, e.g. `/v2/notifications/{id}`;
/// [`NO_ENDPOINT`] when no route matched). Add it with `Router::layer` (it then runs after
/// routing, where the template is known).
///
/// The Host header comes from the client; put the service behind a proxy that only forwards
/// known host names, or its label values are whatever clients send (cut to 200 bytes).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestContextLayer;

impl RequestContextLayer {
    /// The layer.
    pub fn new() -> RequestContextLayer {
        RequestContextLayer
    }
}

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContextService { inner }
    }
}

/// The service made by [`RequestContextLayer`].
#[derive(Clone, Debug)]
pub struct RequestContextService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestContextService<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let ctx = context_of(&request);
        Box::pin(with_request_context(ctx, self.inner.call(request)))
    }
}

fn context_of<B>(request: &Request<B>) -> RequestContext {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or(UNKNOWN);
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or(NO_ENDPOINT);
    RequestContext::new(request.method().as_str(), host, path)
}
