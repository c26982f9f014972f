//! Signed chain heads (issue #6, item 1) against real PostgreSQL: the signer signs each
//! tenant's head once per growth, the signatures verify with the public key the API serves,
//! and a changed head, sequence or time does not.

use crate::helpers::{admin_client, dbname, phone, purchase, sign_up_owner, TestApp};
use chrono::{DateTime, Utc};
use ledger_core::chain::signed_head_message;
use ledger_core::TenantId;
use serde_json::{json, Value};
use uuid::Uuid;
use vault::audit::{verify, AuditSigningKey};

struct SignedHead {
    tenant: Uuid,
    sequence: i64,
    head: Vec<u8>,
    signed_at: DateTime<Utc>,
    key_id: String,
    signature: Vec<u8>,
}

async fn signed_heads(app: &TestApp) -> Vec<SignedHead> {
    admin_client(&dbname(&app.database_url))
        .await
        .query(
            "SELECT tenant_id, sequence, head_hash, signed_at, key_id, signature \
             FROM signed_chain_heads ORDER BY tenant_id, sequence",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| SignedHead {
            tenant: row.get(0),
            sequence: row.get(1),
            head: row.get(2),
            signed_at: row.get(3),
            key_id: row.get(4),
            signature: row.get(5),
        })
        .collect()
}

fn message(head: &SignedHead) -> Vec<u8> {
    signed_head_message(
        TenantId::from_uuid(head.tenant),
        head.sequence as u64,
        &head.head.as_slice().try_into().unwrap(),
        head.signed_at.timestamp_micros(),
    )
}

fn key(app: &TestApp) -> AuditSigningKey {
    AuditSigningKey::parse(app.settings.audit_signing_key.as_deref().unwrap()).unwrap()
}

#[tokio::test]
async fn each_grown_head_is_signed_once_and_verifies_with_the_served_public_key() {
    let app = TestApp::spawn().await;
    let key = key(&app);
    let customer = app.enrolled_customer(&phone()).await;
    assert_eq!(
        app.post_purchase("p-1", &purchase(customer, 50_000))
            .await
            .status(),
        201
    );
    let first = loyalty::audit::run_once(&app.platform_pool, &key, Utc::now())
        .await
        .unwrap()
        .expect("no other signer");
    let heads = signed_heads(&app).await;
    assert_eq!(first as usize, heads.len());
    let own = heads
        .iter()
        .rev()
        .find(|h| h.tenant == app.tenant_id.as_uuid())
        .expect("the test tenant's head is signed");
    // The signed head is the tenant's head now.
    let row = admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT sequence, head_hash FROM tenant_heads WHERE tenant_id = $1",
            &[&app.tenant_id.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(own.sequence, row.get::<_, i64>(0));
    assert_eq!(own.head, row.get::<_, Vec<u8>>(1));

    // The public key from the well-known endpoint (no authentication) checks every one.
    let served: Value = app
        .http
        .get(app.url("/.well-known/loyalty-ledger/audit-keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["keys"][0]["key_id"], key.key_id());
    assert_eq!(served["keys"][0]["algorithm"], "Ed25519");
    let public =
        vault::audit::decode_public_key(served["keys"][0]["public_key"].as_str().unwrap()).unwrap();
    for head in &heads {
        assert_eq!(head.key_id, key.key_id());
        assert!(
            verify(&public, &message(head), &head.signature),
            "tenant {}",
            head.tenant
        );
    }
    // A head altered in any field no longer verifies.
    let mut altered = own_clone(own);
    altered.head[0] ^= 1;
    assert!(!verify(&public, &message(&altered), &own.signature));
    let mut altered = own_clone(own);
    altered.sequence += 1;
    assert!(!verify(&public, &message(&altered), &own.signature));
    let mut altered = own_clone(own);
    altered.signed_at += chrono::Duration::microseconds(1);
    assert!(!verify(&public, &message(&altered), &own.signature));

    // Nothing grew: nothing signed. A purchase: that tenant's new head, once.
    let again = loyalty::audit::run_once(&app.platform_pool, &key, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(
        app.post_purchase("p-2", &purchase(customer, 50_000))
            .await
            .status(),
        201
    );
    let grown = loyalty::audit::run_once(&app.platform_pool, &key, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grown, 1);
    assert_eq!(signed_heads(&app).await.len(), heads.len() + 1);
    app.stop().await;
}

fn own_clone(head: &SignedHead) -> Box<SignedHead> {
    Box::new(SignedHead {
        tenant: head.tenant,
        sequence: head.sequence,
        head: head.head.clone(),
        signed_at: head.signed_at,
        key_id: head.key_id.clone(),
        signature: head.signature.clone(),
    })
}

#[tokio::test]
async fn two_signers_at_once_sign_each_head_once() {
    let app = TestApp::spawn().await;
    let key = key(&app);
    for n in 0..3 {
        let customer = app.enrolled_customer(&phone()).await;
        let body = purchase(customer, 20_000);
        assert_eq!(
            app.post_purchase(&format!("p-{n}"), &body).await.status(),
            201
        );
    }
    let at = Utc::now();
    let (a, b) = tokio::join!(
        loyalty::audit::run_once(&app.platform_pool, &key, at),
        loyalty::audit::run_once(&app.platform_pool, &key, at),
    );
    let signed: u64 = [a.unwrap(), b.unwrap()].iter().flatten().sum();
    let tenants: i64 = admin_client(&dbname(&app.database_url))
        .await
        .query_one("SELECT count(*) FROM tenant_heads WHERE sequence > 0", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(signed as i64, tenants);
    assert_eq!(signed_heads(&app).await.len() as i64, tenants);
    app.stop().await;
}

fn loyalty(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the loyalty binary")
}

/// Issue #6 items 2 and 3: `loyalty audit export` writes a real tenant's ledger with its
/// signed head; `loyalty audit verify` accepts it offline with the public key, reports the
/// events after the signed head, and names the sequence of a payload changed by one byte.
#[tokio::test]
async fn an_export_verifies_offline_and_a_changed_byte_is_named() {
    let app = TestApp::spawn().await;
    let key = key(&app);
    let customer = app.enrolled_customer(&phone()).await;
    for n in 0..2 {
        let body = purchase(customer, 50_000);
        assert_eq!(
            app.post_purchase(&format!("p-{n}"), &body).await.status(),
            201
        );
    }
    loyalty::audit::run_once(&app.platform_pool, &key, Utc::now())
        .await
        .unwrap()
        .expect("no other signer");
    // One more purchase after the signature: exported, but not covered by it.
    assert_eq!(
        app.post_purchase("p-late", &purchase(customer, 50_000))
            .await
            .status(),
        201
    );
    let (head, signed): (i64, i64) = {
        let client = admin_client(&dbname(&app.database_url)).await;
        let head = client
            .query_one(
                "SELECT sequence FROM tenant_heads WHERE tenant_id = $1",
                &[&app.tenant_id.as_uuid()],
            )
            .await
            .unwrap()
            .get(0);
        let signed = client
            .query_one(
                "SELECT max(sequence) FROM signed_chain_heads WHERE tenant_id = $1",
                &[&app.tenant_id.as_uuid()],
            )
            .await
            .unwrap()
            .get(0);
        (head, signed)
    };
    assert!(signed < head);

    let file = std::env::temp_dir().join(format!("loyalty-export-{}.jsonl", Uuid::new_v4()));
    let path = file.to_str().unwrap();
    let tenant = app.tenant_id.to_string();
    let exported = loyalty(
        &app,
        &["audit", "export", "--tenant", &tenant, "--out", path],
    );
    assert!(exported.status.success(), "{exported:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as i64, head + 2, "header, events, trailer");
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["format"], "loyalty-ledger-export");
    assert_eq!(header["tenant_id"], tenant);
    let trailer: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(trailer["signed_head"]["sequence"], signed);
    assert_eq!(trailer["signed_head"]["key_id"], key.key_id());

    // Paged two events at a time, in process: the same bytes.
    let mut paged = Vec::new();
    let written =
        loyalty::audit::export::export_paged(&app.platform_pool, app.tenant_id, &mut paged, 2)
            .await
            .unwrap();
    assert_eq!(written.events as i64, head);
    assert_eq!(written.signed_sequence, Some(signed as u64));
    assert_eq!(String::from_utf8(paged).unwrap(), text);

    let public_key = key.public_key_base64();
    let verified = loyalty(
        &app,
        &["audit", "verify", path, "--public-key", &public_key],
    );
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verified:?}");
    assert!(stdout.starts_with("OK"), "{stdout}");
    assert!(stdout.contains(&format!("events: {head} ")), "{stdout}");
    assert!(stdout.contains("customers: 1"), "{stdout}");
    assert!(stdout.contains("points issued (earned): 15"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "not covered by a signature: {} event(s)",
            head - signed
        )),
        "{stdout}"
    );

    // Another key: the signed head does not verify.
    let other = AuditSigningKey::parse(&vault::generate_key_base64().unwrap()).unwrap();
    let refused = loyalty(
        &app,
        &[
            "audit",
            "verify",
            path,
            "--public-key",
            &other.public_key_base64(),
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains(&format!("sequence {signed}: the signed head signature")),
        "{refused:?}"
    );

    // One byte of the first purchase's payload changed.
    let index = lines
        .iter()
        .position(|l| l.contains("\"event_type\":\"PurchaseLogged\""))
        .unwrap();
    let mut line: Value = serde_json::from_str(lines[index]).unwrap();
    let sequence = line["tenant_sequence"].as_i64().unwrap();
    use base64::Engine;
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut payload = base64.decode(line["payload"].as_str().unwrap()).unwrap();
    let middle = payload.len() / 2;
    payload[middle] ^= 1;
    line["payload"] = Value::String(base64.encode(payload));
    let mut tampered: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    tampered[index] = line.to_string();
    std::fs::write(&file, tampered.join("\n") + "\n").unwrap();
    let failed = loyalty(
        &app,
        &["audit", "verify", path, "--public-key", &public_key],
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{failed:?}");
    assert!(
        stderr.contains(&format!(
            "sequence {sequence}: hash does not match its contents"
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&file);

    // A tenant that does not exist is an error, not an empty export.
    let missing = loyalty(
        &app,
        &[
            "audit",
            "export",
            "--tenant",
            &Uuid::new_v4().to_string(),
            "--out",
            path,
        ],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such tenant"));
    let _ = std::fs::remove_file(&file);
    app.stop().await;
}

/// `GET /v1/audit/export` with `token`: (status, content type, body).
async fn api_export(app: &TestApp, token: &str) -> (u16, String, Vec<u8>) {
    let response = app
        .http
        .get(app.url("/v1/audit/export"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/audit/export");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

/// A POST with a bearer token and a fresh idempotency key; asserts `expected`.
async fn post_as(app: &TestApp, token: &str, path: &str, body: &Value, expected: u16) -> Value {
    let response = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, expected, "POST {path}: {body}");
    body
}

fn temp_file(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("loyalty-{what}-{}.jsonl", Uuid::new_v4()))
}

/// Issue #6 item 2, the API: an auditor's key streams its tenant's export, which is the
/// CLI's export of the same snapshot byte for byte and verifies offline; owners may too,
/// staff and analysts may not; another tenant's events never appear.
#[tokio::test]
async fn an_auditor_exports_its_tenant_over_the_api_and_the_body_verifies() {
    let app = TestApp::spawn().await;
    let key = key(&app);
    let (tenant, owner) = sign_up_owner(&app.http, &app.address).await;
    let mut keys = std::collections::BTreeMap::new();
    for role in ["staff", "auditor", "analyst"] {
        let created = post_as(
            &app,
            &owner,
            "/v1/api-keys",
            &json!({ "label": format!("{role} key"), "role": role }),
            201,
        )
        .await;
        keys.insert(role, created["api_key"].as_str().unwrap().to_owned());
    }
    // Two customers of ours with purchases; another tenant (the app's) busy beside us.
    for n in 0..2 {
        let enrolled = post_as(
            &app,
            &owner,
            "/v1/customers",
            &json!({ "phone": phone() }),
            201,
        )
        .await;
        let customer = Uuid::parse_str(enrolled["customer_id"].as_str().unwrap()).unwrap();
        for _ in 0..=n {
            post_as(
                &app,
                &owner,
                "/v1/purchases",
                &purchase(customer, 50_000),
                201,
            )
            .await;
        }
        let theirs = app.enrolled_customer(&phone()).await;
        assert_eq!(
            app.post_purchase(&format!("theirs-{n}"), &purchase(theirs, 90_000))
                .await
                .status(),
            201
        );
    }
    loyalty::audit::run_once(&app.platform_pool, &key, Utc::now())
        .await
        .unwrap()
        .expect("no other signer");

    let (status, content_type, body) = api_export(&app, &keys["auditor"]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/x-ndjson");
    let text = String::from_utf8(body).unwrap();

    // The CLI's export of the same tenant (nothing was written since): the same bytes.
    let file = temp_file("cli-export");
    let path = file.to_str().unwrap();
    let exported = loyalty(
        &app,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant.to_string(),
            "--out",
            path,
        ],
    );
    assert!(exported.status.success(), "{exported:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    // Only our events: exactly the tenant's rows, none of the other tenant's.
    let db = admin_client(&dbname(&app.database_url)).await;
    let ours: Vec<Uuid> = db
        .query(
            "SELECT event_id FROM events WHERE tenant_id = $1 ORDER BY tenant_sequence",
            &[&tenant.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let theirs: Vec<Uuid> = db
        .query(
            "SELECT event_id FROM events WHERE tenant_id <> $1",
            &[&tenant.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(ours.len() >= 5 && !theirs.is_empty());
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["tenant_id"], tenant.to_string());
    let exported_ids: Vec<Uuid> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| Uuid::parse_str(l["event_id"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(exported_ids, ours);
    for id in &theirs {
        assert!(
            !text.contains(&id.to_string()),
            "another tenant's event {id}"
        );
    }
    assert_eq!(
        lines[lines.len() - 1]["signed_head"]["sequence"],
        ours.len() as i64
    );

    // The body verifies offline with the served key.
    std::fs::write(&file, &text).unwrap();
    let verified = loyalty(
        &app,
        &[
            "audit",
            "verify",
            path,
            "--public-key",
            &key.public_key_base64(),
        ],
    );
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verified:?}");
    assert!(stdout.starts_with("OK"), "{stdout}");
    assert!(
        stdout.contains(&format!("events: {} (chain intact)", ours.len())),
        "{stdout}"
    );
    assert!(stdout.contains("customers: 2"), "{stdout}");
    let _ = std::fs::remove_file(&file);

    // Owners may export too; the till and analysts may not.
    let (status, _, owners) = api_export(&app, &owner).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(owners).unwrap(), text);
    for role in ["staff", "analyst"] {
        let (status, content_type, body) = api_export(&app, &keys[role]).await;
        assert_eq!(status, 403, "{role}");
        assert_eq!(content_type, "application/problem+json", "{role}");
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            problem["type"]
                .as_str()
                .unwrap_or_default()
                .ends_with("forbidden"),
            "{role}: {problem}"
        );
    }
    app.stop().await;
}
