//! CORS for browser dashboards: only the exact origins configured (`LOYALTY_CORS_ORIGINS`)
//! may read the API's answers from a page; with none configured (the default) the API
//! sends no CORS header at all and refuses every preflight.
//!
//! Hand-written rather than `actix-cors`, because that crate answers a refused request with
//! a `text/plain` 400, and every refusal of this API is a problem+json. The policy is small:
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   here, whatever the path: 204 with the allowed methods and headers when the origin, the
//!   method and every requested header are allowed, else 403 `cors-preflight-refused`;
//! - any other request goes through; an allowed `Origin` gets `Access-Control-Allow-Origin`
//!   (that origin, never `*`) and the exposed headers, any other origin gets nothing.
//!
//! No `Access-Control-Allow-Credentials`: callers authenticate with a bearer key, not
//! cookies, so a page must hold the key itself.

use crate::problem::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

pub const ALLOWED_METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
/// Request headers a page may send (compared case-insensitively). The CORS-safelisted ones
/// (`Accept`, `Accept-Language`, `Content-Language`) never need a preflight.
pub const ALLOWED_HEADERS: [&str; 3] = ["Authorization", "Content-Type", "Idempotency-Key"];
/// Response headers a page may read beyond the safelisted ones.
pub const EXPOSED_HEADERS: &str = "Retry-After, Idempotent-Replayed";
/// How long a browser may cache a successful preflight.
pub const PREFLIGHT_MAX_AGE_SECONDS: u32 = 600;

/// An origin allowed to call the API from a browser: `scheme://host[:port]`, lower case,
/// exactly as browsers serialise the `Origin` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsOrigin(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CORS origin: write it as http(s)://host[:port], e.g. https://dashboard.example.com, with no path, wildcard or trailing slash")]
pub struct InvalidCorsOrigin(String);

impl CorsOrigin {
    pub fn parse(raw: &str) -> Result<CorsOrigin, InvalidCorsOrigin> {
        let origin = raw.trim().to_ascii_lowercase();
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let is_host_and_port = |authority: &str| {
            !authority.is_empty()
                && authority.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        };
        match authority {
            Some(authority) if is_host_and_port(authority) => Ok(CorsOrigin(origin)),
            _ => Err(InvalidCorsOrigin(raw.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for CorsOrigin {
    type Err = InvalidCorsOrigin;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        CorsOrigin::parse(raw)
    }
}

/// The middleware (see the module docs). Wrap it outside the rate limit, so a page can read
/// a 429's `Retry-After`.
#[derive(Clone)]
pub struct Cors {
    origins: Rc<[CorsOrigin]>,
}

impl Cors {
    pub fn new(origins: &[CorsOrigin]) -> Cors {
        Cors {
            origins: origins.into(),
        }
    }

    /// The request's `Origin`, if it is one of the allowed origins.
    fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|allowed| allowed.as_str().eq_ignore_ascii_case(text))
            .then_some(origin)
    }

    /// The answer to a preflight, or `None` for any other request.
    fn answer_preflight(&self, request: &ServiceRequest) -> Option<HttpResponse> {
        let headers = request.headers();
        let requested_method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        if request.method() != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
            return None;
        }
        Some(match self.allow_preflight(headers, requested_method) {
            Ok(origin) => preflight_allowed(origin.clone()),
            Err(refusal) => refusal.error_response(),
        })
    }

    fn allow_preflight<'a>(
        &self,
        headers: &'a HeaderMap,
        requested_method: &HeaderValue,
    ) -> Result<&'a HeaderValue, ApiError> {
        let refuse = |detail: &str| Err(ApiError::CorsPreflightRefused(detail.to_owned()));
        let Some(origin) = self.allowed_origin(headers) else {
            return refuse("this origin may not call the API from a browser");
        };
        // Methods are case-sensitive (RFC 9110 §9.1); browsers upper-case the standard ones.
        if !ALLOWED_METHODS
            .iter()
            .any(|allowed| requested_method.as_bytes() == allowed.as_bytes())
        {
            return refuse("this method may not be used from a browser");
        }
        let requested_headers = headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .map(|value| value.to_str().unwrap_or("\u{0}"))
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty());
        for name in requested_headers {
            if !ALLOWED_HEADERS
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
            {
                return refuse("a requested header may not be sent from a browser");
            }
        }
        Ok(origin)
    }

    /// Headers of an answer to a request that is not a preflight.
    fn decorate(&self, origin: Option<HeaderValue>, headers: &mut HeaderMap) {
        if self.origins.is_empty() {
            return;
        }
        // The answer depends on the Origin, so a shared cache must not hand one origin's
        // answer to another.
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }
}

fn preflight_allowed(origin: HeaderValue) -> HttpResponse {
    HttpResponse::build(StatusCode::NO_CONTENT)
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            ALLOWED_METHODS.join(", "),
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            ALLOWED_HEADERS.join(", "),
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_SECONDS))
        .insert_header((
            header::VARY,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ))
        .finish()
}

impl<S, B> Transform<S, ServiceRequest> for Cors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = CorsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CorsService {
            service,
            policy: self.clone(),
        }))
    }
}

pub struct CorsService<S> {
    service: S,
    policy: Cors,
}

impl<S, B> Service<ServiceRequest> for CorsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        if let Some(answer) = self.policy.answer_preflight(&request) {
            let response = request.into_response(answer).map_into_right_body();
            return Box::pin(ready(Ok(response)));
        }
        let origin = self.policy.allowed_origin(request.headers()).cloned();
        let policy = self.policy.clone();
        let call = self.service.call(request);
        Box::pin(async move {
            let mut response = call.await?.map_into_left_body();
            policy.decorate(origin, response.headers_mut());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for (raw, parsed) in [
            (
                "https://dashboard.example.com",
                "https://dashboard.example.com",
            ),
            (
                " HTTPS://Dashboard.Example.com ",
                "https://dashboard.example.com",
            ),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(CorsOrigin::parse(raw).unwrap().as_str(), parsed, "{raw}");
        }
        for bad in [
            "",
            "*",
            "null",
            "dashboard.example.com",
            "https://",
            "https://dashboard.example.com/",
            "https://dashboard.example.com/app",
            "https://*.example.com",
            "ftp://example.com",
            "https://example.com?x=1",
        ] {
            assert!(CorsOrigin::parse(bad).is_err(), "{bad}");
        }
    }
}
