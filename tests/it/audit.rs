//! Signed chain heads (issue #6, item 1) against real PostgreSQL: the signer signs each
//! tenant's head once per growth, the signatures verify with the public key the API serves,
//! and a changed head, sequence or time does not.

use crate::helpers::{admin_client, dbname, loyalty, phone, purchase, sign_up_owner, TestApp};
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
    // No point value was set: the lots are counted, unvalued.
    assert!(
        stdout.contains("liability (open lots): 0 minor units for "),
        "{stdout}"
    );
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

    // Row-level security, not only the query's `tenant_id = $1`: a transaction of the API's
    // role scoped to the other tenant, asking the same reader for our ledger, reads none of
    // it — no event and no signed head.
    let mut client = app.pool.get().await.unwrap();
    let scoped = schema::tenancy::begin_read_only_snapshot(&mut client, app.tenant_id)
        .await
        .unwrap();
    let mut cursor = schema::audit::ExportCursor::new(tenant, 2);
    let mut leaked = Vec::new();
    while let Some(chunk) = cursor.next_chunk(&*scoped).await.unwrap() {
        leaked.extend(chunk);
    }
    scoped.commit().await.unwrap();
    assert_eq!(
        cursor.exported(),
        schema::audit::Exported {
            events: 0,
            signed_sequence: None
        }
    );
    assert_eq!(String::from_utf8(leaked).unwrap().lines().count(), 2);

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

/// A tenant's ledger in the database, a superuser's connection to tamper with it, and a way
/// back to the untampered rows between cases.
struct Tampering<'a> {
    app: &'a TestApp,
    db: tokio_postgres::Client,
    tenant: Uuid,
    public_key: String,
    file: std::path::PathBuf,
}

impl Tampering<'_> {
    /// Runs `sql` (with `$1` the tenant) as the superuser with triggers off: `events`
    /// refuses UPDATE and DELETE to every role through its `events_refuse_*` triggers, and
    /// `session_replication_role = replica` is how someone with superuser rights gets past
    /// them — which is exactly the attack the chain and the signature are there to reveal.
    async fn superuser(&self, statements: &[&str]) {
        self.db
            .batch_execute("BEGIN; SET LOCAL session_replication_role = replica")
            .await
            .unwrap();
        for sql in statements {
            self.db
                .execute(*sql, &[&self.tenant])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        self.db.batch_execute("COMMIT").await.unwrap();
    }

    /// `loyalty audit export` then `loyalty audit verify`, both through the binary:
    /// `Ok(stdout)` when the verification passed, `Err(stderr)` when it failed (exit 1).
    fn export_and_verify(&self) -> Result<String, String> {
        let path = self.file.to_str().unwrap();
        let exported = loyalty(
            self.app,
            &[
                "audit",
                "export",
                "--tenant",
                &self.tenant.to_string(),
                "--out",
                path,
            ],
        );
        assert!(exported.status.success(), "{exported:?}");
        let verified = loyalty(
            self.app,
            &["audit", "verify", path, "--public-key", &self.public_key],
        );
        let _ = std::fs::remove_file(&self.file);
        if verified.status.success() {
            Ok(String::from_utf8_lossy(&verified.stdout).into_owned())
        } else {
            assert_eq!(verified.status.code(), Some(1), "{verified:?}");
            Err(String::from_utf8_lossy(&verified.stderr).into_owned())
        }
    }

    /// Tampers with `statements`, expects the verification to fail with `expected` in its
    /// message, then puts the untampered rows back and expects it to pass again.
    async fn detected(&self, case: &str, statements: &[&str], expected: &str) {
        self.superuser(statements).await;
        let failed = self
            .export_and_verify()
            .expect_err(&format!("{case}: the tampered ledger verified"));
        assert!(
            failed.starts_with("FAILED: ") && failed.contains(expected),
            "{case}: expected {expected:?}, got {failed:?}"
        );
        self.restore().await;
        let stdout = self
            .export_and_verify()
            .unwrap_or_else(|e| panic!("{case}: restored ledger failed: {e}"));
        assert!(stdout.starts_with("OK"), "{stdout}");
    }

    async fn restore(&self) {
        self.superuser(&[
            "DELETE FROM events WHERE tenant_id = $1",
            "INSERT INTO events OVERRIDING SYSTEM VALUE \
             SELECT * FROM audit_untampered_events WHERE tenant_id = $1",
            "DELETE FROM signed_chain_heads WHERE tenant_id = $1",
            "INSERT INTO signed_chain_heads \
             SELECT * FROM audit_untampered_heads WHERE tenant_id = $1",
        ])
        .await;
    }
}

/// Issue #6 item 3, on the database: a superuser who edits `events` or
/// `signed_chain_heads` directly (triggers disabled) cannot make an export pass. A one-byte
/// payload change, a deleted event, two swapped events (renumbered, or their contents
/// exchanged), a truncated tail, a re-hashed chain and a forged head are each named by
/// `loyalty audit verify` at the right first bad sequence. Truncating events after the
/// signed head is not detectable, and the test says so.
#[tokio::test]
async fn tampering_with_the_stored_ledger_is_named_at_its_first_bad_sequence() {
    let app = TestApp::spawn().await;
    let key = key(&app);
    for c in 0..4 {
        let customer = app.enrolled_customer(&phone()).await;
        for p in 0..3 {
            let body = purchase(customer, 50_000 + 10_000 * p);
            assert_eq!(
                app.post_purchase(&format!("c{c}-p{p}"), &body)
                    .await
                    .status(),
                201
            );
        }
    }
    loyalty::audit::run_once(&app.platform_pool, &key, Utc::now())
        .await
        .unwrap()
        .expect("no other signer");
    let tampering = Tampering {
        app: &app,
        db: admin_client(&dbname(&app.database_url)).await,
        tenant: app.tenant_id.as_uuid(),
        public_key: key.public_key_base64(),
        file: temp_file("tampered"),
    };
    let head: i64 = tampering
        .db
        .query_one(
            "SELECT sequence FROM tenant_heads WHERE tenant_id = $1",
            &[&tampering.tenant],
        )
        .await
        .unwrap()
        .get(0);
    let signed: i64 = tampering
        .db
        .query_one(
            "SELECT max(sequence) FROM signed_chain_heads WHERE tenant_id = $1",
            &[&tampering.tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert!(head >= 20, "{head} events");
    assert_eq!(signed, head, "the whole ledger is signed");
    tampering
        .db
        .batch_execute(
            "CREATE TABLE audit_untampered_events AS SELECT * FROM events; \
             CREATE TABLE audit_untampered_heads AS SELECT * FROM signed_chain_heads",
        )
        .await
        .unwrap();
    let untampered = tampering.export_and_verify().expect("the ledger verifies");
    assert!(
        untampered.contains(&format!("events: {head} (chain intact)")),
        "{untampered}"
    );

    // A purchase's payload, one byte changed in the middle.
    let purchase_at: i64 = tampering
        .db
        .query_one(
            "SELECT min(tenant_sequence) FROM events WHERE tenant_id = $1 \
             AND event_type = 'PurchaseLogged' AND tenant_sequence > 8",
            &[&tampering.tenant],
        )
        .await
        .unwrap()
        .get(0);
    let one_byte = format!(
        "UPDATE events SET payload = set_byte(payload, length(payload) / 2, \
             get_byte(payload, length(payload) / 2) # 1) \
         WHERE tenant_id = $1 AND tenant_sequence = {purchase_at}"
    );
    tampering
        .detected(
            "one byte",
            &[&one_byte],
            &format!("sequence {purchase_at}: hash does not match its contents"),
        )
        .await;

    // An event deleted.
    let deleted = 12;
    let delete = format!("DELETE FROM events WHERE tenant_id = $1 AND tenant_sequence = {deleted}");
    tampering
        .detected(
            "deleted",
            &[&delete],
            &format!(
                "sequence {deleted}: missing or out of order (the next line has sequence {})",
                deleted + 1
            ),
        )
        .await;

    // Two events swapped in place: their sequence numbers exchanged (the unique key needs
    // a moment at 1,000,000).
    let (first, second) = (9, 14);
    let renumber = [
        format!(
            "UPDATE events SET tenant_sequence = 1000000 \
             WHERE tenant_id = $1 AND tenant_sequence = {first}"
        ),
        format!(
            "UPDATE events SET tenant_sequence = {first} \
             WHERE tenant_id = $1 AND tenant_sequence = {second}"
        ),
        format!(
            "UPDATE events SET tenant_sequence = {second} \
             WHERE tenant_id = $1 AND tenant_sequence = 1000000"
        ),
    ];
    tampering
        .detected(
            "swapped and renumbered",
            &renumber.iter().map(String::as_str).collect::<Vec<_>>(),
            &format!("sequence {first}: previous_hash is not the hash of the event before it"),
        )
        .await;
    // Two events' contents exchanged (type, payload, metadata and hash), the sequences and
    // links left where they were.
    let exchange = format!(
        "UPDATE events AS e SET event_type = o.event_type, type_version = o.type_version, \
             payload = o.payload, metadata = o.metadata, hash = o.hash \
         FROM events AS o \
         WHERE e.tenant_id = $1 AND o.tenant_id = $1 \
           AND (e.tenant_sequence, o.tenant_sequence) IN (({first}, {second}), ({second}, {first}))"
    );
    tampering
        .detected(
            "contents swapped",
            &[&exchange],
            &format!("sequence {first}: hash does not match its contents"),
        )
        .await;

    // The tail truncated: the last three events deleted (and the head row put back, as a
    // careful forger would). The signed head names a sequence the export no longer has.
    let kept = head - 3;
    let truncate = [
        format!("DELETE FROM events WHERE tenant_id = $1 AND tenant_sequence > {kept}"),
        format!(
            "UPDATE tenant_heads SET sequence = {kept}, \
                 head_hash = (SELECT hash FROM events WHERE tenant_id = $1 \
                              AND tenant_sequence = {kept}) \
             WHERE tenant_id = $1"
        ),
    ];
    tampering
        .detected(
            "truncated",
            &truncate.iter().map(String::as_str).collect::<Vec<_>>(),
            &format!(
                "sequence {}: missing from the file: the signed head names sequence {head} \
                 but the file ends at {kept}",
                kept + 1
            ),
        )
        .await;
    tampering
        .superuser(&["UPDATE tenant_heads SET (sequence, head_hash) = \
             (SELECT tenant_sequence, hash FROM events WHERE tenant_id = $1 \
              ORDER BY tenant_sequence DESC LIMIT 1) WHERE tenant_id = $1"])
        .await;

    // A payload changed and every hash after it recomputed: the chain is whole again, and
    // only the signed head (whose hash is the old one) gives it away.
    let rows = tampering
        .db
        .query(
            "SELECT event_id, tenant_sequence, stream_id, version, event_type, type_version, \
                    recorded_at, metadata, payload, previous_hash \
             FROM events WHERE tenant_id = $1 ORDER BY tenant_sequence",
            &[&tampering.tenant],
        )
        .await
        .unwrap();
    let mut previous: ledger_core::chain::ChainHash = [0; 32];
    let mut rehashed = Vec::new();
    for row in &rows {
        let sequence: i64 = row.get(1);
        let mut payload: Vec<u8> = row.get(8);
        if sequence == purchase_at {
            // A bigger purchase, encoded as the codec would: it still decodes.
            let event_type: &str = row.get(4);
            let type_version = row.get::<_, i16>(5) as u16;
            let mut event = ledger_core::codec::decode(event_type, type_version, &payload).unwrap();
            match &mut event {
                ledger_core::Event::PurchaseLogged(logged) => {
                    logged.amount = ledger_core::MinorUnits::new(logged.amount.value() * 10)
                }
                other => panic!("{other:?}"),
            }
            let encoded = ledger_core::codec::encode(&event).unwrap();
            assert_eq!(encoded.type_version, type_version);
            payload = encoded.payload;
        }
        let stored_previous: Vec<u8> = row.get(9);
        let recorded_at: DateTime<Utc> = row.get(6);
        let metadata: Vec<u8> = row.get(7);
        let fields = ledger_core::chain::ChainFields {
            tenant_id: app.tenant_id,
            tenant_sequence: sequence as u64,
            event_id: ledger_core::EventId::from_uuid(row.get(0)),
            stream_id: row.get(2),
            version: row.get::<_, i32>(3) as u32,
            event_type: row.get(4),
            type_version: row.get::<_, i16>(5) as u16,
            recorded_at_micros: recorded_at.timestamp_micros(),
            metadata: &metadata,
            payload: &payload,
        };
        if sequence <= purchase_at {
            // The recomputation agrees with the stored chain up to the change.
            assert_eq!(stored_previous, previous.to_vec(), "sequence {sequence}");
        }
        let hash = ledger_core::chain::link(&previous, &fields);
        if sequence >= purchase_at {
            rehashed.push(format!(
                "UPDATE events SET payload = '\\x{}', previous_hash = '\\x{}', hash = '\\x{}' \
                 WHERE tenant_id = $1 AND tenant_sequence = {sequence}",
                hex::encode(&payload),
                hex::encode(previous),
                hex::encode(hash)
            ));
        }
        previous = hash;
    }
    tampering
        .detected(
            "re-hashed",
            &rehashed.iter().map(String::as_str).collect::<Vec<_>>(),
            &format!(
                "sequence {head}: the signed head hash is not the hash of the event at that \
                 sequence"
            ),
        )
        .await;

    // Forged heads: the hash, the sequence, the signature.
    let forged_hash = "UPDATE signed_chain_heads \
         SET head_hash = set_byte(head_hash, 0, get_byte(head_hash, 0) # 1) \
         WHERE tenant_id = $1";
    tampering
        .detected(
            "forged head hash",
            &[forged_hash],
            &format!(
                "sequence {head}: the signed head hash is not the hash of the event at that \
                 sequence"
            ),
        )
        .await;
    // Moved back one event, with that event's hash: the chain agrees, the signature not.
    let forged_sequence = format!(
        "UPDATE signed_chain_heads SET sequence = {0}, \
             head_hash = (SELECT hash FROM events WHERE tenant_id = $1 \
                          AND tenant_sequence = {0}) \
         WHERE tenant_id = $1",
        head - 1
    );
    tampering
        .detected(
            "forged head sequence",
            &[&forged_sequence],
            &format!(
                "sequence {}: the signed head signature does not verify",
                head - 1
            ),
        )
        .await;
    let forged_signature = "UPDATE signed_chain_heads \
         SET signature = set_byte(signature, 10, get_byte(signature, 10) # 1) \
         WHERE tenant_id = $1";
    tampering
        .detected(
            "forged signature",
            &[forged_signature],
            &format!("sequence {head}: the signed head signature does not verify"),
        )
        .await;

    // What no one can detect: events appended after the last signature and then deleted.
    // They were never signed, so the export is a shorter ledger that is whole and signed.
    let customer = app.enrolled_customer(&phone()).await;
    assert_eq!(
        app.post_purchase("late", &purchase(customer, 50_000))
            .await
            .status(),
        201
    );
    let late = format!("DELETE FROM events WHERE tenant_id = $1 AND tenant_sequence > {head}");
    tampering.superuser(&[&late]).await;
    let passed = tampering
        .export_and_verify()
        .expect("unsigned events deleted: undetectable");
    assert!(
        passed.contains(&format!("events: {head} (chain intact)"))
            && !passed.contains("not covered"),
        "{passed}"
    );
    app.stop().await;
}
