//! The vendor HTTP API of loyalty-ledger: actix-web handlers that parse requests into ledger
//! commands, send them to the group-commit writer, and answer with what was decided.
//!
//! Reading order:
//! 1. this file: [`ApiState`], [`serve`] and the route table;
//! 2. [`problem`]: the one error type and every status the API answers with;
//! 3. [`auth`] (who is calling: API key or access token, role, correlation id),
//!    [`idempotency`] (the key and the request fingerprint), `body` (content type, size
//!    limit, JSON read field by field);
//! 4. the endpoints: [`purchases`], [`customers`] (enrol, find, list, balance),
//!    [`rewards`] (the catalogue), [`redemptions`] (points or a reward, and fulfilment by
//!    code), [`history`], [`personal`] (export and erasure of personal data);
//! 5. [`commands`] (submitting to the writer) and [`render`] (the responses the writer stores
//!    under idempotency keys);
//! 6. `ops` (`/health`, `/ready`, `/metrics`) and [`metrics`]; [`openapi`] (the OpenAPI
//!    document, generated from the handlers' annotations, at `/openapi.json`);
//! 7. the edge middleware: [`edge`] (rate limits per client IP and per principal, the
//!    client address behind trusted proxies), [`rate_limit`] (the limiter), [`cors`] and
//!    [`security_headers`];
//! 8. [`broadcasts`]: a template to a segment of customers, its progress, pause and resume;
//! 9. accounts: [`accounts`] (signup, login, refresh, logout, invitations, `/v1/me`),
//!    [`jwt`], [`passwords`], [`login_limiter`], [`users`], [`api_keys`].
//!
//! Architecture invariants:
//! - Every query and command is scoped to the caller's tenant, taken from its API key or
//!   access token; a client never names a tenant, and another tenant's customer, user or key
//!   is indistinguishable from an unknown one (404).
//! - Every handler behind authentication calls `caller.authorize(Permission)` first.
//! - Command responses are computed from the decision just made (read-your-writes), never
//!   from a projection; only `GET /v1/customers/{id}` reads the balances read model.
//! - No client input produces a 500 or a panic: every error is an RFC 9457 problem.
//! - Phone numbers and names are sealed (vault) before they leave this crate and opened only
//!   to answer the tenant that holds them; they, API keys, passwords and tokens are never logged.
//! - Every read runs in a transaction scoped to the caller's tenant: row-level security in
//!   PostgreSQL hides every other tenant's rows even from a query that forgot to filter.
//! - This crate knows HTTP; SQL stays in `schema`, except the few read-model queries of
//!   `customers` and the ownership look-up of `commands`.

pub mod accounts;
pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod auth;
mod body;
pub mod books;
pub mod broadcasts;
mod cache;
pub mod commands;
pub mod cors;
pub mod customers;
pub mod dry_run;
pub mod edge;
pub mod history;
pub mod idempotency;
pub mod jwt;
pub mod login_limiter;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod passwords;
pub mod personal;
pub mod problem;
pub mod programme;
pub mod purchases;
pub mod rate_limit;
pub mod redemptions;
pub mod render;
pub mod rewards;
pub mod rules;
pub mod security_headers;
pub mod users;
pub mod whatsapp;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer};
use problem::ApiError;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

/// How long in-flight requests get to finish after the server is told to stop.
pub const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;

/// What every handler shares: the pool, the writer, and the in-memory caches and metrics.
pub struct ApiState {
    pub pool: schema::Pool,
    pub writer: schema::WriterHandle,
    /// Whether the NATS connection is up, for `/ready`.
    pub nats_ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Largest request body accepted; larger ones are refused with 413 before being buffered.
    pub body_bytes_max: usize,
    /// The keys that seal and open customers' personal data and blind-index phone numbers.
    pub vault: Arc<vault::Vault>,
    api_keys: auth::ApiKeyCache,
    user_statuses: auth::UserStatusCache,
    /// Keys whose `last_used_at` this process wrote recently.
    key_uses: cache::BoundedCache<uuid::Uuid, ()>,
    login_limiter: login_limiter::LoginLimiter,
    accounts: accounts::AccountsConfig,
    metrics: Arc<metrics::Metrics>,
    /// Rate limits, trusted proxies and CORS origins; set with [`ApiState::with_edge`].
    edge: edge::EdgeState,
    /// The platform's shared WhatsApp number, refused to `PUT /v1/whatsapp/number` even
    /// before the processor has seeded it; set with [`ApiState::with_shared_whatsapp_number`].
    shared_whatsapp_number: Option<String>,
    /// The public half of the platform's audit key, `(key id, base64)`, served at
    /// `/.well-known/loyalty-ledger/audit-keys`; set with [`ApiState::with_audit_public_key`].
    audit_public_key: Option<(String, String)>,
}

impl ApiState {
    pub fn new(
        pool: schema::Pool,
        writer: schema::WriterHandle,
        nats_ready: Arc<dyn Fn() -> bool + Send + Sync>,
        body_bytes_max: usize,
        vault: Arc<vault::Vault>,
    ) -> Self {
        ApiState {
            pool,
            writer,
            nats_ready,
            body_bytes_max,
            vault,
            api_keys: cache::BoundedCache::new(
                Some(auth::AUTH_CACHE_TTL_DEFAULT),
                auth::AUTH_CACHE_ENTRIES_MAX,
            ),
            user_statuses: cache::BoundedCache::new(
                Some(auth::AUTH_CACHE_TTL_DEFAULT),
                auth::AUTH_CACHE_ENTRIES_MAX,
            ),
            key_uses: cache::BoundedCache::new(
                Some(auth::LAST_USED_WRITE_INTERVAL),
                auth::AUTH_CACHE_ENTRIES_MAX,
            ),
            login_limiter: login_limiter::LoginLimiter::default(),
            accounts: accounts::AccountsConfig::default(),
            metrics: Arc::new(metrics::Metrics::default()),
            edge: edge::EdgeState::new(edge::EdgeConfig::default()),
            shared_whatsapp_number: None,
            audit_public_key: None,
        }
    }

    /// The shared number's `phone_number_id`: no tenant may register it as its own (the
    /// database refuses it too once the processor has seeded it; this closes the moment
    /// before).
    pub fn with_audit_public_key(mut self, key_id: String, public_key_base64: String) -> Self {
        self.audit_public_key = Some((key_id, public_key_base64));
        self
    }

    pub fn with_shared_whatsapp_number(mut self, phone_number_id: impl Into<String>) -> Self {
        self.shared_whatsapp_number = Some(phone_number_id.into());
        self
    }

    /// Sets the accounts configuration: the JWT keys (without which no user can log in), the
    /// auth cache TTL and the login limiter's policy.
    pub fn with_accounts(mut self, config: accounts::AccountsConfig) -> Self {
        let ttl = Some(config.auth_cache_ttl);
        self.api_keys = cache::BoundedCache::new(ttl, auth::AUTH_CACHE_ENTRIES_MAX);
        self.user_statuses = cache::BoundedCache::new(ttl, auth::AUTH_CACHE_ENTRIES_MAX);
        self.login_limiter = login_limiter::LoginLimiter::new(config.login_limiter);
        self.accounts = config;
        self
    }

    /// A pooled connection, or 503 when the database cannot be reached.
    async fn client(&self) -> Result<deadpool_postgres::Object, ApiError> {
        self.pool
            .get()
            .await
            .map_err(|e| ApiError::Unavailable(format!("no database connection: {e}")))
    }
}

/// Builds and starts the HTTP server on an already-bound listener (port 0 in tests).
///
/// Returns the running server: the caller awaits it (or spawns it) and stops it through
/// `server.handle().stop(true)`, which lets in-flight requests finish for up to
/// [`SHUTDOWN_TIMEOUT_SECONDS`]. The server installs no signal handlers of its own, so the
/// caller decides the order of shutdown (stop taking requests, then drain the writer).
/// Must be called inside a tokio (or actix) runtime.
pub fn serve(listener: TcpListener, state: ApiState, workers: usize) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || app(state.clone()))
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
        .listen(listener)?
        .run();
    Ok(server)
}

/// The application: shared state, extractor error handlers that answer with problems, the
/// request metrics, the routes, and a 404 problem for every other path. Middleware, from the
/// outside in: security headers, CORS, request metrics, the per-IP rate limit.
fn app(
    state: web::Data<ApiState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = Arc::clone(&state.metrics);
    let client_rate_limit = edge::ClientRateLimit::new(state.clone());
    let cors = cors::Cors::new(&state.edge_config().cors_origins);
    App::new()
        .app_data(web::PayloadConfig::new(state.body_bytes_max))
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::RouteNotFound.into()))
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            ApiError::InvalidQuery {
                parameter: "query".into(),
                detail: format!("the query string is invalid: {error}"),
            }
            .into()
        }))
        .wrap(client_rate_limit)
        .wrap_fn(move |request, service| {
            let metrics = Arc::clone(&metrics);
            let started = Instant::now();
            let response = service.call(request);
            async move {
                let response = response.await;
                let status = match &response {
                    Ok(response) => response.status(),
                    Err(error) => error.as_response_error().status_code(),
                };
                metrics.observe_request(status, started.elapsed());
                response
            }
        })
        .wrap_fn(|request, service| {
            // The correlation id of every request: the client's when it sent a UUID, else a
            // new one; recorded in events by `Caller::submission` and echoed to the client.
            let correlation_id = auth::CorrelationId::from_headers(request.headers());
            request.extensions_mut().insert(correlation_id);
            let response = service.call(request);
            async move {
                let mut response = response.await?;
                if let Ok(value) = HeaderValue::from_str(&correlation_id.0.to_string()) {
                    response.headers_mut().insert(
                        HeaderName::from_static(auth::CORRELATION_ID_RESPONSE_HEADER),
                        value,
                    );
                }
                Ok(response)
            }
        })
        .wrap(cors)
        .wrap(security_headers::SecurityHeaders)
        .configure(routes)
        .default_service(web::to(route_not_found))
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the operators' probes and the API description.
    Public,
    /// A vendor system with an API key (`Authorization: Bearer ll_…`); the handler takes an
    /// [`auth::Caller`].
    Vendor,
}

/// One route of the server: a method on a path, who may call it, and its handler.
pub struct RouteSpec {
    pub method: Method,
    /// In actix's `{name}` syntax, which is also OpenAPI's path-template syntax.
    pub path: &'static str,
    pub access: Access,
    handler: fn() -> actix_web::Route,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    handler: fn() -> actix_web::Route,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        handler,
    }
}

/// Every route the server answers: [`routes`] registers exactly these, and the tests check
/// that the OpenAPI document ([`openapi`]) describes exactly these. Order matters where
/// paths overlap: actix tries resources in the order of first appearance, so a literal
/// segment (`/v1/customers/search`) comes before a template (`/v1/customers/{customer_id}`).
///
/// To add a route: add its line here, annotate its handler with `#[utoipa::path(...)]`, and
/// list the handler in `paths(...)` of [`openapi::ApiDoc`].
pub fn route_table() -> Vec<RouteSpec> {
    use Access::{Public, Vendor};
    vec![
        route(Method::GET, "/health", Public, || web::to(ops::health)),
        route(Method::GET, "/ready", Public, || web::to(ops::ready)),
        route(Method::GET, "/metrics", Public, || web::to(ops::metrics)),
        route(
            Method::GET,
            "/.well-known/loyalty-ledger/audit-keys",
            Public,
            || web::to(ops::audit_keys),
        ),
        route(Method::GET, "/openapi.json", Public, || {
            web::to(openapi::openapi_json)
        }),
        route(Method::POST, "/v1/customers", Vendor, || {
            web::to(customers::enrol)
        }),
        route(Method::GET, "/v1/customers", Vendor, || {
            web::to(customers::list)
        }),
        route(Method::POST, "/v1/customers/search", Vendor, || {
            web::to(customers::search)
        }),
        route(Method::POST, "/v1/purchases", Vendor, || {
            web::to(purchases::log_purchase)
        }),
        route(Method::GET, "/v1/customers/{customer_id}", Vendor, || {
            web::to(customers::show)
        }),
        route(
            Method::PUT,
            "/v1/customers/{customer_id}/birthday",
            Vendor,
            || web::to(customers::set_birthday),
        ),
        route(
            Method::GET,
            "/v1/customers/{customer_id}/history",
            Vendor,
            || web::to(history::history),
        ),
        route(
            Method::POST,
            "/v1/customers/{customer_id}/redemptions",
            Vendor,
            || web::to(redemptions::redeem),
        ),
        route(Method::POST, "/v1/rewards", Vendor, || {
            web::to(rewards::create)
        }),
        route(Method::GET, "/v1/rewards", Vendor, || {
            web::to(rewards::list)
        }),
        route(Method::PUT, "/v1/rewards/{reward_id}", Vendor, || {
            web::to(rewards::update)
        }),
        route(
            Method::POST,
            "/v1/rewards/{reward_id}/retire",
            Vendor,
            || web::to(rewards::retire),
        ),
        route(
            Method::POST,
            "/v1/redemptions/{code}/fulfil",
            Vendor,
            || web::to(redemptions::fulfil),
        ),
        route(
            Method::POST,
            "/v1/redemptions/{code}/cancel",
            Vendor,
            || web::to(programme::cancel_hold),
        ),
        route(
            Method::POST,
            "/v1/customers/{customer_id}/refunds",
            Vendor,
            || web::to(programme::refund),
        ),
        route(
            Method::POST,
            "/v1/customers/{customer_id}/adjustments",
            Vendor,
            || web::to(programme::adjust),
        ),
        route(Method::GET, "/v1/programme/settings", Vendor, || {
            web::to(programme::get_settings)
        }),
        route(Method::PUT, "/v1/programme/settings", Vendor, || {
            web::to(programme::put_settings)
        }),
        route(Method::GET, "/v1/tiers", Vendor, || {
            web::to(programme::get_tiers)
        }),
        route(Method::PUT, "/v1/tiers", Vendor, || {
            web::to(programme::put_tiers)
        }),
        route(
            Method::GET,
            "/v1/customers/{customer_id}/export",
            Vendor,
            || web::to(personal::export),
        ),
        route(
            Method::POST,
            "/v1/customers/{customer_id}/erasure",
            Vendor,
            || web::to(personal::erase),
        ),
        route(Method::GET, "/v1/books/position", Vendor, || {
            web::to(books::position)
        }),
        route(Method::GET, "/v1/books/statements", Vendor, || {
            web::to(books::statements)
        }),
        route(
            Method::GET,
            "/v1/customers/{customer_id}/position",
            Vendor,
            || web::to(books::customer_position),
        ),
        route(Method::GET, "/v1/rules", Vendor, || web::to(rules::show)),
        route(Method::PUT, "/v1/rules", Vendor, || web::to(rules::publish)),
        route(Method::POST, "/v1/rules/dry-run", Vendor, || {
            web::to(dry_run::dry_run)
        }),
        route(Method::GET, "/v1/analytics/daily", Vendor, || {
            web::to(analytics::daily)
        }),
        route(
            Method::GET,
            "/v1/analytics/active-customers",
            Vendor,
            || web::to(analytics::active_customers),
        ),
        route(Method::GET, "/v1/analytics/rewards", Vendor, || {
            web::to(analytics::rewards)
        }),
        route(Method::GET, "/v1/analytics/cohorts", Vendor, || {
            web::to(analytics::cohorts)
        }),
        route(Method::GET, "/v1/analytics/tiers", Vendor, || {
            web::to(analytics::tiers)
        }),
        route(Method::GET, "/v1/analytics/redemption-rate", Vendor, || {
            web::to(analytics::redemption_rate)
        }),
        route(Method::GET, "/v1/analytics/whatsapp", Vendor, || {
            web::to(analytics::whatsapp)
        }),
        route(Method::GET, "/v1/audit/export", Vendor, || {
            web::to(audit::export)
        }),
        route(Method::POST, "/v1/signup", Public, || {
            web::to(accounts::signup)
        }),
        route(Method::POST, "/v1/auth/login", Public, || {
            web::to(accounts::login)
        }),
        route(Method::POST, "/v1/auth/refresh", Public, || {
            web::to(accounts::refresh)
        }),
        route(Method::POST, "/v1/auth/logout", Public, || {
            web::to(accounts::logout)
        }),
        route(Method::GET, "/v1/me", Vendor, || web::to(accounts::me)),
        route(Method::POST, "/v1/invitations/accept", Public, || {
            web::to(accounts::accept_invitation)
        }),
        route(Method::POST, "/v1/users", Vendor, || web::to(users::create)),
        route(Method::GET, "/v1/users", Vendor, || web::to(users::list)),
        route(Method::POST, "/v1/users/{user_id}/disable", Vendor, || {
            web::to(users::disable)
        }),
        route(Method::POST, "/v1/api-keys", Vendor, || {
            web::to(api_keys::create)
        }),
        route(Method::GET, "/v1/api-keys", Vendor, || {
            web::to(api_keys::list)
        }),
        route(Method::DELETE, "/v1/api-keys/{api_key_id}", Vendor, || {
            web::to(api_keys::revoke)
        }),
        route(Method::PUT, "/v1/whatsapp/number", Vendor, || {
            web::to(whatsapp::put)
        }),
        route(Method::GET, "/v1/whatsapp/number", Vendor, || {
            web::to(whatsapp::get)
        }),
        route(Method::DELETE, "/v1/whatsapp/number", Vendor, || {
            web::to(whatsapp::detach)
        }),
        route(Method::POST, "/v1/broadcasts", Vendor, || {
            web::to(broadcasts::create)
        }),
        route(Method::GET, "/v1/broadcasts", Vendor, || {
            web::to(broadcasts::list)
        }),
        route(Method::GET, "/v1/broadcasts/{broadcast_id}", Vendor, || {
            web::to(broadcasts::show)
        }),
        route(
            Method::GET,
            "/v1/broadcasts/{broadcast_id}/recipients",
            Vendor,
            || web::to(broadcasts::recipients),
        ),
        route(
            Method::POST,
            "/v1/broadcasts/{broadcast_id}/pause",
            Vendor,
            || web::to(broadcasts::pause),
        ),
        route(
            Method::POST,
            "/v1/broadcasts/{broadcast_id}/resume",
            Vendor,
            || web::to(broadcasts::resume),
        ),
        route(
            Method::POST,
            "/v1/broadcasts/{broadcast_id}/cancel",
            Vendor,
            || web::to(broadcasts::cancel),
        ),
    ]
}

/// Registers [`route_table`]: one resource per path, in the table's order, with a route per
/// method. Each resource answers other methods with a 405 problem.
fn routes(config: &mut web::ServiceConfig) {
    let table = route_table();
    let mut paths: Vec<&'static str> = Vec::new();
    for spec in &table {
        if !paths.contains(&spec.path) {
            paths.push(spec.path);
        }
    }
    for path in paths {
        let resource = table
            .iter()
            .filter(|spec| spec.path == path)
            .fold(resource(path), |resource, spec| {
                resource.route((spec.handler)().method(spec.method.clone()))
            });
        config.service(resource);
    }
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn route_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// A transaction scoped to one tenant (`schema::tenancy::begin`): row-level security hides
/// every other tenant's rows, whatever the queries in it say. Every tenant-facing read and
/// write outside the group-commit writer starts here.
pub(crate) async fn scoped(
    client: &mut deadpool_postgres::Client,
    tenant_id: ledger_core::TenantId,
) -> Result<deadpool_postgres::Transaction<'_>, ApiError> {
    schema::tenancy::begin(client, tenant_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("beginning a scoped transaction: {e}")))
}

/// The tenant's profile, rule sets and catalogue, folded from its stream in `transaction`.
pub(crate) async fn read_tenant(
    transaction: &deadpool_postgres::Transaction<'_>,
    tenant_id: ledger_core::TenantId,
) -> Result<ledger_core::TenantState, ApiError> {
    schema::rewards::tenant_state(&**transaction, tenant_id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the tenant stream: {e}")))
}

#[cfg(test)]
mod tests;
