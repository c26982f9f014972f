//! The crash test: the real `loyalty all` binary is killed with SIGKILL while clients are
//! sending purchases, restarted, and every purchase that got no answer is retried with the
//! same Idempotency-Key and body. Afterwards the ledger must hold every purchase exactly
//! once, the answers must agree with the events, the balances read model must equal a
//! replay of the events, and the tenant's hash chain must verify.

use crate::helpers;
use futures_util::FutureExt;
use ledger_core::chain::{ChainVerifier, StoredLink};
use ledger_core::{codec, evolve, CustomerState, Event, EventId, StreamId, TenantId};
use schema::store::RecordedEvent;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_loyalty");
const CUSTOMERS: usize = 20;
const WORKERS: usize = 8;
const PURCHASES_PER_WORKER: usize = 60;
/// The process is killed once this many purchases have been answered 201.
const KILL_AFTER_ANSWERED: usize = 150;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the restarted process's balances projector to apply every event: the
/// consumer's ack wait (30 s: messages the killed process had fetched but not acknowledged
/// come back only then) plus the projector's longest retry delay (5 s) and a margin.
const PROJECTION_LIMIT: Duration = Duration::from_secs(42);

/// One purchase a client means to make: recorded before anything is sent.
struct Intention {
    key: String,
    customer: Uuid,
    amount_minor: i64,
    body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Attempt {
    NotSent,
    InFlight,
    /// Transport error, timeout, or the connection died before the whole answer arrived.
    NoAnswer(String),
    Answered {
        status: u16,
        body: Vec<u8>,
    },
}

/// A `loyalty` child process, killed (SIGKILL) on drop so it never outlives the test.
struct LoyaltyProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl LoyaltyProcess {
    fn spawn(args: &[&str], env: &[(String, String)], log: PathBuf) -> LoyaltyProcess {
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening the child's log file");
        let child = command(args, env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning the log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY} {args:?}: {e}"));
        LoyaltyProcess {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL (`Child::kill` on Unix), then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("killing the loyalty process");
            child.wait().expect("reaping the loyalty process");
        }
    }

    fn assert_running(&mut self) {
        let child = self
            .child
            .as_mut()
            .expect("the loyalty process was killed already");
        if let Some(status) = child.try_wait().expect("polling the loyalty process") {
            panic!(
                "`loyalty all` exited on its own ({status}); log:\n{}",
                tail(&self.log, 40)
            );
        }
    }
}

impl Drop for LoyaltyProcess {
    fn drop(&mut self) {
        helpers::kill_child(self.child.take());
        if std::thread::panicking() {
            eprintln!(
                "crash test failed; last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 40)
            );
        }
    }
}

/// Removes the test's scratch directory, unless the test failed (the logs are kept then).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("crash test failed: logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command.args(args);
    // Only the settings this test chooses reach the child.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LOYALTY_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

/// `loyalty tenant create --json`, through the real CLI; returns (tenant_id, api_key).
async fn create_tenant_with_cli(env: &[(String, String)]) -> (Uuid, String) {
    let mut command = tokio::process::Command::from(command(
        &[
            "tenant",
            "create",
            "--name",
            "Crash Test Shop",
            "--vendor-code",
            &helpers::unique_vendor_code(),
            "--json",
        ],
        env,
    ));
    command.kill_on_drop(true).stdin(Stdio::null());
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("`loyalty tenant create` did not finish within 30 s")
        .expect("running `loyalty tenant create`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "`loyalty tenant create` failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!("`loyalty tenant create --json` printed no JSON line:\n{stdout}\n{stderr}")
        });
    let created: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let tenant_id = created["tenant_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no tenant_id in {line}"));
    let api_key = created["api_key"]
        .as_str()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| panic!("no api_key in {line}"))
        .to_owned();
    (tenant_id, api_key)
}

async fn wait_healthy(
    process: &mut LoyaltyProcess,
    http: &reqwest::Client,
    base: &str,
    what: &str,
) {
    let url = format!("{base}/health");
    helpers::wait_for(Duration::from_secs(30), what, || {
        process.assert_running();
        let request = http.get(&url).send();
        async move { matches!(request.await, Ok(response) if response.status() == 200) }
    })
    .await;
}

fn intentions(customers: &[Uuid], rng: &mut helpers::Rng) -> Vec<Intention> {
    let count = i64::try_from(customers.len()).expect("a small number of customers");
    (0..WORKERS * PURCHASES_PER_WORKER)
        .map(|i| {
            let customer = customers[usize::try_from(rng.range(0, count)).expect("an index")];
            let amount_minor = rng.range(1_000, 500_001);
            let body = serde_json::to_vec(&serde_json::json!({
                "customer_id": customer,
                "amount_minor": amount_minor,
                "line_items": [{ "sku": "CRASH-1", "quantity": 1, "unit_price_minor": amount_minor }],
                "reference": format!("crash-test-{i}"),
            }))
            .expect("serialising a purchase");
            Intention {
                key: format!("crash-{}", Uuid::now_v7()),
                customer,
                amount_minor,
                body,
            }
        })
        .collect()
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    api_key: &str,
    intention: &Intention,
) -> Result<(u16, Vec<u8>), String> {
    let response = http
        .post(url)
        .bearer_auth(api_key)
        .header("Idempotency-Key", &intention.key)
        .header("Content-Type", "application/json")
        .body(intention.body.clone())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("status {status} but the body was lost: {e:?}"))?;
    Ok((status, body.to_vec()))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .expect("building the HTTP client")
}

struct Answer {
    purchase_id: Uuid,
    customer: Uuid,
    amount_minor: i64,
    points_earned: i64,
}

fn parse_answer(index: usize, body: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(body);
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("answer to intention {index} is not JSON ({e}): {text}"));
    let uuid = |field: &str| {
        json[field]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or_else(|| panic!("answer to intention {index} has no {field}: {text}"))
    };
    let integer = |field: &str| {
        json[field]
            .as_i64()
            .unwrap_or_else(|| panic!("answer to intention {index} has no {field}: {text}"))
    };
    Answer {
        purchase_id: uuid("purchase_id"),
        customer: uuid("customer_id"),
        amount_minor: integer("amount_minor"),
        points_earned: integer("points_earned"),
    }
}

async fn load_events(db: &tokio_postgres::Client) -> Vec<RecordedEvent> {
    let hash = |bytes: Vec<u8>| <[u8; 32]>::try_from(bytes.as_slice()).expect("a 32-byte hash");
    db.query(
        "SELECT event_id, tenant_id, tenant_sequence, stream_id, version, event_type, type_version, \
             payload, metadata, recorded_at, previous_hash, hash \
         FROM events ORDER BY tenant_id, tenant_sequence",
        &[],
    )
    .await
    .expect("reading the events table")
    .iter()
    .map(|row| RecordedEvent {
        event_id: EventId::from_uuid(row.get(0)),
        tenant_id: TenantId::from_uuid(row.get(1)),
        tenant_sequence: row.get(2),
        stream_id: row.get(3),
        version: row.get(4),
        event_type: row.get(5),
        type_version: row.get(6),
        payload: row.get(7),
        metadata: row.get(8),
        recorded_at: row.get(9),
        previous_hash: hash(row.get(10)),
        hash: hash(row.get(11)),
        position: None,
    })
    .collect()
}

fn decode(event: &RecordedEvent) -> Event {
    let type_version = u16::try_from(event.type_version).expect("a positive type version");
    codec::decode(&event.event_type, type_version, &event.payload).unwrap_or_else(|e| {
        panic!(
            "event {} ({} v{type_version}) does not decode: {e}",
            event.event_id.as_uuid(),
            event.event_type
        )
    })
}

/// Waits (bounded by `limit`) until the balances read model reflects every customer event;
/// `check` runs before each poll (e.g. to fail fast when a process died). On timeout, panics
/// with what a stuck projection looks like: lagging customers, checkpoint, consumer state.
pub(crate) async fn wait_until_projected_or_explain(
    db: &tokio_postgres::Client,
    nats_url: &str,
    stream_name: &str,
    limit: Duration,
    mut check: impl FnMut(),
) {
    let caught_up = tokio::time::timeout(
        limit,
        helpers::wait_for(
            limit + Duration::from_secs(5),
            "the balances projection to catch up",
            || {
                check();
                helpers::projection_caught_up(db)
            },
        ),
    )
    .await
    .is_ok();
    if !caught_up {
        panic!(
            "the balances projection did not catch up within {limit:?}: {}",
            projection_diagnostics(db, nats_url, stream_name).await
        );
    }
}

async fn projection_diagnostics(
    db: &tokio_postgres::Client,
    nats_url: &str,
    stream_name: &str,
) -> String {
    let lagging: Vec<String> = db
        .query(
            "SELECT e.stream_id, coalesce(b.stream_version, 0), e.version FROM \
               (SELECT stream_id, substr(stream_id, 10)::uuid AS customer_id, max(version) AS version \
                FROM events WHERE stream_id LIKE 'customer-%' GROUP BY stream_id) e \
             LEFT JOIN projection.customer_balances b USING (customer_id) \
             WHERE b.stream_version IS DISTINCT FROM e.version ORDER BY 1",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|row| format!("{} at {} of {}", row.get::<_, String>(0), row.get::<_, i32>(1), row.get::<_, i32>(2)))
                .collect()
        })
        .unwrap_or_default();
    let checkpoint = db
        .query_opt(
            "SELECT last_stream_sequence, applied_total FROM projector_checkpoints WHERE name = 'balances'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|row| format!("last_stream_sequence {}, applied_total {}", row.get::<_, i64>(0), row.get::<_, i64>(1)))
        .unwrap_or_else(|| "none".into());
    let consumer = async {
        let client = async_nats::connect(nats_url).await.ok()?;
        let stream = async_nats::jetstream::new(client)
            .get_stream(stream_name)
            .await
            .ok()?;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(projections::balances::NAME)
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        Some(format!(
            "delivered up to stream sequence {}, ack floor {}, {} awaiting ack, {} not yet delivered, \
             {} redelivered, {} pull requests waiting",
            info.delivered.stream_sequence,
            info.ack_floor.stream_sequence,
            info.num_ack_pending,
            info.num_pending,
            info.num_redelivered,
            info.num_waiting
        ))
    };
    let consumer = tokio::time::timeout(Duration::from_secs(5), consumer)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "unavailable".into());
    format!(
        "{} customers lag in the read model {:?}; projector checkpoint: {checkpoint}; JetStream consumer: {consumer}",
        lagging.len(),
        lagging.iter().take(5).collect::<Vec<_>>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing_and_counts_nothing_twice() {
    let started = Instant::now();
    let scratch = ScratchDir(
        std::env::temp_dir().join(format!("loyalty-crash-it-{}", Uuid::now_v7().simple())),
    );
    std::fs::create_dir_all(&scratch.0).expect("creating the scratch directory");

    let database_url = helpers::fresh_database().await;
    let db = helpers::admin_client(&helpers::dbname(&database_url)).await;
    let unique = Uuid::now_v7().simple().to_string();
    let stream_name = format!("LT_{unique}");
    let http_port = helpers::free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.clone()),
        ("NATS_URL", helpers::nats_url()),
        ("LOYALTY_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
        ("LOYALTY_HTTP_WORKERS", "2".to_owned()),
        ("LOYALTY_DB_POOL_SIZE", "8".to_owned()),
        ("LOYALTY_NATS_STREAM", stream_name.clone()),
        ("LOYALTY_NATS_SUBJECT_PREFIX", format!("lt{unique}.events")),
        ("LOYALTY_EXPIRY_INTERVAL_SECONDS", "86400".to_owned()),
        // The load comes from one address and one key, far above the default rate limits.
        ("LOYALTY_RATE_LIMIT_IP_PER_SECOND", "1000000".to_owned()),
        ("LOYALTY_RATE_LIMIT_IP_BURST", "1000000".to_owned()),
        (
            "LOYALTY_RATE_LIMIT_PRINCIPAL_PER_SECOND",
            "1000000".to_owned(),
        ),
        ("LOYALTY_RATE_LIMIT_PRINCIPAL_BURST", "1000000".to_owned()),
        ("LOYALTY_LOG_FORMAT", "text".to_owned()),
        ("LOYALTY_JWT_KEYS", helpers::random_jwt_keys()),
        ("RUST_LOG", "warn".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(helpers::key_env())
    .collect();

    let (tenant_id, api_key) = create_tenant_with_cli(&env).await;
    let http = http_client();
    let mut process = LoyaltyProcess::spawn(&["all"], &env, scratch.0.join("loyalty-1.log"));
    wait_healthy(
        &mut process,
        &http,
        &base,
        "GET /health = 200 from the first `loyalty all`",
    )
    .await;

    let mut customers = Vec::with_capacity(CUSTOMERS);
    for _ in 0..CUSTOMERS {
        let response = http
            .post(format!("{base}/v1/customers"))
            .bearer_auth(&api_key)
            .json(&serde_json::json!({ "phone": helpers::phone() }))
            .send()
            .await
            .expect("POST /v1/customers");
        let status = response.status();
        let body: Value = response.json().await.expect("the enrolment answer is JSON");
        assert_eq!(status, 201, "enrolment failed: {body}");
        customers.push(
            Uuid::parse_str(body["customer_id"].as_str().expect("customer_id")).expect("a uuid"),
        );
    }

    // The ledger of intentions, written before any purchase is sent.
    let (mut rng, seed) = helpers::Rng::seeded();
    eprintln!("crash test: TEST_SEED={seed}");
    let intentions = Arc::new(intentions(&customers, &mut rng));
    let attempts = Arc::new(Mutex::new(vec![Attempt::NotSent; intentions.len()]));
    let answered_201 = Arc::new(AtomicUsize::new(0));
    let purchases_url = format!("{base}/v1/purchases");
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (intentions, attempts, answered_201) =
                (intentions.clone(), attempts.clone(), answered_201.clone());
            let (http, url, api_key) = (http.clone(), purchases_url.clone(), api_key.clone());
            tokio::spawn(async move {
                for index in (worker..intentions.len()).step_by(WORKERS) {
                    attempts.lock().unwrap()[index] = Attempt::InFlight;
                    let attempt = match send(&http, &url, &api_key, &intentions[index]).await {
                        Ok((status, body)) => {
                            if status == 201 {
                                answered_201.fetch_add(1, Ordering::SeqCst);
                            }
                            Attempt::Answered { status, body }
                        }
                        Err(error) => Attempt::NoAnswer(error),
                    };
                    attempts.lock().unwrap()[index] = attempt;
                }
            })
        })
        .collect();

    helpers::wait_for(
        Duration::from_secs(30),
        &format!("{KILL_AFTER_ANSWERED} purchases to be answered 201 before the kill"),
        || {
            process.assert_running();
            let refused =
                attempts
                    .lock()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .find_map(|(index, attempt)| match attempt {
                        Attempt::Answered { status, body } if (400..500).contains(status) => {
                            Some((index, *status, String::from_utf8_lossy(body).into_owned()))
                        }
                        _ => None,
                    });
            if let Some((index, status, body)) = refused {
                panic!("before the kill, purchase {index} was refused with {status}: {body}");
            }
            std::future::ready(answered_201.load(Ordering::SeqCst) >= KILL_AFTER_ANSWERED)
        },
    )
    .await;
    process.kill();
    let at_kill = attempts.lock().unwrap().clone();
    let answered_at_kill = answered_201.load(Ordering::SeqCst);
    let in_flight_at_kill = at_kill
        .iter()
        .filter(|a| matches!(a, Attempt::InFlight))
        .count();
    let unsent_at_kill = at_kill
        .iter()
        .filter(|a| matches!(a, Attempt::NotSent))
        .count();
    assert!(
        in_flight_at_kill + unsent_at_kill > 0,
        "every purchase was answered before the kill: the test killed an idle process"
    );
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("a client task did not finish within 30 s after the kill")
            .expect("a client task panicked");
    }
    let attempts = Arc::try_unwrap(attempts)
        .expect("client tasks are done")
        .into_inner()
        .unwrap();

    let first_failure = attempts
        .iter()
        .find_map(|a| match a {
            Attempt::NoAnswer(error) => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_default();
    eprintln!("crash test: first request without an answer failed with: {first_failure}");
    let mut answers: Vec<Option<(u16, Vec<u8>)>> = Vec::with_capacity(intentions.len());
    let mut answered_before = Vec::new();
    let mut to_retry = Vec::new();
    let mut non_201_before = Vec::new();
    for (index, attempt) in attempts.iter().enumerate() {
        match attempt {
            Attempt::Answered { status: 201, body } => {
                answered_before.push(index);
                answers.push(Some((201, body.clone())));
            }
            Attempt::Answered { status, body } => {
                assert!(
                    *status >= 500,
                    "purchase {index} was refused with {status}: {}",
                    String::from_utf8_lossy(body)
                );
                non_201_before.push((index, *status));
                to_retry.push(index);
                answers.push(None);
            }
            Attempt::NoAnswer(_) => {
                to_retry.push(index);
                answers.push(None);
            }
            Attempt::NotSent | Attempt::InFlight => {
                panic!("purchase {index} was never attempted: {attempt:?}")
            }
        }
    }

    // Restart with the same settings; every unanswered intention is retried as it was.
    let mut process = LoyaltyProcess::spawn(&["all"], &env, scratch.0.join("loyalty-2.log"));
    let http = http_client();
    wait_healthy(
        &mut process,
        &http,
        &base,
        "GET /health = 200 from the restarted `loyalty all`",
    )
    .await;
    let retry_keys: Vec<String> = to_retry
        .iter()
        .map(|&i| intentions[i].key.clone())
        .collect();
    let committed_unanswered: i64 = db
        .query_one(
            "SELECT count(*) FROM idempotency_records WHERE tenant_id = $1 AND idempotency_key = ANY($2)",
            &[&tenant_id, &retry_keys],
        )
        .await
        .expect("counting idempotency records")
        .get(0);

    let retry_deadline = Instant::now() + Duration::from_secs(30);
    for &index in &to_retry {
        let mut last = String::new();
        loop {
            assert!(
                Instant::now() < retry_deadline,
                "purchase {index} (key {}) was not answered 201 within 30 s of retrying after the restart; \
                 last answer: {last}",
                intentions[index].key
            );
            match send(&http, &purchases_url, &api_key, &intentions[index]).await {
                Ok((201, body)) => {
                    answers[index] = Some((201, body));
                    break;
                }
                Ok((status, body)) => {
                    assert!(
                        status >= 500,
                        "retried purchase {index} was refused with {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                    last = format!("{status} {}", String::from_utf8_lossy(&body));
                }
                Err(error) => last = error,
            }
            process.assert_running();
            // Back off a little before the next attempt of a request that failed.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A replay of an answered purchase is the first answer, byte for byte, across the crash.
    let step = (answered_before.len() / 20).max(1);
    let mut replayed = 0;
    for &index in answered_before.iter().step_by(step) {
        let (status, body) = send(&http, &purchases_url, &api_key, &intentions[index])
            .await
            .unwrap_or_else(|e| panic!("re-sending answered purchase {index}: {e}"));
        let first = &answers[index].as_ref().expect("answered").1;
        assert_eq!(
            status,
            201,
            "re-sent purchase {index}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            &body,
            first,
            "re-sent purchase {index} was not answered with the first response's bytes:\nfirst: {}\nagain: {}",
            String::from_utf8_lossy(first),
            String::from_utf8_lossy(&body)
        );
        replayed += 1;
    }

    // What the clients were told, per purchase.
    let mut told: HashMap<Uuid, (usize, Answer)> = HashMap::new();
    for (index, answer) in answers.iter().enumerate() {
        let (_, body) = answer.as_ref().expect("every purchase is answered by now");
        let answer = parse_answer(index, body);
        let intention = &intentions[index];
        assert_eq!(
            answer.customer, intention.customer,
            "purchase {index} answered for another customer"
        );
        assert_eq!(
            answer.amount_minor, intention.amount_minor,
            "purchase {index} answered with another amount"
        );
        if let Some((other, _)) = told.insert(answer.purchase_id, (index, answer)) {
            panic!("purchases {other} and {index} were answered with the same purchase_id");
        }
    }

    // (a) Exactly one PurchaseLogged per intention, one idempotency record per key.
    let events = load_events(&db).await;
    let mut logged: HashMap<Uuid, (Uuid, i64)> = HashMap::new();
    let mut earned_by_purchase: HashMap<Uuid, i64> = HashMap::new();
    let mut earned_by_customer: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut streams: HashMap<Uuid, Vec<&RecordedEvent>> = HashMap::new();
    for event in &events {
        let customer = match StreamId::parse(&event.stream_id) {
            Ok(StreamId::Customer(customer)) => customer.as_uuid(),
            Ok(StreamId::Tenant(_)) => continue,
            Err(e) => panic!(
                "event {} has a malformed stream id: {e}",
                event.event_id.as_uuid()
            ),
        };
        streams.entry(customer).or_default().push(event);
        match decode(event) {
            Event::PurchaseLogged(e) => {
                let previous = logged.insert(e.purchase_id.as_uuid(), (customer, e.amount.value()));
                assert!(
                    previous.is_none(),
                    "purchase {} logged twice",
                    e.purchase_id.as_uuid()
                );
            }
            Event::PointsEarned(e) => {
                *earned_by_purchase
                    .entry(e.purchase_id.as_uuid())
                    .or_default() += e.points.value();
                *earned_by_customer.entry(customer).or_default() += e.points.value();
            }
            _ => {}
        }
    }
    let purchase_logged = events
        .iter()
        .filter(|e| e.event_type == "PurchaseLogged")
        .count();
    assert_eq!(
        purchase_logged,
        intentions.len(),
        "PurchaseLogged events differ in number from the intentions"
    );
    for (purchase_id, (index, answer)) in &told {
        let &(customer, amount) = logged.get(purchase_id).unwrap_or_else(|| {
            panic!("purchase {index} was answered 201 ({purchase_id}) but never logged")
        });
        assert_eq!(
            (customer, amount),
            (answer.customer, answer.amount_minor),
            "purchase {index} was logged for another customer or amount"
        );
        assert_eq!(
            earned_by_purchase.get(purchase_id).copied().unwrap_or(0),
            answer.points_earned,
            "purchase {index}: the points in the ledger differ from the answer's points_earned"
        );
    }
    let keys: Vec<String> = db
        .query(
            "SELECT idempotency_key FROM idempotency_records WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await
        .expect("reading idempotency records")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let distinct_keys: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let intended_keys: HashSet<&str> = intentions.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys.len(),
        intentions.len(),
        "idempotency records differ in number from the intentions"
    );
    assert_eq!(
        distinct_keys, intended_keys,
        "idempotency records are not one per intention"
    );

    // (b) No purchase counted twice: per customer, the ledger's points equal the answers'.
    let mut answered_by_customer: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (_, answer) in told.values() {
        *answered_by_customer.entry(answer.customer).or_default() += answer.points_earned;
    }
    earned_by_customer.retain(|_, points| *points != 0);
    answered_by_customer.retain(|_, points| *points != 0);
    assert_eq!(
        earned_by_customer, answered_by_customer,
        "per customer, PointsEarned in the ledger differ from points_earned in the answers"
    );

    // (d) The tenant's hash chain verifies, up to its stored head. (Checked before (c), so a
    // projection that never catches up does not hide the chain's verdict.)
    let mut verifier = ChainVerifier::default();
    let tenant_events: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.tenant_id.as_uuid() == tenant_id)
        .collect();
    assert_eq!(
        tenant_events.len(),
        events.len(),
        "events of another tenant in a fresh database"
    );
    for event in &tenant_events {
        verifier
            .push(StoredLink {
                fields: event.chain_fields(),
                previous_hash: &event.previous_hash,
                hash: &event.hash,
            })
            .unwrap_or_else(|e| panic!("the hash chain breaks: {e}"));
    }
    let head = db
        .query_one(
            "SELECT sequence, head_hash FROM tenant_heads WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await
        .expect("reading the tenant head");
    let (sequence, hash) = verifier.head();
    assert_eq!(
        (i64::try_from(sequence).unwrap(), hash.to_vec()),
        (head.get::<_, i64>(0), head.get::<_, Vec<u8>>(1)),
        "the verified chain does not end at the stored tenant head"
    );

    eprintln!(
        "crash test: {} intentions; {answered_at_kill} answered 201 when killed ({} in all before the \
         kill; just after it {in_flight_at_kill} in flight, {unsent_at_kill} not yet sent); {} retried after the restart \
         ({committed_unanswered} of them had been committed but not answered; {} got a 5xx before); \
         {replayed} answered ones re-sent byte-identical; {} events; {:.1} s so far",
        intentions.len(),
        answered_before.len(),
        to_retry.len(),
        non_201_before.len(),
        events.len(),
        started.elapsed().as_secs_f64()
    );

    // (c) The read model, once caught up, equals a replay of the events.
    // (The restarted process runs the relay and the balances projector.)
    let projected = AssertUnwindSafe(wait_until_projected_or_explain(
        &db,
        &helpers::nats_url(),
        &stream_name,
        PROJECTION_LIMIT,
        || process.assert_running(),
    ))
    .catch_unwind()
    .await;
    if let Err(panic) = projected {
        // Remove this test's stream from the shared server before failing.
        process.kill();
        delete_stream(&stream_name).await;
        std::panic::resume_unwind(panic);
    }
    let projected: HashMap<Uuid, (i64, i64, i32)> = db
        .query(
            "SELECT customer_id, balance, earned, purchases FROM projection.customer_balances",
            &[],
        )
        .await
        .expect("reading the balances read model")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect();
    assert_eq!(
        projected.len(),
        CUSTOMERS,
        "the read model does not hold every customer"
    );
    for (customer, mut stream) in streams {
        stream.sort_by_key(|e| e.version);
        let state = stream
            .iter()
            .fold(CustomerState::default(), |state, event| {
                evolve(state, &decode(event))
            });
        let replayed_row = (
            state.balance.value(),
            state.earned.value(),
            i32::try_from(state.purchases).expect("purchases fit an i32"),
        );
        assert_eq!(
            projected.get(&customer),
            Some(&replayed_row),
            "customer {customer}: read model (balance, earned, purchases) differs from the replay"
        );
        assert_eq!(
            state.balance.value(),
            answered_by_customer.get(&customer).copied().unwrap_or(0),
            "customer {customer}: replayed balance differs from the points the answers gave"
        );
    }

    eprintln!(
        "crash test: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    process.kill();
    delete_stream(&stream_name).await;
}

/// The stream lives on the shared NATS server: remove it (best effort, bounded).
async fn delete_stream(stream_name: &str) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        helpers::delete_stream(&helpers::nats_url(), stream_name),
    )
    .await;
}
