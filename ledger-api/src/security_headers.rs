//! Headers on every answer, whatever produced it (a handler, an extractor's error, the 404
//! and 405 fallbacks, the rate limit, a CORS refusal): the API serves JSON to programs, so
//! it tells browsers to render nothing, frame nothing, send no referrer, cache nothing and
//! use HTTPS only.
//!
//! Wrap it outermost, so that it sees every response. Handlers' and extractors' errors reach
//! it as responses (actix renders them where they occur), and the API's own middleware
//! answers refusals with responses, never with `Err`: an `Err` from an inner service would
//! be rendered by the server after this middleware, without the headers. (Keeping a clone
//! of the request to render it here is not an option: the router needs the request unshared.)

use actix_web::body::MessageBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::future::{ready, Future, Ready};
use std::pin::Pin;

/// Set on every response, replacing any value a handler chose.
pub const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    // Two years: the value browser preload lists ask for.
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (header::CROSS_ORIGIN_RESOURCE_POLICY, "same-origin"),
];

/// Answers carry balances and phone numbers: no cache may keep them, unless a handler
/// decided otherwise.
pub const CACHE_CONTROL_DEFAULT: &str = "no-store";

/// Adds the security headers, `Cache-Control: no-store` unless one is set, and removes any
/// `Server` header (it only helps an attacker pick exploits).
pub fn add_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL_DEFAULT),
        );
    }
    headers.remove(header::SERVER);
}

/// The middleware (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SecurityHeaders;

impl<S, B> Transform<S, ServiceRequest> for SecurityHeaders
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = SecurityHeadersService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SecurityHeadersService { service }))
    }
}

pub struct SecurityHeadersService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for SecurityHeadersService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let call = self.service.call(request);
        Box::pin(async move {
            let mut response = call.await?;
            add_security_headers(response.headers_mut());
            Ok(response)
        })
    }
}
