//! The WhatsApp webhook ingest against a real PostgreSQL: every fixture case signed and
//! unsigned, duplicates, batches, body limits, unparsed bodies, the handshake, a database
//! that is down, nothing personal in plain text, and `loyalty ingest` killed with SIGKILL.

use crate::helpers::{
    self, admin_client, dbname, free_port, fresh_database, key_env, test_settings, test_vault,
    url_for, TestApp, WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN,
};
use loyalty::app::Components;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webhook_ingest::inbox::{items_of, unparsed_item};
use webhook_ingest::payload::parse;
use webhook_ingest::signature::{sign, AppSecret};

const PATH: &str = "/webhooks/whatsapp";

fn secret() -> AppSecret {
    AppSecret::new(WHATSAPP_APP_SECRET.as_str()).unwrap()
}

fn signature(body: &[u8]) -> String {
    sign(&secret(), body)
}

/// Every case of the fixture corpus (`shared/` beside the repository): `(name, body)`.
fn fixture_cases() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/whatsapp/pywa");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fixture corpus {} is missing ({e})", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let all: BTreeMap<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (name, body) in all {
            cases.push((format!("{stem}/{name}"), serde_json::to_vec(&body).unwrap()));
        }
    }
    assert!(cases.len() >= 40, "the fixture corpus is incomplete");
    cases
}

/// The dedupe keys and kinds the ingest must store for `body` (the test run's vault holds
/// the same keys as the app, so the keyed digests agree).
fn expected_rows(body: &[u8]) -> Vec<(String, String)> {
    let vault = test_vault();
    let items = match parse(body) {
        Ok(batch) => items_of(&batch, &vault).unwrap(),
        Err(_) => vec![unparsed_item(body, &vault).unwrap()],
    };
    items
        .into_iter()
        .map(|i| (i.dedupe_key, i.kind.as_str().to_owned()))
        .collect()
}

async fn ingest_app() -> TestApp {
    TestApp::spawn_with(Components {
        ingest: true,
        ..Components::NONE
    })
    .await
}

async fn post(app_base: &str, body: &[u8], signature: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{app_base}{PATH}"))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    request.send().await.expect("POST /webhooks/whatsapp")
}

async fn post_signed(app: &TestApp, body: &[u8]) -> reqwest::Response {
    post(&app.ingest_address, body, Some(&signature(body))).await
}

async fn inbox_count(database_url: &str) -> i64 {
    admin_client(&dbname(database_url))
        .await
        .query_one("SELECT count(*) FROM whatsapp_inbox", &[])
        .await
        .unwrap()
        .get(0)
}

/// `(dedupe_key, kind)` of the stored rows among `keys`, sorted.
async fn stored(database_url: &str, keys: &[String]) -> Vec<(String, String)> {
    let rows = admin_client(&dbname(database_url))
        .await
        .query(
            "SELECT dedupe_key, kind FROM whatsapp_inbox WHERE dedupe_key = ANY($1) ORDER BY 1",
            &[&keys],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn distinct(mut rows: Vec<(String, String)>) -> Vec<(String, String)> {
    rows.sort();
    rows.dedup();
    rows
}

/// A body of `count` text messages with fresh wamids, `pad_bytes` of an ignored field, and
/// `statuses` delivery statuses, in one entry and change.
fn text_messages(count: usize, statuses: usize, pad_bytes: usize) -> (Vec<u8>, Vec<String>) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let wamids: Vec<String> = (0..count).map(|i| format!("wamid.{run}.{i}")).collect();
    let messages: Vec<Value> = wamids
        .iter()
        .map(|id| {
            json!({"from": "2348012345678", "id": id, "timestamp": "1764115200",
                   "type": "text", "text": {"body": "points please"}})
        })
        .collect();
    let statuses: Vec<Value> = (0..statuses)
        .map(|i| {
            json!({"id": format!("wamid.{run}.out{i}"), "status": "delivered",
                   "timestamp": "1764115201", "recipient_id": "2348012345678"})
        })
        .collect();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
        "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ada Obi"}, "wa_id": "2348012345678"}],
            "messages": messages, "statuses": statuses,
            "padding_meta_might_add": "x".repeat(pad_bytes)}}]}]});
    (serde_json::to_vec(&body).unwrap(), wamids)
}

#[tokio::test]
async fn every_fixture_case_is_stored_when_signed_and_refused_when_not() {
    let app = ingest_app().await;
    let wrong_secret = AppSecret::new("not the app secret").unwrap();
    for (name, body) in fixture_cases() {
        let before = inbox_count(&app.database_url).await;
        let mut altered = body.clone();
        let last = altered.len() - 2;
        altered[last] ^= 0x01;
        let refusals: [(&str, &[u8], Option<String>); 6] = [
            ("no signature", &body, None),
            ("empty signature", &body, Some(String::new())),
            ("malformed signature", &body, Some("sha256=xyz".into())),
            (
                "sha1 prefix",
                &body,
                Some(signature(&body).replace("sha256=", "sha1=")),
            ),
            ("another secret", &body, Some(sign(&wrong_secret, &body))),
            ("altered body", &altered, Some(signature(&body))),
        ];
        for (what, sent, header) in refusals {
            let response = post(&app.ingest_address, sent, header.as_deref()).await;
            assert_eq!(response.status(), 401, "{name}: {what}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{name}: {what}"
            );
        }
        assert_eq!(
            inbox_count(&app.database_url).await,
            before,
            "{name}: a refused request stored something"
        );

        let response = post_signed(&app, &body).await;
        assert_eq!(response.status(), 200, "{name}");
        let expected = distinct(expected_rows(&body));
        assert!(!expected.is_empty(), "{name}: nothing to store");
        assert!(
            expected.iter().all(|(_, kind)| kind != "unparsed"),
            "{name} did not parse"
        );
        let keys: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(stored(&app.database_url, &keys).await, expected, "{name}");
    }
    // Every kind of row the corpus holds was stored.
    let kinds: Vec<String> = admin_client(&dbname(&app.database_url))
        .await
        .query("SELECT DISTINCT kind FROM whatsapp_inbox ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["message", "other", "preference", "status"]);
    app.stop().await;
}

#[tokio::test]
async fn the_same_message_delivered_five_times_is_stored_once() {
    let app = ingest_app().await;
    let (body, _) = text_messages(1, 0, 0);
    let responses = futures_util::future::join_all((0..5).map(|_| post_signed(&app, &body))).await;
    let mut stored_now = 0;
    for response in responses {
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        stored_now += answer["stored"].as_u64().unwrap();
    }
    assert_eq!(stored_now, 1, "exactly one delivery stored the message");
    let keys: Vec<String> = expected_rows(&body).into_iter().map(|(k, _)| k).collect();
    assert_eq!(stored(&app.database_url, &keys).await.len(), 1);
    assert_eq!(inbox_count(&app.database_url).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_body_of_several_entries_messages_and_statuses_is_stored_in_one_transaction() {
    let app = ingest_app().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let entry = |e: usize| {
        let messages: Vec<Value> = (0..4)
            .map(|m| {
                json!({"from": "2348012345678", "id": format!("wamid.{run}.{e}.{m}"),
                            "timestamp": "1764115200", "type": "text", "text": {"body": "hi"}})
            })
            .collect();
        let statuses: Vec<Value> = ["sent", "delivered", "read"]
            .iter()
            .map(|s| {
                json!({"id": format!("wamid.{run}.{e}.out"), "status": s,
                            "timestamp": "1764115200", "recipient_id": "2348012345678"})
            })
            .collect();
        json!({"id": format!("waba{e}"), "changes": [
            {"field": "messages", "value": {"metadata": {"phone_number_id": format!("pn{e}")},
                                            "messages": messages}},
            {"field": "messages", "value": {"metadata": {"phone_number_id": format!("pn{e}")},
                                            "statuses": statuses}}]})
    };
    let mut entries: Vec<Value> = (0..3).map(entry).collect();
    // The same message twice in one body (Meta does this) is stored once.
    entries.push(entry(0));
    let body =
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": entries}))
            .unwrap();
    let response = post_signed(&app, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["stored"], 3 * (4 + 3));
    assert_eq!(answer["duplicates"], 4 + 3);
    let db = admin_client(&dbname(&app.database_url)).await;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT transaction_id::text), \
                    count(*) FILTER (WHERE kind = 'message'), count(*) FILTER (WHERE kind = 'status'), \
                    count(DISTINCT phone_number_id) \
             FROM whatsapp_inbox",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 21);
    assert_eq!(row.get::<_, i64>(1), 1, "every item in one transaction");
    assert_eq!(row.get::<_, i64>(2), 12);
    assert_eq!(row.get::<_, i64>(3), 9);
    assert_eq!(row.get::<_, i64>(4), 3);
    // A downstream reader tails them by the safe position and can open each one.
    // The safe position waits for every older transaction of the cluster (other tests'
    // included) to end, so the rows become visible to the reader a moment after the commit.
    let platform = app.platform_db().await;
    let read = || async {
        schema::inbox::read_after(&**platform, Default::default(), 100)
            .await
            .unwrap()
    };
    helpers::wait_for(
        Duration::from_secs(10),
        "the rows behind the safe position",
        || async { read().await.len() == 21 },
    )
    .await;
    let rows = read().await;
    assert_eq!(rows.len(), 21);
    let vault = test_vault();
    for row in &rows {
        let record = vault::SealedRecord {
            master_key_id: row.master_key_id.clone(),
            wrapped_key: row.wrapped_key.clone(),
            sealed: row.sealed.clone(),
        };
        let opened = vault
            .open_record(&schema::inbox::seal_context(&row.dedupe_key), &record)
            .unwrap();
        let opened: Value = serde_json::from_slice(&opened).unwrap();
        assert!(opened.get("message").or(opened.get("status")).is_some());
        assert!(opened["metadata"]["phone_number_id"].is_string());
    }
    app.stop().await;
}

#[tokio::test]
async fn a_three_and_a_half_megabyte_body_is_accepted_and_five_megabytes_is_refused() {
    let app = ingest_app().await;
    let (big, _) = text_messages(500, 500, 3_400_000);
    assert!(
        (3_400_000..4_000_000).contains(&big.len()),
        "{} bytes",
        big.len()
    );
    let response = post_signed(&app, &big).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["stored"], 1000);

    let before = inbox_count(&app.database_url).await;
    let (huge, _) = text_messages(10, 0, 5_000_000);
    let response = post_signed(&app, &huge).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // Also when the size is not declared up front (chunked transfer encoding).
    assert_eq!(
        chunked_post_status(&app.ingest_address, &huge).await,
        Some(413)
    );
    assert_eq!(inbox_count(&app.database_url).await, before);
    app.stop().await;
}

/// Posts `body` signed, with `Transfer-Encoding: chunked` (no Content-Length), over a raw
/// connection; returns the response's status, if one came.
async fn chunked_post_status(base: &str, body: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {address}\r\nX-Hub-Signature-256: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        signature(body)
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn a_signed_body_that_does_not_parse_is_one_unparsed_row_and_a_200() {
    let app = ingest_app().await;
    let bodies: [&[u8]; 4] = [
        b"{\"object\": \"whatsapp_business_account\", \"entry\": [",
        b"not json at all",
        br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"id":5}]}}]}]}"#,
        b"",
    ];
    for body in bodies {
        for _ in 0..2 {
            let response = post_signed(&app, body).await;
            assert_eq!(
                response.status(),
                200,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let expected = expected_rows(body);
        assert_eq!(expected.len(), 1);
        assert_eq!(expected[0].1, "unparsed");
        let keys = vec![expected[0].0.clone()];
        assert_eq!(stored(&app.database_url, &keys).await, expected);
    }
    assert_eq!(inbox_count(&app.database_url).await, 4);
    app.stop().await;
}

#[tokio::test]
async fn the_handshake_echoes_the_challenge_only_for_subscribe_and_the_right_token() {
    let app = ingest_app().await;
    let http = reqwest::Client::new();
    let get = |query: Vec<(&'static str, String)>| {
        // The values here need no percent-encoding.
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        http.get(format!("{}{PATH}?{}", app.ingest_address, query.join("&")))
            .send()
    };
    let token = WHATSAPP_VERIFY_TOKEN.clone();
    let response = get(vec![
        ("hub.mode", "subscribe".into()),
        ("hub.verify_token", token.clone()),
        ("hub.challenge", "1158201444".into()),
    ])
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.text().await.unwrap(), "1158201444");

    let refused: [Vec<(&'static str, String)>; 5] = [
        vec![
            ("hub.mode", "subscribe".into()),
            ("hub.verify_token", "wrong".into()),
            ("hub.challenge", "1".into()),
        ],
        vec![
            ("hub.mode", "unsubscribe".into()),
            ("hub.verify_token", token.clone()),
            ("hub.challenge", "1".into()),
        ],
        vec![
            ("hub.mode", "subscribe".into()),
            ("hub.challenge", "1".into()),
        ],
        vec![
            ("hub.mode", "subscribe".into()),
            ("hub.verify_token", token.clone()),
        ],
        vec![],
    ];
    for query in refused {
        let response = get(query.clone()).await.unwrap();
        assert_eq!(response.status(), 403, "{query:?}");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
    }
    // Other routes and methods are problems, never a 5xx.
    let response = http
        .put(format!("{}{PATH}", app.ingest_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let response = http
        .get(format!("{}/nope", app.ingest_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let metrics = http
        .get(format!("{}/metrics", app.ingest_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("loyalty_whatsapp_ingest_handshakes_accepted_total 1"));
    assert!(metrics.contains("loyalty_whatsapp_ingest_handshakes_refused_total 5"));
    app.stop().await;
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_a_503_and_meta_retries() {
    // A pool pointing at a port nothing listens on.
    let settings = test_settings(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=nothing",
        free_port()
    ));
    let pool = schema::db::pool(&settings.platform_db()).unwrap();
    let state =
        webhook_ingest::IngestState::new(pool, Arc::new(test_vault()), settings.ingest().unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = webhook_ingest::serve(listener, state, 1).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let (body, _) = text_messages(3, 1, 0);
    let response = post(&base, &body, Some(&signature(&body))).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // The refusal comes first even with the database down.
    assert_eq!(post(&base, &body, None).await.status(), 401);
    handle.stop(true).await;
}

#[tokio::test]
async fn no_phone_number_name_text_or_message_id_is_stored_in_plain_text() {
    let app = ingest_app().await;
    let mut bodies: Vec<Vec<u8>> = fixture_cases().into_iter().map(|(_, b)| b).collect();
    bodies.push(text_messages(3, 2, 0).0);
    bodies.push(b"{\"contacts\": [{\"wa_id\": \"2348012345678\"}], \"broken\": ".to_vec());
    for body in &bodies {
        assert_eq!(post_signed(&app, body).await.status(), 200);
    }
    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(url_for(&dbname(&app.database_url)))
        .output()
        .expect("running pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("whatsapp_inbox"), "the dump has no inbox");
    let secrets = [
        // customers' numbers (wa_id, from, recipient_id) and names
        "972987654321",
        "16505551234",
        "2348012345678",
        "Test Name",
        "Ada Obi",
        // message texts, captions, shared contacts
        "Body Text",
        "forwarded text",
        "points please",
        "Chandler",
        "+1 555-555-5555",
        // message ids (a real wamid carries the number in base64)
        "wamid.xyzxyz",
        "wamid.ID",
        "US.13491208655302741918",
    ];
    for secret in secrets {
        assert!(!dump.contains(secret), "{secret:?} is in the database dump");
    }
    app.stop().await;
}

/// `loyalty ingest` as a child process; killed when dropped.
struct IngestProcess {
    child: Option<std::process::Child>,
    base: String,
    log: PathBuf,
}

impl IngestProcess {
    async fn start(database_url: &str) -> IngestProcess {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("ingest-{}.log", uuid::Uuid::new_v4()));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LOYALTY_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("ingest")
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", helpers::nats_url())
            .env("RUST_LOG", "debug")
            .envs(key_env())
            .env("LOYALTY_INGEST_ADDR", format!("127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting `loyalty ingest`");
        let process = IngestProcess {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let url = format!("{}/health", process.base);
        helpers::wait_for(
            Duration::from_secs(30),
            "`loyalty ingest` to listen",
            || {
                let request = reqwest::get(url.clone());
                async move { matches!(request.await, Ok(r) if r.status() == 200) }
            },
        )
        .await;
        process
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: no graceful shutdown, nothing flushed but what was committed.
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        helpers::kill_child(self.child.take());
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test]
async fn a_webhook_answered_200_survives_kill_9_and_an_unanswered_one_is_all_or_nothing() {
    let database_url = fresh_database().await;
    let mut process = IngestProcess::start(&database_url).await;

    // One message: answered 200, then SIGKILL at once; the row is there.
    let (body, _) = text_messages(1, 0, 0);
    let response = post(&process.base, &body, Some(&signature(&body))).await;
    assert_eq!(response.status(), 200);
    process.kill();
    let keys: Vec<String> = expected_rows(&body).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        stored(&database_url, &keys).await.len(),
        1,
        "a 200 was not durable"
    );

    // Many bodies of 40 items in flight; SIGKILL after some answers.
    let mut process = IngestProcess::start(&database_url).await;
    let bodies: Vec<(Vec<u8>, Vec<String>)> = (0..64)
        .map(|_| {
            let (body, _) = text_messages(30, 10, 0);
            let keys = expected_rows(&body).into_iter().map(|(k, _)| k).collect();
            (body, keys)
        })
        .collect();
    let answered = Arc::new(Mutex::new(vec![false; bodies.len()]));
    let answers = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(bodies);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (answered, answers, killed, next, bodies, client, base) = (
                answered.clone(),
                answers.clone(),
                killed.clone(),
                next.clone(),
                bodies.clone(),
                client.clone(),
                process.base.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= bodies.len() || killed.load(Ordering::SeqCst) {
                        return;
                    }
                    let body = &bodies[i].0;
                    let response = client
                        .post(format!("{base}{PATH}"))
                        .header("X-Hub-Signature-256", signature(body))
                        .body(body.clone())
                        .send()
                        .await;
                    if matches!(&response, Ok(r) if r.status() == 200) {
                        answered.lock().unwrap()[i] = true;
                        answers.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    helpers::wait_for(Duration::from_secs(60), "some answers", || {
        let answers = answers.clone();
        async move { answers.load(Ordering::SeqCst) >= 10 }
    })
    .await;
    process.kill();
    killed.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let mut partial = 0;
    for (i, (_, keys)) in bodies.iter().enumerate() {
        let count = stored(&database_url, keys).await.len();
        if answered[i] {
            assert_eq!(
                count,
                keys.len(),
                "body {i} was answered 200 but is not all stored"
            );
        } else {
            assert!(
                count == 0 || count == keys.len(),
                "body {i} is half stored ({count} rows)"
            );
            partial += usize::from(count == keys.len());
        }
    }
    eprintln!(
        "crash: {} answered, {partial} stored without an answer",
        answered.iter().filter(|a| **a).count()
    );

    // The logs of the whole run hold no number, name, text or message id.
    let logs = std::fs::read_to_string(&process.log).unwrap_or_default();
    assert!(logs.contains("listening"), "the log is empty");
    for secret in ["2348012345678", "Ada Obi", "points please", "wamid."] {
        assert!(
            !logs.contains(secret),
            "{secret:?} is in the ingest's debug log"
        );
    }
}

/// `(stored, duplicates)` of a 200 answer.
async fn counts(response: reqwest::Response) -> (u64, u64) {
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    (
        answer["stored"].as_u64().unwrap(),
        answer["duplicates"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn the_same_webhook_posted_twenty_times_at_once_is_stored_once_and_credited_once() {
    let app = ingest_app().await;
    let (body, _) = text_messages(1, 0, 0);
    let keys: Vec<String> = expected_rows(&body).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 1);
    let answers = futures_util::future::join_all((0..20).map(|_| {
        let (base, body) = (app.ingest_address.clone(), body.clone());
        tokio::spawn(async move { counts(post(&base, &body, Some(&signature(&body))).await).await })
    }))
    .await;
    let mut answers: Vec<(u64, u64)> = answers.into_iter().map(|a| a.unwrap()).collect();
    answers.sort();
    let mut expected = vec![(0, 1); 19];
    expected.push((1, 0));
    assert_eq!(answers, expected, "exactly one answer stores the message");
    assert_eq!(stored(&app.database_url, &keys).await.len(), 1);
    assert_eq!(inbox_count(&app.database_url).await, 1);

    // A body of several items, twenty times at once: every item is credited exactly once
    // over all the answers, and each answer accounts for every item of its body.
    let (body, _) = text_messages(4, 3, 0);
    let items = expected_rows(&body).len() as u64;
    let answers = futures_util::future::join_all((0..20).map(|_| {
        let (base, body) = (app.ingest_address.clone(), body.clone());
        tokio::spawn(async move { counts(post(&base, &body, Some(&signature(&body))).await).await })
    }))
    .await;
    let answers: Vec<(u64, u64)> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert!(answers.iter().all(|(s, d)| s + d == items), "{answers:?}");
    assert_eq!(answers.iter().map(|(s, _)| s).sum::<u64>(), items);
    assert_eq!(inbox_count(&app.database_url).await, 1 + items as i64);
    app.stop().await;
}

#[tokio::test]
async fn many_distinct_webhooks_at_once_each_get_their_own_counts() {
    let app = ingest_app().await;
    // Body i: i % 4 + 1 fresh messages, and for every third body one of them twice.
    let bodies: Vec<(Vec<u8>, Vec<String>, u64)> = (0..60)
        .map(|i| {
            let (body, wamids) = text_messages(i % 4 + 1, 0, 0);
            if i % 3 == 0 {
                let mut value: Value = serde_json::from_slice(&body).unwrap();
                let messages = value["entry"][0]["changes"][0]["value"]["messages"]
                    .as_array_mut()
                    .unwrap();
                let first = messages[0].clone();
                messages.push(first);
                (serde_json::to_vec(&value).unwrap(), wamids, 1)
            } else {
                (body, wamids, 0)
            }
        })
        .collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|(body, _, _)| {
        let (base, body) = (app.ingest_address.clone(), body.clone());
        tokio::spawn(async move { counts(post(&base, &body, Some(&signature(&body))).await).await })
    }))
    .await;
    let mut total = 0;
    for ((body, wamids, repeated), answer) in bodies.iter().zip(answers) {
        assert_eq!(
            answer.unwrap(),
            (wamids.len() as u64, *repeated),
            "counts of a body"
        );
        let keys: Vec<String> = distinct(expected_rows(body))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), wamids.len());
        assert_eq!(stored(&app.database_url, &keys).await.len(), keys.len());
        total += keys.len() as i64;
    }
    assert_eq!(inbox_count(&app.database_url).await, total);
    // The ingest really grouped them: fewer transactions than bodies.
    let transactions: i64 = admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT count(DISTINCT transaction_id) FROM whatsapp_inbox",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        transactions < bodies.len() as i64,
        "{transactions} transactions for {} bodies",
        bodies.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_a_503_for_every_body_and_stores_nothing() {
    let app = ingest_app().await;
    let admin = admin_client(&dbname(&app.database_url)).await;
    // Only in this test's database: the platform role may no longer insert into the inbox.
    admin
        .batch_execute("REVOKE INSERT ON whatsapp_inbox FROM loyalty_platform")
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = (0..10).map(|i| text_messages(i % 3 + 1, 1, 0).0).collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|body| {
        let (base, body) = (app.ingest_address.clone(), body.clone());
        tokio::spawn(async move { post(&base, &body, Some(&signature(&body))).await })
    }))
    .await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 503);
        assert!(answer.headers().contains_key("retry-after"));
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(inbox_count(&app.database_url).await, 0);
    // Meta's retries succeed once the database takes the rows again.
    admin
        .batch_execute("GRANT INSERT ON whatsapp_inbox TO loyalty_platform")
        .await
        .unwrap();
    for body in &bodies {
        let items = distinct(expected_rows(body)).len() as u64;
        assert_eq!(counts(post_signed(&app, body).await).await, (items, 0));
    }
    let metrics = reqwest::get(format!("{}/metrics", app.ingest_address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("loyalty_whatsapp_ingest_store_failures_total 10"));
    app.stop().await;
}

#[tokio::test]
async fn an_append_that_stores_a_message_notifies_loyalty_inbox_once_and_duplicates_or_statuses_do_not(
) {
    use futures_util::StreamExt;
    let database_url = fresh_database().await;
    let (listener, mut connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (notified, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = notified.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute("LISTEN loyalty_inbox")
        .await
        .unwrap();
    let settings = test_settings(&database_url);
    let pool = schema::db::pool(&settings.platform_db()).unwrap();
    let client = pool.get().await.unwrap();
    let vault = test_vault();
    let (body, _) = text_messages(3, 2, 0);
    let items = items_of(&parse(&body).unwrap(), &vault).unwrap();
    let appended = schema::inbox::append(&client, &items).await.unwrap();
    assert_eq!((appended.inserted, appended.duplicates), (5, 0));
    let first = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("no notification after an append that stored rows");
    assert_eq!(
        first,
        Some((schema::wake::INBOX_CHANNEL.to_owned(), String::new()))
    );
    // All duplicates: nothing stored, nobody woken.
    let appended = schema::inbox::append(&client, &items).await.unwrap();
    assert_eq!((appended.inserted, appended.duplicates), (0, 5));
    // Statuses only: stored, and nobody woken (no one waits on a status; notifying
    // transactions serialize their commits in PostgreSQL).
    let (body, _) = text_messages(0, 3, 0);
    let statuses = items_of(&parse(&body).unwrap(), &vault).unwrap();
    let appended = schema::inbox::append(&client, &statuses).await.unwrap();
    assert_eq!((appended.inserted, appended.duplicates), (3, 0));
    // One more that stores: exactly one notification for it (none for the duplicates).
    let (body, _) = text_messages(2, 0, 0);
    let more = items_of(&parse(&body).unwrap(), &vault).unwrap();
    assert_eq!(
        schema::inbox::append_returning_keys(&client, &more)
            .await
            .unwrap()
            .len(),
        2
    );
    let second = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("no notification after the second append that stored rows");
    assert!(second.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        notifications.try_recv().is_err(),
        "a notification for duplicates or statuses, or more than one per append"
    );
}
