//! Vendor accounts against the real server: signup, login, the failed-login limiter,
//! refresh-token rotation and theft detection, logout, invitations, roles, disabling users,
//! API keys, tenant isolation, bad input and forged tokens.

use crate::helpers::{admin_client, dbname, unique_vendor_code, wait_for, TestApp};
use ledger_api::jwt::{Claims, JwtKeys};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

struct Answer {
    status: u16,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    /// Asserts a problem with this status and slug; returns it.
    fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
        let problem = self.json();
        assert_eq!(
            problem["type"],
            format!("https://loyalty-ledger.dev/problems/{slug}"),
            "{problem}"
        );
        problem
    }

    fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
        if self.bytes.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the request is sent");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.expect("a body").to_vec(),
    }
}

async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: &Value) -> Answer {
    let mut request = app.http.post(app.url(path)).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    send(request).await
}

async fn get(app: &TestApp, path: &str, bearer: &str) -> Answer {
    send(app.http.get(app.url(path)).bearer_auth(bearer)).await
}

async fn delete(app: &TestApp, path: &str, bearer: &str) -> Answer {
    send(app.http.delete(app.url(path)).bearer_auth(bearer)).await
}

fn email() -> String {
    format!("owner-{}@example.com", Uuid::new_v4().simple())
}

/// Signs up a new tenant; returns the 201 body.
async fn signup(app: &TestApp, owner_email: &str) -> Value {
    post(
        app,
        "/v1/signup",
        None,
        &json!({
            "vendor_code": unique_vendor_code(),
            "business_name": "Mama Put Kitchen",
            "owner_email": owner_email,
            "owner_password": PASSWORD,
        }),
    )
    .await
    .ok(201)
}

async fn login(app: &TestApp, email: &str, password: &str) -> Answer {
    post(
        app,
        "/v1/auth/login",
        None,
        &json!({ "email": email, "password": password }),
    )
    .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Answer {
    post(
        app,
        "/v1/auth/refresh",
        None,
        &json!({ "refresh_token": refresh_token }),
    )
    .await
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
        .to_owned()
}

/// Invites a user with `role` as `owner_token` and accepts; returns (user id, session body).
async fn invited_user(app: &TestApp, owner_token: &str, role: &str) -> (String, String, Value) {
    let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
    let invited = post(
        app,
        "/v1/users",
        Some(owner_token),
        &json!({ "email": email, "role": role, "display_name": "Ada" }),
    )
    .await
    .ok(201);
    let token = text(&invited["invitation"], "token");
    let session = post(
        app,
        "/v1/invitations/accept",
        None,
        &json!({ "token": token, "password": PASSWORD }),
    )
    .await
    .ok(200);
    (text(&invited, "user_id"), email, session)
}

async fn create_key(app: &TestApp, owner_token: &str, role: &str) -> Value {
    post(
        app,
        "/v1/api-keys",
        Some(owner_token),
        &json!({ "label": format!("{role} key"), "role": role }),
    )
    .await
    .ok(201)
}

async fn count(app: &TestApp, table: &str) -> i64 {
    admin_client(&dbname(&app.database_url))
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn signup_then_login_then_me() {
    let app = TestApp::spawn().await;
    let owner_email = email();
    let signed_up = signup(&app, &owner_email.to_uppercase()).await;
    assert_eq!(signed_up["token_type"], "Bearer");
    assert_eq!(signed_up["expires_in"], 900);
    assert_eq!(signed_up["role"], "owner");
    assert!(text(&signed_up, "refresh_token").starts_with("lr_"));
    let vendor_code = text(&signed_up, "vendor_code");
    assert_eq!(vendor_code, vendor_code.to_uppercase());

    // The tenant was registered on the ledger in the same transaction.
    let tenant_id = Uuid::parse_str(&text(&signed_up, "tenant_id")).unwrap();
    let registered: i64 = admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = 'TenantRegistered'",
            &[&tenant_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(registered, 1);

    let session = login(&app, &owner_email, PASSWORD).await.ok(200);
    assert_eq!(session["expires_in"], 900);
    let correlation_id = Uuid::now_v7();
    let me = send(
        app.http
            .get(app.url("/v1/me"))
            .bearer_auth(text(&session, "access_token"))
            .header("X-Request-Id", correlation_id.to_string()),
    )
    .await;
    assert_eq!(
        me.headers["x-correlation-id"].to_str().unwrap(),
        correlation_id.to_string(),
        "a client's UUID is echoed"
    );
    let me = me.ok(200);
    assert_eq!(me["kind"], "user");
    assert_eq!(me["id"], signed_up["user_id"]);
    assert_eq!(me["tenant_id"], signed_up["tenant_id"]);
    assert_eq!(me["role"], "owner");

    // The tenant's first API key (from the CLI path) is a staff key.
    let me = get(&app, "/v1/me", &app.api_key).await.ok(200);
    assert_eq!(me["kind"], "api_key");
    assert_eq!(me["role"], "staff");
    assert_eq!(me["tenant_id"], app.tenant_id.to_string());

    // The vendor code and the email are taken, whatever their case; nothing is written.
    let tenants = count(&app, "tenants").await;
    let taken = post(
        &app,
        "/v1/signup",
        None,
        &json!({
            "vendor_code": vendor_code.to_lowercase(),
            "business_name": "Copycat",
            "owner_email": email(),
            "owner_password": PASSWORD,
        }),
    )
    .await;
    assert_eq!(
        taken.problem(409, "vendor-code-taken")["field"],
        "vendor_code"
    );
    let taken = post(
        &app,
        "/v1/signup",
        None,
        &json!({
            "vendor_code": unique_vendor_code(),
            "business_name": "Copycat",
            "owner_email": format!("  {owner_email}  "),
            "owner_password": PASSWORD,
        }),
    )
    .await;
    assert_eq!(taken.problem(409, "email-taken")["field"], "owner_email");
    assert_eq!(count(&app, "tenants").await, tenants);
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_look_alike_and_are_limited() {
    let app = TestApp::spawn().await;
    let owner_email = email();
    signup(&app, &owner_email).await;

    let wrong_password = login(&app, &owner_email, "not the password at all").await;
    let unknown_email = login(&app, &email(), PASSWORD).await;
    wrong_password.problem(401, "invalid-credentials");
    assert_eq!(
        wrong_password.bytes, unknown_email.bytes,
        "unknown email and wrong password are indistinguishable"
    );

    // Four more failures (five in all) lock the email, even for the right password.
    for _ in 0..4 {
        login(&app, &owner_email, "still not the password")
            .await
            .problem(401, "invalid-credentials");
    }
    let limited = login(&app, &owner_email, PASSWORD).await;
    limited.problem(429, "too-many-attempts");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    app.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let owner_email = email();
    let first = signup(&app, &owner_email).await;
    let first_refresh = text(&first, "refresh_token");

    let second = refresh(&app, &first_refresh).await.ok(200);
    let second_refresh = text(&second, "refresh_token");
    assert_ne!(first_refresh, second_refresh);
    get(&app, "/v1/me", &text(&second, "access_token"))
        .await
        .ok(200);

    // Replaying the used token is theft detection: it fails and burns the family, so the
    // newer token stops working too.
    refresh(&app, &first_refresh)
        .await
        .problem(401, "invalid-refresh-token");
    refresh(&app, &second_refresh)
        .await
        .problem(401, "invalid-refresh-token");

    // Another login is another family, unaffected; logout revokes it.
    let session = login(&app, &owner_email, PASSWORD).await.ok(200);
    let token = text(&session, "refresh_token");
    post(
        &app,
        "/v1/auth/logout",
        None,
        &json!({ "refresh_token": token }),
    )
    .await
    .ok(204);
    refresh(&app, &token)
        .await
        .problem(401, "invalid-refresh-token");

    // Unknown and malformed tokens.
    let unknown = format!("lr_{}", "0".repeat(64));
    refresh(&app, &unknown)
        .await
        .problem(401, "invalid-refresh-token");
    refresh(&app, "lr_short")
        .await
        .problem(401, "invalid-refresh-token");
    app.stop().await;
}

#[tokio::test]
async fn invitations_and_roles() {
    let app = TestApp::spawn().await;
    let owner = signup(&app, &email()).await;
    let owner_token = text(&owner, "access_token");

    let invited = post(
        &app,
        "/v1/users",
        Some(&owner_token),
        &json!({ "email": email(), "role": "staff" }),
    )
    .await
    .ok(201);
    let invitation = text(&invited["invitation"], "token");
    assert!(invitation.starts_with("li_"));
    let accept = |password: &str| {
        let body = json!({ "token": invitation, "password": password });
        let app = &app;
        async move { post(app, "/v1/invitations/accept", None, &body).await }
    };
    assert_eq!(
        accept("short").await.problem(422, "invalid-field")["field"],
        "password"
    );
    let staff_session = accept(PASSWORD).await.ok(200);
    assert_eq!(staff_session["role"], "staff");
    accept(PASSWORD).await.problem(404, "invitation-not-found");

    // The invited user logs in; staff may not manage users or keys.
    let staff_email = text(&invited, "email");
    let staff = login(&app, &staff_email, PASSWORD).await.ok(200);
    let staff_token = text(&staff, "access_token");
    post(
        &app,
        "/v1/users",
        Some(&staff_token),
        &json!({ "email": email(), "role": "staff" }),
    )
    .await
    .problem(403, "forbidden");
    post(
        &app,
        "/v1/api-keys",
        Some(&staff_token),
        &json!({ "label": "mine", "role": "staff" }),
    )
    .await
    .problem(403, "forbidden");
    get(&app, "/v1/users", &staff_token)
        .await
        .problem(403, "forbidden");

    // Keys never hold the owner role.
    let owner_key = post(
        &app,
        "/v1/api-keys",
        Some(&owner_token),
        &json!({ "label": "root", "role": "owner" }),
    )
    .await;
    assert_eq!(owner_key.problem(422, "invalid-field")["field"], "role");

    // Auditor and analyst keys cannot log purchases; the analyst cannot read history.
    let customer = Uuid::now_v7();
    let purchase = json!({ "customer_id": customer, "amount_minor": 1000 });
    for role in ["auditor", "analyst"] {
        let key = text(&create_key(&app, &owner_token, role).await, "api_key");
        let refused = send(
            app.http
                .post(app.url("/v1/purchases"))
                .bearer_auth(&key)
                .header("Idempotency-Key", Uuid::now_v7().to_string())
                .json(&purchase),
        )
        .await;
        refused.problem(403, "forbidden");
        let history = get(&app, &format!("/v1/customers/{customer}/history"), &key).await;
        if role == "auditor" {
            history.problem(404, "customer-not-found");
        } else {
            history.problem(403, "forbidden");
        }
        post(
            &app,
            "/v1/customers",
            Some(&key),
            &json!({ "phone": "+2348012345678" }),
        )
        .await
        .problem(403, "forbidden");
    }

    // The owner sees both users; the invited one is no longer pending.
    let users = get(&app, "/v1/users", &owner_token).await.ok(200);
    let users = users["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u["invitation_pending"] == false));
    app.stop().await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions() {
    let app = TestApp::spawn().await;
    let owner = signup(&app, &email()).await;
    let owner_token = text(&owner, "access_token");
    let (staff_id, staff_email, staff_session) = invited_user(&app, &owner_token, "staff").await;
    let staff_access = text(&staff_session, "access_token");
    get(&app, "/v1/me", &staff_access).await.ok(200);

    post(
        &app,
        &format!("/v1/users/{staff_id}/disable"),
        Some(&owner_token),
        &json!({}),
    )
    .await
    .ok(204);
    login(&app, &staff_email, PASSWORD)
        .await
        .problem(401, "invalid-credentials");
    refresh(&app, &text(&staff_session, "refresh_token"))
        .await
        .problem(401, "invalid-refresh-token");
    // The access token stops working within the auth cache TTL (1 s in tests).
    wait_for(
        Duration::from_secs(5),
        "the disabled user's access token to be refused",
        || async { get(&app, "/v1/me", &staff_access).await.status == 401 },
    )
    .await;

    // Owners cannot disable themselves; unknown ids are 404.
    let owner_id = text(&owner, "user_id");
    post(
        &app,
        &format!("/v1/users/{owner_id}/disable"),
        Some(&owner_token),
        &json!({}),
    )
    .await
    .problem(409, "cannot-disable-self");
    for id in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        post(
            &app,
            &format!("/v1/users/{id}/disable"),
            Some(&owner_token),
            &json!({}),
        )
        .await
        .problem(404, "user-not-found");
    }
    app.stop().await;
}

#[tokio::test]
async fn api_keys_are_listed_without_secrets_record_use_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    let owner = signup(&app, &email()).await;
    let owner_token = text(&owner, "access_token");
    let created = create_key(&app, &owner_token, "staff").await;
    let key = text(&created, "api_key");
    let key_id = text(&created, "api_key_id");
    assert!(key.starts_with("ll_"));

    let listed = get(&app, "/v1/api-keys", &owner_token).await;
    let body = String::from_utf8_lossy(&listed.bytes).to_string();
    assert!(!body.contains(&key[3..]), "the secret is never listed");
    assert!(!body.contains("hash"), "{body}");
    let listed = listed.ok(200);
    let entry = &listed["api_keys"][0];
    assert_eq!(entry["api_key_id"], key_id);
    assert_eq!(entry["role"], "staff");
    assert_eq!(entry["created_by"], owner["user_id"]);
    assert!(entry["last_used_at"].is_null());

    let me = get(&app, "/v1/me", &key).await.ok(200);
    assert_eq!(
        (me["kind"].as_str(), me["id"].as_str()),
        (Some("api_key"), Some(key_id.as_str()))
    );
    wait_for(
        Duration::from_secs(5),
        "last_used_at to be recorded",
        || async {
            let listed = get(&app, "/v1/api-keys", &owner_token).await.ok(200);
            !listed["api_keys"][0]["last_used_at"].is_null()
        },
    )
    .await;

    delete(&app, &format!("/v1/api-keys/{key_id}"), &owner_token)
        .await
        .ok(204);
    wait_for(
        Duration::from_secs(5),
        "the revoked key to be refused",
        || async { get(&app, "/v1/me", &key).await.status == 401 },
    )
    .await;
    let listed = get(&app, "/v1/api-keys", &owner_token).await.ok(200);
    assert!(!listed["api_keys"][0]["revoked_at"].is_null());
    for id in [Uuid::now_v7().to_string(), "nope".to_owned()] {
        delete(&app, &format!("/v1/api-keys/{id}"), &owner_token)
            .await
            .problem(404, "api-key-not-found");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_cannot_reach_another_tenants_users_or_keys() {
    let app = TestApp::spawn().await;
    let a = text(&signup(&app, &email()).await, "access_token");
    let b_owner = signup(&app, &email()).await;
    let b = text(&b_owner, "access_token");
    let (b_user, _, _) = invited_user(&app, &b, "auditor").await;
    let b_key = create_key(&app, &b, "analyst").await;

    let a_users = get(&app, "/v1/users", &a).await.ok(200);
    assert_eq!(a_users["users"].as_array().unwrap().len(), 1);
    let a_keys = get(&app, "/v1/api-keys", &a).await.ok(200);
    assert!(a_keys["api_keys"].as_array().unwrap().is_empty());
    post(
        &app,
        &format!("/v1/users/{b_user}/disable"),
        Some(&a),
        &json!({}),
    )
    .await
    .problem(404, "user-not-found");
    post(
        &app,
        &format!("/v1/users/{}/disable", text(&b_owner, "user_id")),
        Some(&a),
        &json!({}),
    )
    .await
    .problem(404, "user-not-found");
    delete(
        &app,
        &format!("/v1/api-keys/{}", text(&b_key, "api_key_id")),
        &a,
    )
    .await
    .problem(404, "api-key-not-found");
    // B's key and user are untouched.
    get(&app, "/v1/me", &text(&b_key, "api_key")).await.ok(200);
    let b_users = get(&app, "/v1/users", &b).await.ok(200);
    assert!(b_users["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["disabled_at"].is_null()));
    app.stop().await;
}

#[tokio::test]
async fn bad_signups_name_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let good = json!({
        "vendor_code": unique_vendor_code(),
        "business_name": "Shop",
        "owner_email": email(),
        "owner_password": PASSWORD,
    });
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let (tenants, users, events) = (
        count(&app, "tenants").await,
        count(&app, "users").await,
        count(&app, "events").await,
    );
    let cases = [
        (without("vendor_code"), "vendor_code"),
        (without("owner_email"), "owner_email"),
        (without("owner_password"), "owner_password"),
        (without("business_name"), "business_name"),
        (with("surprise", json!(true)), "surprise"),
        (with("owner_password", json!("too short")), "owner_password"),
        (
            with("owner_password", json!("x".repeat(257))),
            "owner_password",
        ),
        (with("vendor_code", json!("no")), "vendor_code"),
        (with("vendor_code", json!("has space")), "vendor_code"),
        (with("owner_email", json!("not-an-email")), "owner_email"),
        (with("owner_email", json!(42)), "owner_email"),
        (with("business_name", json!(["a"])), "business_name"),
        (with("expiry_days", json!(1.5)), "expiry_days"),
        (with("currency", json!("EURO")), "currency"),
    ];
    for (body, field) in cases {
        let answer = post(&app, "/v1/signup", None, &body).await;
        assert_eq!(
            answer.problem(422, "invalid-field")["field"],
            field,
            "{body}"
        );
    }
    let oversized = with("business_name", json!("x".repeat(20_000)));
    post(&app, "/v1/signup", None, &oversized)
        .await
        .problem(413, "payload-too-large");
    send(
        app.http
            .post(app.url("/v1/signup"))
            .header("Content-Type", "application/json")
            .body("{\"vendor_code\":"),
    )
    .await
    .problem(400, "malformed-json");
    send(
        app.http
            .post(app.url("/v1/auth/login"))
            .header("Content-Type", "text/plain")
            .body("{}"),
    )
    .await
    .problem(415, "unsupported-media-type");
    let login_missing = post(&app, "/v1/auth/login", None, &json!({ "email": email() })).await;
    assert_eq!(
        login_missing.problem(422, "invalid-field")["field"],
        "password"
    );
    assert_eq!(
        (
            count(&app, "tenants").await,
            count(&app, "users").await,
            count(&app, "events").await
        ),
        (tenants, users, events)
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_expired_and_unsigned_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let owner = signup(&app, &email()).await;
    let user_id = Uuid::parse_str(&text(&owner, "user_id")).unwrap();
    let tenant_id =
        ledger_core::TenantId::from_uuid(Uuid::parse_str(&text(&owner, "tenant_id")).unwrap());
    let now = chrono::Utc::now().timestamp();
    let real_keys = JwtKeys::parse(app.settings.jwt_keys.as_deref().unwrap()).unwrap();
    let claims = Claims::access(user_id, tenant_id, "owner", now);
    get(&app, "/v1/me", &real_keys.sign(&claims).unwrap())
        .await
        .ok(200);

    // Same kid, another secret.
    let forged_keys = JwtKeys::parse(&format!(
        "test:{}",
        crate::helpers::base64_standard(&[7u8; 32])
    ))
    .unwrap();
    let forged = forged_keys.sign(&claims).unwrap();
    // Expired beyond the leeway, with the real key.
    let expired = real_keys
        .sign(&Claims::access(user_id, tenant_id, "owner", now - 3_600))
        .unwrap();
    // alg=none, no signature.
    let genuine = real_keys.sign(&claims).unwrap();
    let payload = genuine.split('.').nth(1).unwrap();
    let none_header = "eyJhbGciOiJub25lIiwia2lkIjoidGVzdCJ9"; // {"alg":"none","kid":"test"}
    let unsigned = format!("{none_header}.{payload}.");
    for token in [forged, expired, unsigned, "a.b.c".to_owned()] {
        get(&app, "/v1/me", &token)
            .await
            .problem(401, "unauthenticated");
    }
    app.stop().await;
}
