//! The edge middleware through the whole application (`app()`), without a database: the
//! pool points at a closed port, so a request that gets as far as Postgres answers 503.

use super::*;
use crate::auth::CachedKey;
use crate::problem::PROBLEM_CONTENT_TYPE;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use schema::{DbSettings, WriterConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "ll_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const DASHBOARD: &str = "https://dashboard.example.com";
const API_KEY_ID: Uuid = Uuid::from_u128(3);

fn state(edge: EdgeConfig) -> web::Data<ApiState> {
    let pool = schema::db::pool(&DbSettings {
        url: "postgres://nobody@127.0.0.1:1/nowhere".into(),
        pool_size_max: 2,
        login_role: None,
    })
    .expect("a pool builds without connecting");
    let config = WriterConfig {
        batch_size_max: 8,
        batch_wait_max: Duration::from_micros(100),
        queue_capacity: 8,
        cached_streams_max: 8,
    };
    let (writer, _task) =
        schema::writer::spawn(pool.clone(), config, Arc::new(tokio::sync::Notify::new()));
    let state = ApiState::new(
        pool,
        writer,
        Arc::new(|| false),
        1024,
        crate::tests::test_vault(),
    )
    .with_edge(edge);
    let key = CachedKey {
        tenant_id: ledger_core::TenantId::from_uuid(Uuid::from_u128(1)),
        api_key_id: API_KEY_ID,
        role: schema::accounts::Role::Staff,
    };
    state
        .api_keys
        .insert(schema::api_keys::hash_key(KEY), key, Instant::now());
    web::Data::new(state)
}

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::new(per_second, burst).unwrap()
}

fn with_origins() -> EdgeConfig {
    EdgeConfig {
        cors_origins: vec![CorsOrigin::parse(DASHBOARD).unwrap()],
        ..EdgeConfig::default()
    }
}

fn peer(address: &str) -> SocketAddr {
    SocketAddr::new(address.parse().unwrap(), 40_000)
}

fn preflight(origin: &str, method: &str, headers: &str) -> TestRequest {
    TestRequest::default()
        .method(Method::OPTIONS)
        .uri("/v1/purchases")
        .insert_header((header::ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, method))
        .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, headers))
}

fn header_text(response: &ServiceResponse<impl MessageBody>, name: HeaderName) -> Option<&str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

fn has_cors_headers(response: &ServiceResponse<impl MessageBody>) -> bool {
    response
        .headers()
        .keys()
        .any(|name| name.as_str().starts_with("access-control-"))
}

/// Checks the response is a problem with this status and slug; returns its body.
async fn assert_problem(
    response: ServiceResponse<impl MessageBody>,
    status: u16,
    slug: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        header_text(&response, header::CONTENT_TYPE),
        Some(PROBLEM_CONTENT_TYPE)
    );
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body["type"],
        format!("https://loyalty-ledger.dev/problems/{slug}")
    );
    assert_eq!(body["status"], status);
    body
}

fn assert_security_headers(response: &ServiceResponse<impl MessageBody>) {
    let expected = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::CROSS_ORIGIN_RESOURCE_POLICY, "same-origin"),
    ];
    for (name, value) in expected {
        assert_eq!(
            header_text(response, name.clone()),
            Some(value),
            "{name} on a {}",
            response.status()
        );
    }
    assert!(!response.headers().contains_key(header::SERVER));
}

#[actix_web::test]
async fn every_answer_carries_the_security_headers() {
    let app = test::init_service(crate::app(state(EdgeConfig {
        client_ip_quota: quota(1, 6),
        ..EdgeConfig::default()
    })))
    .await;
    let from = peer("192.0.2.1");
    let requests = [
        (TestRequest::get().uri("/health"), 200),
        (TestRequest::get().uri("/v2/nothing"), 404),
        (TestRequest::get().uri("/v1/purchases"), 405),
        // An extractor's refusal (no API key).
        (TestRequest::post().uri("/v1/purchases"), 401),
        (
            TestRequest::post()
                .uri("/v1/purchases")
                .insert_header((header::AUTHORIZATION, format!("Bearer {KEY}")))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .insert_header(("Idempotency-Key", "k"))
                .set_payload(vec![b' '; 2048]),
            413,
        ),
        (TestRequest::get().uri("/v2/nothing"), 404),
        (TestRequest::get().uri("/v2/nothing"), 404),
        (TestRequest::get().uri("/v2/nothing"), 429),
        (preflight("https://elsewhere.example", "POST", ""), 403),
    ];
    for (request, status) in requests {
        let response = test::call_service(&app, request.peer_addr(from).to_request()).await;
        assert_eq!(response.status().as_u16(), status);
        assert_security_headers(&response);
    }
}

#[test]
fn a_cache_control_chosen_by_a_handler_is_kept() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    headers.insert(header::SERVER, HeaderValue::from_static("actix"));
    crate::security_headers::add_security_headers(&mut headers);
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "max-age=60");
    assert!(!headers.contains_key(header::SERVER));
}

#[actix_web::test]
async fn an_allowed_origin_gets_cors_headers_and_its_preflight_is_answered() {
    let app = test::init_service(crate::app(state(with_origins()))).await;

    let simple = TestRequest::get()
        .uri("/health")
        .insert_header((header::ORIGIN, DASHBOARD));
    let response = test::call_service(&app, simple.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_text(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(DASHBOARD)
    );
    assert_eq!(
        header_text(&response, header::ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("Retry-After, Idempotent-Replayed")
    );
    assert_eq!(header_text(&response, header::VARY), Some("Origin"));
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

    let request = preflight(
        DASHBOARD,
        "POST",
        "authorization, Content-Type,idempotency-key",
    );
    let response = test::call_service(&app, request.to_request()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, DASHBOARD),
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, POST, PUT, DELETE, PATCH, OPTIONS",
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type, Idempotency-Key",
        ),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
    ] {
        assert_eq!(header_text(&response, name.clone()), Some(value), "{name}");
    }
    assert_security_headers(&response);
}

#[actix_web::test]
async fn a_disallowed_origin_gets_no_cors_headers_and_its_preflight_is_refused() {
    let app = test::init_service(crate::app(state(with_origins()))).await;

    let simple = TestRequest::get()
        .uri("/health")
        .insert_header((header::ORIGIN, "https://evil.example"));
    let response = test::call_service(&app, simple.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!has_cors_headers(&response));

    let refused = [
        preflight("https://evil.example", "POST", ""),
        preflight("https://dashboard.example.com.evil.example", "GET", ""),
        // An allowed origin asking for a method or a header that is not allowed.
        preflight(DASHBOARD, "TRACE", ""),
        preflight(DASHBOARD, "POST", "authorization, x-debug"),
    ];
    for request in refused {
        let response = test::call_service(&app, request.to_request()).await;
        assert!(!has_cors_headers(&response));
        assert_problem(response, 403, "cors-preflight-refused").await;
    }
}

#[actix_web::test]
async fn without_configured_origins_there_is_no_cors_at_all() {
    let app = test::init_service(crate::app(state(EdgeConfig::default()))).await;

    let simple = TestRequest::get()
        .uri("/health")
        .insert_header((header::ORIGIN, DASHBOARD));
    let response = test::call_service(&app, simple.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!has_cors_headers(&response));
    assert!(!response.headers().contains_key(header::VARY));

    let response = test::call_service(&app, preflight(DASHBOARD, "GET", "").to_request()).await;
    assert!(!has_cors_headers(&response));
    assert_problem(response, 403, "cors-preflight-refused").await;
}

#[actix_web::test]
async fn over_the_client_ip_limit_is_429_with_retry_after() {
    let app = test::init_service(crate::app(state(EdgeConfig {
        client_ip_quota: quota(1, 2),
        ..EdgeConfig::default()
    })))
    .await;
    let limited = peer("203.0.113.7");
    let get =
        |path: &str, from: SocketAddr| TestRequest::get().uri(path).peer_addr(from).to_request();
    for _ in 0..2 {
        let response = test::call_service(&app, get("/v2/nothing", limited)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let response = test::call_service(&app, get("/v2/nothing", limited)).await;
    assert_eq!(header_text(&response, header::RETRY_AFTER), Some("1"));
    let problem = assert_problem(response, 429, "rate-limited").await;
    assert_eq!(problem["retry_after_seconds"], 1);

    // Health checks are exempt; another address has its own quota.
    for path in ["/health", "/ready", "/health"] {
        let response = test::call_service(&app, get(path, limited)).await;
        assert_ne!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    let response = test::call_service(&app, get("/v2/nothing", peer("203.0.113.8"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn over_the_principal_limit_is_429_after_authentication() {
    let app = test::init_service(crate::app(state(EdgeConfig {
        principal_quota: quota(1, 1),
        ..EdgeConfig::default()
    })))
    .await;
    let show = || {
        TestRequest::get()
            .uri(&format!("/v1/customers/{}", Uuid::from_u128(2)))
            .insert_header((header::AUTHORIZATION, format!("Bearer {KEY}")))
            .to_request()
    };
    // The first request is let through (and finds the database down).
    let response = test::call_service(&app, show()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = test::call_service(&app, show()).await;
    assert_eq!(header_text(&response, header::RETRY_AFTER), Some("1"));
    assert_problem(response, 429, "rate-limited").await;
    // An unauthenticated request is refused as such, not counted against the key.
    let anonymous = TestRequest::get().uri("/v1/customers/x").to_request();
    let response = test::call_service(&app, anonymous).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn x_forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    let app = test::init_service(crate::app(state(EdgeConfig {
        client_ip_quota: quota(1, 1),
        trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
        ..EdgeConfig::default()
    })))
    .await;
    let get = |from: &str, forwarded_for: &str| {
        TestRequest::get()
            .uri("/v2/nothing")
            .peer_addr(peer(from))
            .insert_header(("X-Forwarded-For", forwarded_for))
            .to_request()
    };
    let status = |response: ServiceResponse<_>| response.status().as_u16();

    // Behind the trusted proxy, each forwarded client has its own quota.
    assert_eq!(
        status(test::call_service(&app, get("10.0.0.1", "198.51.100.1")).await),
        404
    );
    assert_eq!(
        status(test::call_service(&app, get("10.0.0.1", "198.51.100.2")).await),
        404
    );
    assert_eq!(
        status(test::call_service(&app, get("10.0.0.1", "198.51.100.1")).await),
        429
    );
    // A client cannot escape by prepending addresses: the right-most untrusted one counts.
    assert_eq!(
        status(test::call_service(&app, get("10.0.0.1", "192.0.2.50, 198.51.100.2")).await),
        429
    );
    // From an untrusted peer the header is ignored: the peer is the client.
    assert_eq!(
        status(test::call_service(&app, get("192.0.2.9", "198.51.100.3")).await),
        404
    );
    assert_eq!(
        status(test::call_service(&app, get("192.0.2.9", "198.51.100.4")).await),
        429
    );
    // A malformed header from the proxy counts against the proxy's own address.
    assert_eq!(
        status(test::call_service(&app, get("10.0.0.1", "not an address")).await),
        404
    );
    assert_eq!(
        status(test::call_service(&app, get("10.0.0.1", "198.51.100.9, ???")).await),
        429
    );
}

#[test]
fn the_client_is_the_right_most_untrusted_forwarded_address() {
    let trusted: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "2001:db8::1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let cases: [(&str, &[&str], &str); 14] = [
        ("192.0.2.9", &["198.51.100.1"], "192.0.2.9"),
        ("10.0.0.1", &[], "10.0.0.1"),
        ("10.0.0.1", &["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", &["203.0.113.5, 198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", &["198.51.100.1, 10.0.0.2"], "198.51.100.1"),
        ("10.0.0.1", &["203.0.113.5", "198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", &["198.51.100.1:5678"], "198.51.100.1"),
        ("10.0.0.1", &["[2001:db8::7]:443"], "2001:db8::7"),
        ("10.0.0.1", &["::ffff:198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", &["10.0.0.2, 10.0.0.1"], "10.0.0.1"),
        ("10.0.0.1", &["garbage"], "10.0.0.1"),
        ("10.0.0.1", &["198.51.100.1, "], "198.51.100.1"),
        ("10.0.0.1", &["198.51.100.1, unknown"], "10.0.0.1"),
        ("::ffff:10.0.0.1", &["198.51.100.1"], "198.51.100.1"),
    ];
    for (from, forwarded_for, expected) in cases {
        let mut headers = HeaderMap::new();
        for line in forwarded_for {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(line).unwrap(),
            );
        }
        let expected: IpAddr = expected.parse().unwrap();
        assert_eq!(
            client_ip(Some(peer(from)), &headers, &trusted),
            expected,
            "{from} {forwarded_for:?}"
        );
    }
    assert_eq!(
        client_ip(None, &HeaderMap::new(), &trusted),
        IpAddr::from(Ipv6Addr::UNSPECIFIED)
    );
}

#[test]
fn ipv6_clients_are_limited_per_slash_64() {
    let key = |address: &str| rate_limit_key(address.parse().unwrap());
    assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
}
