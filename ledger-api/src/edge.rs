//! The edge of the API: rate limits per client address and per principal, which client
//! address a request comes from, and the settings of the edge middleware ([`EdgeConfig`]:
//! the limits, trusted proxies and CORS origins).
//!
//! Two limits, both in memory ([`crate::rate_limit`]) and so **per process**:
//! - per client IP, on every request but `/health` and `/ready` (load balancers poll them),
//!   before authentication, so that floods of bad keys or of a future login endpoint are
//!   bounded too ([`ClientRateLimit`], a middleware);
//! - per principal (an API key now, a user later), after authentication
//!   ([`ApiState::check_principal_rate`], called by the `Caller` extractor), so that one
//!   noisy integration cannot starve the other tenants behind the same address.
//!
//! The client IP is the TCP peer, unless the peer is a configured trusted proxy: then it is
//! the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (the left-most
//! entries are whatever the client chose to send). A malformed header is ignored, never an
//! error. IPv6 clients are limited per /64, the block one subscriber usually holds, so that
//! rotating through one's own addresses does not multiply the quota.

use crate::cors::CorsOrigin;
use crate::problem::ApiError;
use crate::rate_limit::{Quota, RateLimiter, RetryAfter};
use crate::ApiState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::{web, ResponseError};
use std::future::{ready, Future, Ready};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Instant;
use uuid::Uuid;

pub const CLIENT_IP_QUOTA_DEFAULT: Quota = const_quota(100, 200);
pub const PRINCIPAL_QUOTA_DEFAULT: Quota = const_quota(50, 100);
/// Most client addresses remembered per process (about 50 bytes each).
pub const CLIENT_IP_KEYS_MAX: usize = 100_000;
/// Most principals remembered per process.
pub const PRINCIPAL_KEYS_MAX: usize = 100_000;
/// Paths exempt from the per-IP limit: load balancers and orchestrators poll them.
pub const UNLIMITED_PATHS: [&str; 2] = ["/health", "/ready"];
const X_FORWARDED_FOR: &str = "x-forwarded-for";

const fn const_quota(per_second: u32, burst: u32) -> Quota {
    match Quota::new(per_second, burst) {
        Ok(quota) => quota,
        Err(_) => panic!("a default quota is invalid"),
    }
}

/// The settings of the edge middleware. `Default` is what a fresh [`ApiState`] has: the
/// default limits, no trusted proxy, no CORS origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    pub client_ip_quota: Quota,
    pub principal_quota: Quota,
    /// Peers whose `X-Forwarded-For` is believed (exact addresses).
    pub trusted_proxies: Vec<IpAddr>,
    /// Origins allowed to call the API from a browser; empty = no CORS at all.
    pub cors_origins: Vec<CorsOrigin>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            client_ip_quota: CLIENT_IP_QUOTA_DEFAULT,
            principal_quota: PRINCIPAL_QUOTA_DEFAULT,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

/// The edge configuration and the limiters built from it; a field of [`ApiState`].
pub(crate) struct EdgeState {
    config: EdgeConfig,
    client_ips: RateLimiter<IpAddr>,
    principals: RateLimiter<Uuid>,
}

impl EdgeState {
    pub(crate) fn new(config: EdgeConfig) -> Self {
        EdgeState {
            client_ips: RateLimiter::new(config.client_ip_quota, CLIENT_IP_KEYS_MAX),
            principals: RateLimiter::new(config.principal_quota, PRINCIPAL_KEYS_MAX),
            config,
        }
    }
}

impl ApiState {
    /// The same state with these edge settings (limits start afresh).
    pub fn with_edge(mut self, edge: EdgeConfig) -> Self {
        self.edge = EdgeState::new(edge);
        self
    }

    pub fn edge_config(&self) -> &EdgeConfig {
        &self.edge.config
    }

    /// Counts one request of an authenticated principal (API key id or user id); 429
    /// `rate-limited` when it is over its quota.
    pub fn check_principal_rate(&self, principal: Uuid) -> Result<(), ApiError> {
        self.edge
            .principals
            .check(principal, Instant::now())
            .map_err(rate_limited)
    }

    /// Counts one request from a client address; 429 `rate-limited` when it is over its quota.
    pub fn check_client_ip_rate(&self, client_ip: IpAddr) -> Result<(), ApiError> {
        self.edge
            .client_ips
            .check(rate_limit_key(client_ip), Instant::now())
            .map_err(rate_limited)
    }
}

fn rate_limited(RetryAfter(retry_after): RetryAfter) -> ApiError {
    ApiError::RateLimited { retry_after }
}

/// The address a request comes from (see the module docs). `peer` is `None` when the
/// transport has no address (a test request, a Unix socket): those share one bucket.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> IpAddr {
    let Some(peer) = peer.map(|peer| peer.ip().to_canonical()) else {
        return IpAddr::from(Ipv6Addr::UNSPECIFIED);
    };
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    forwarded_client(headers.get_all(X_FORWARDED_FOR), trusted_proxies).unwrap_or(peer)
}

/// The right-most `X-Forwarded-For` entry that is not a trusted proxy, reading every header
/// line in order as one list. `None` when there is none or an entry on the way is malformed.
fn forwarded_client<'a>(
    lines: impl Iterator<Item = &'a HeaderValue>,
    trusted_proxies: &[IpAddr],
) -> Option<IpAddr> {
    let mut entries = Vec::new();
    for line in lines {
        entries.extend(line.to_str().ok()?.split(','));
    }
    // Empty entries (`a,,b`, a trailing comma) carry nothing and are skipped.
    let entries = entries.into_iter().map(str::trim).filter(|e| !e.is_empty());
    for entry in entries.rev() {
        let address = forwarded_address(entry)?;
        if !trusted_proxies.contains(&address) {
            return Some(address);
        }
    }
    None
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write them.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let address = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()?;
    Some(address.to_canonical())
}

/// What the per-IP limiter counts: an IPv4 address, or the /64 of an IPv6 address.
fn rate_limit_key(client_ip: IpAddr) -> IpAddr {
    match client_ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

/// The per-IP limit as a middleware; wrap it inside the request metrics so that refusals
/// are counted.
pub struct ClientRateLimit {
    state: web::Data<ApiState>,
}

impl ClientRateLimit {
    pub fn new(state: web::Data<ApiState>) -> Self {
        ClientRateLimit { state }
    }
}

impl<S, B> Transform<S, ServiceRequest> for ClientRateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ClientRateLimitService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ClientRateLimitService {
            service,
            state: self.state.clone(),
        }))
    }
}

pub struct ClientRateLimitService<S> {
    service: S,
    state: web::Data<ApiState>,
}

impl<S, B> Service<ServiceRequest> for ClientRateLimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        if let Err(refusal) = self.admit(&request) {
            let response = request
                .into_response(refusal.error_response())
                .map_into_right_body();
            return Box::pin(ready(Ok(response)));
        }
        let call = self.service.call(request);
        Box::pin(async move { Ok(call.await?.map_into_left_body()) })
    }
}

impl<S> ClientRateLimitService<S> {
    fn admit(&self, request: &ServiceRequest) -> Result<(), ApiError> {
        if UNLIMITED_PATHS.contains(&request.path()) {
            return Ok(());
        }
        let client = client_ip(
            request.peer_addr(),
            request.headers(),
            &self.state.edge.config.trusted_proxies,
        );
        self.state.check_client_ip_rate(client)
    }
}

#[cfg(test)]
mod tests;
