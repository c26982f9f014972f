//! The relay and a NATS outage: with NATS stopped, purchases and enrolments still succeed;
//! when NATS comes back every event arrives on the JetStream stream exactly once.
//!
//! The test runs its own `nats-server` (JetStream, file store in a temporary directory) so
//! that it can kill it with SIGKILL and start it again on the same port and store, without
//! disturbing the shared server other tests use.

use crate::helpers::{self, TestApp};
use async_nats::jetstream;
use loyalty::app::Components;
use projections::envelope::EventEnvelope;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// Longest wait for one HTTP answer: a write blocked by the NATS outage fails here.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// How long NATS stays down: longer than a JetStream publish acknowledgement is awaited
/// (async-nats: 5 s), so the relay's batch in flight fails and is re-published after the
/// outage, which is what JetStream's de-duplication by `Nats-Msg-Id` has to absorb.
const NATS_OUTAGE: Duration = Duration::from_secs(7);

/// Longest wait for the balances projector to apply every event after the outage: messages
/// it had been handed but had not acknowledged when NATS died come back only after the
/// consumer's ack wait (30 s), then its retry delay (up to 5 s) and a margin.
const PROJECTION_LIMIT: Duration = Duration::from_secs(50);

/// A `nats-server` child process of this test, killed on drop (also on panic).
pub(crate) struct PrivateNats {
    port: u16,
    root: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub(crate) fn start() -> PrivateNats {
        let root =
            std::env::temp_dir().join(format!("loyalty-relay-it-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(root.join("store")).unwrap_or_else(|e| {
            panic!(
                "cannot create the NATS store directory under {}: {e}",
                root.display()
            )
        });
        let mut server = PrivateNats {
            port: helpers::free_port(),
            root,
            child: None,
        };
        server.spawn();
        server
    }

    /// NATS_SERVER_BIN, else Debian's /usr/sbin/nats-server (not on a non-root PATH),
    /// else whatever `nats-server` the PATH finds.
    fn binary() -> String {
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            let debian = "/usr/sbin/nats-server";
            if std::path::Path::new(debian).exists() {
                debian.into()
            } else {
                "nats-server".into()
            }
        })
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("nats-server.log")
    }

    /// Starts the server on this port and store (again, after a kill).
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the nats-server log file");
        let child = Command::new(Self::binary())
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.root.join("store"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs the `{}` binary (JetStream-capable nats-server on PATH, or set \
                     NATS_SERVER_BIN): {e}",
                    Self::binary()
                )
            });
        self.child = Some(child);
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then reap: no graceful shutdown, no flush.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("killing nats-server");
            child.wait().expect("reaping nats-server");
        }
    }

    /// Panics if the server process has exited on its own.
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("nats-server was not started");
        if let Some(status) = child.try_wait().expect("polling nats-server") {
            panic!(
                "nats-server exited on its own ({status}); its log is {}",
                self.log_path().display()
            );
        }
    }

    /// Waits (bounded) until the server accepts TCP connections on its port.
    pub(crate) async fn wait_listening(&mut self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let what = format!("nats-server to listen on {address}");
        helpers::wait_for(Duration::from_secs(15), &what, || {
            self.assert_running();
            let listening =
                TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok();
            std::future::ready(listening)
        })
        .await;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        helpers::kill_child(self.child.take());
        if std::thread::panicking() {
            eprintln!(
                "relay test failed: nats-server log and store kept in {}",
                self.root.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Messages in the stream and its last sequence, or `None` while the stream cannot be read
/// (not created yet, server down or still recovering).
async fn stream_state(context: &jetstream::Context, name: &str) -> Option<(u64, u64, u64)> {
    let stream = context.get_stream(name).await.ok()?;
    let state = &stream.cached_info().state;
    Some((state.messages, state.first_sequence, state.last_sequence))
}

async fn count_events(client: &tokio_postgres::Client) -> u64 {
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("counting events")
        .get(0);
    u64::try_from(count).expect("a non-negative count")
}

/// Enrols a customer, failing if the API does not answer 201 within [`REQUEST_LIMIT`].
async fn enrol(app: &TestApp, phase: &str) -> Uuid {
    tokio::time::timeout(REQUEST_LIMIT, app.enrolled_customer(&helpers::phone()))
        .await
        .unwrap_or_else(|_| {
            panic!("POST /v1/customers did not answer within {REQUEST_LIMIT:?} ({phase})")
        })
}

/// Posts one purchase with a fresh Idempotency-Key; asserts 201 and returns the points the
/// response says were earned.
async fn purchase(app: &TestApp, customer: Uuid, amount_minor: i64, phase: &str) -> i64 {
    let key = format!("relay-it-{}", Uuid::now_v7());
    let response = tokio::time::timeout(
        REQUEST_LIMIT,
        app.post_purchase(&key, &helpers::purchase(customer, amount_minor)),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("POST /v1/purchases did not answer within {REQUEST_LIMIT:?} ({phase})")
    });
    let status = response.status();
    let body = response
        .text()
        .await
        .expect("reading the purchase response");
    assert_eq!(status, 201, "purchase {phase} was not accepted: {body}");
    let body: Value = serde_json::from_str(&body).expect("the purchase response is JSON");
    body["points_earned"]
        .as_i64()
        .unwrap_or_else(|| panic!("no points_earned in the purchase response: {body}"))
}

async fn ready_status(app: &TestApp) -> Option<u16> {
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        app.http.get(app.url("/ready")).send(),
    )
    .await
    .ok()?
    .ok()?;
    Some(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_writes_succeed_and_every_event_reaches_the_stream_exactly_once() {
    let mut nats = PrivateNats::start();
    nats.wait_listening().await;

    let database_url = helpers::fresh_database().await;
    let mut settings = helpers::test_settings(&database_url);
    settings.nats_url = nats.url();
    let stream_name = settings.nats_stream.clone();
    let nats_settings = settings.nats();
    let app = TestApp::start(
        settings,
        Components {
            expiry_schedule: false,
            ..Components::ALL
        },
    )
    .await;
    let db = helpers::admin_client(&helpers::dbname(&database_url)).await;
    let nats_client = async_nats::ConnectOptions::new()
        .name("relay-it-observer")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(nats.url())
        .await
        .expect("connecting the test's NATS client");
    let context = jetstream::new(nats_client);

    // Expected balance of each customer, from what the 201 responses said.
    let mut expected_points: HashMap<Uuid, i64> = HashMap::new();

    // Phase 1: NATS up. Everything written so far reaches the stream.
    let mut customers = Vec::new();
    for _ in 0..3 {
        let customer = enrol(&app, "with NATS up").await;
        expected_points.insert(customer, 0);
        customers.push(customer);
    }
    for i in 0..12_i64 {
        let customer = customers[usize::try_from(i).unwrap() % customers.len()];
        let points = purchase(&app, customer, 10_000 * (1 + i % 7) + 2_500, "with NATS up").await;
        *expected_points.get_mut(&customer).unwrap() += points;
    }
    let events_before_outage = count_events(&db).await;
    helpers::wait_for(
        Duration::from_secs(30),
        "the stream to hold every event written while NATS was up",
        || async {
            let events = count_events(&db).await;
            matches!(stream_state(&context, &stream_name).await, Some((messages, _, _)) if messages == events)
        },
    )
    .await;

    // Phase 2: NATS killed. Writes must not notice.
    nats.kill();
    let outage_started = tokio::time::Instant::now();
    helpers::wait_for(
        Duration::from_secs(15),
        "GET /ready to answer 503 while NATS is down",
        || async { ready_status(&app).await == Some(503) },
    )
    .await;
    for _ in 0..3 {
        let customer = enrol(&app, "while NATS is down").await;
        expected_points.insert(customer, 0);
        customers.push(customer);
    }
    for i in 0..18_i64 {
        let customer = customers[usize::try_from(i).unwrap() % customers.len()];
        let points = purchase(
            &app,
            customer,
            10_000 * (1 + i % 5) + 7_000,
            "while NATS is down",
        )
        .await;
        *expected_points.get_mut(&customer).unwrap() += points;
    }
    let events_total = count_events(&db).await;
    let by_type: HashMap<String, i64> = db
        .query(
            "SELECT event_type, count(*) FROM events GROUP BY event_type",
            &[],
        )
        .await
        .expect("counting events by type")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        (
            by_type.get("CustomerEnrolled"),
            by_type.get("PurchaseLogged")
        ),
        (Some(&6), Some(&30)),
        "6 enrolments and 30 purchases were answered 201, 3 and 18 of them while NATS was down; \
         events by type: {by_type:?}"
    );
    let published_during_outage: i64 = db
        .query_one(
            "SELECT published_total FROM relay_cursors WHERE name = 'main'",
            &[],
        )
        .await
        .expect("reading the relay cursor")
        .get(0);
    assert!(
        u64::try_from(published_during_outage).unwrap() <= events_before_outage,
        "the relay claims {published_during_outage} events published while NATS was down, \
         but only {events_before_outage} existed before the outage"
    );

    // The outage lasts its chosen length (a scenario parameter, not a wait for async work).
    tokio::time::sleep_until(outage_started + NATS_OUTAGE).await;

    // Phase 3: NATS back on the same port and store. The relay catches up, exactly once.
    nats.spawn();
    nats.wait_listening().await;
    helpers::wait_for(
        Duration::from_secs(60),
        "the stream to hold as many messages as the events table has rows after NATS came back",
        || async {
            matches!(stream_state(&context, &stream_name).await, Some((messages, _, _)) if messages >= events_total)
        },
    )
    .await;
    helpers::wait_for(
        Duration::from_secs(30),
        "the relay cursor 'main' to reach the last event",
        || async {
            let row = db
                .query_one(
                    "SELECT c.published_total, \
                         c.last_transaction_id = e.transaction_id AND c.last_global_position = e.global_position \
                     FROM relay_cursors c, \
                         (SELECT transaction_id, global_position FROM events \
                          ORDER BY transaction_id DESC, global_position DESC LIMIT 1) e \
                     WHERE c.name = 'main'",
                    &[],
                )
                .await
                .expect("reading the relay cursor");
            let published: i64 = row.get(0);
            let at_last: bool = row.get(1);
            at_last && u64::try_from(published).unwrap() >= events_total
        },
    )
    .await;

    let (messages, first_sequence, last_sequence) = stream_state(&context, &stream_name)
        .await
        .expect("reading the stream state after the relay caught up");
    let event_ids: HashSet<Uuid> = db
        .query("SELECT event_id FROM events", &[])
        .await
        .expect("reading event ids")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(u64::try_from(event_ids.len()).unwrap(), events_total);
    let stream = context
        .get_stream(&stream_name)
        .await
        .expect("opening the stream");
    let mut message_ids = Vec::new();
    // Per entity stream (customer or tenant), the version last seen on the JetStream stream.
    let mut versions: HashMap<String, i32> = HashMap::new();
    let mut out_of_order = Vec::new();
    for sequence in first_sequence..=last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|e| panic!("reading stream message {sequence}: {e}"));
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap_or_else(|| panic!("stream message {sequence} has no Nats-Msg-Id header"))
            .as_str()
            .to_owned();
        let id = Uuid::parse_str(&id)
            .unwrap_or_else(|_| panic!("Nats-Msg-Id {id:?} is not an event id"));
        let envelope = EventEnvelope::decode(&message.payload)
            .unwrap_or_else(|e| panic!("stream message {sequence} is not an event envelope: {e}"));
        assert_eq!(
            envelope.event_id, id,
            "message {sequence}: Nats-Msg-Id differs from the envelope's event id"
        );
        assert_eq!(
            message.subject.as_str(),
            nats_settings.subject_for(&envelope.tenant_id),
            "message {sequence} is on the wrong subject"
        );
        let previous = versions
            .insert(envelope.stream_id.clone(), envelope.version)
            .unwrap_or(0);
        if envelope.version != previous + 1 {
            out_of_order.push(format!(
                "stream sequence {sequence}: {} version {} after version {previous}",
                envelope.stream_id, envelope.version
            ));
        }
        message_ids.push(id);
    }
    let distinct: HashSet<Uuid> = message_ids.iter().copied().collect();
    eprintln!(
        "relay test: {events_before_outage} events before the outage, {events_total} in all; \
         stream holds {messages} messages (sequences {first_sequence}..={last_sequence}), {} distinct ids",
        distinct.len()
    );
    assert_eq!(
        distinct.len(),
        message_ids.len(),
        "the stream holds duplicate event ids ({} messages, {} distinct)",
        message_ids.len(),
        distinct.len()
    );
    assert_eq!(
        messages, events_total,
        "stream message count differs from the events count"
    );
    assert_eq!(
        u64::try_from(message_ids.len()).unwrap(),
        events_total,
        "messages read from the stream differ in number from the events"
    );
    let missing: Vec<&Uuid> = event_ids.difference(&distinct).collect();
    let unknown: Vec<&Uuid> = distinct.difference(&event_ids).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "stream and events table differ: {} events never reached the stream {missing:?}, \
         {} messages are no event {unknown:?}",
        missing.len(),
        unknown.len()
    );

    // Projectors apply each entity stream in version order; the relay publishes in the
    // table's safe-position order, which is version order per entity stream.
    assert!(
        out_of_order.is_empty(),
        "the JetStream stream does not hold each entity stream's events in version order after the \
         outage ({} messages out of order): {out_of_order:#?}",
        out_of_order.len()
    );

    // The projector, fed by the same stream, caught up and agrees with the responses.
    helpers::wait_for(
        Duration::from_secs(30),
        "GET /ready to answer 200 again after NATS came back",
        || async { ready_status(&app).await == Some(200) },
    )
    .await;
    crate::crash::wait_until_projected_or_explain(
        &db,
        &nats.url(),
        &stream_name,
        PROJECTION_LIMIT,
        || nats.assert_running(),
    )
    .await;
    app.wait_until_projected().await;
    let projected: HashMap<Uuid, i64> = db
        .query(
            "SELECT customer_id, balance FROM projection.customer_balances",
            &[],
        )
        .await
        .expect("reading the balances read model")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        projected, expected_points,
        "the balances read model differs from the points the purchases were answered with"
    );

    app.stop().await;
    drop(nats);
}
