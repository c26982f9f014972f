//! The event store: optimistic concurrency, append-only enforcement, and the tailing reader
//! that never misses an event committed out of order.

use crate::helpers::{admin_client, create_tenant, dbname, TestApp};
use chrono::Utc;
use ledger_core::chain::{ChainVerifier, StoredLink};
use ledger_core::events::{Actor, EventMetadata};
use ledger_core::{Command, CustomerId, Event, LotId, MinorUnits, PurchaseId, StreamId, TenantId};
use loyalty::app::Components;
use schema::store::{self, ExpectedVersion, Position, RecordedEvent, StoreError, TenantHead};
use schema::writer::{Outcome, Submission, WriterHandle};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn metadata() -> EventMetadata {
    EventMetadata {
        actor: Actor::System("test".into()),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    }
}

fn submission(tenant_id: TenantId, command: Command) -> Submission {
    Submission {
        tenant_id,
        command,
        metadata: metadata(),
        idempotency: None,
        render: schema::writer::render_status_only,
    }
}

async fn enrol(writer: &WriterHandle, tenant_id: TenantId, n: u32) -> Vec<CustomerId> {
    let mut customers = Vec::new();
    for i in 0..n {
        let customer_id = CustomerId::from_uuid(Uuid::now_v7());
        let outcome = writer
            .submit(submission(
                tenant_id,
                crate::helpers::enrol_command(
                    tenant_id,
                    customer_id,
                    &format!("+2348{:09}", 100_000_000 + i),
                ),
            ))
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Decided { ref events, .. } if events.len() == 1));
        customers.push(customer_id);
    }
    customers
}

/// Another group-commit writer on the app's database, as a second process would have.
fn spawn_writer(app: &TestApp) -> WriterHandle {
    schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer()).0
}

fn purchase_command(customer_id: CustomerId, amount: i64) -> Command {
    Command::LogPurchase {
        customer_id,
        purchase_id: PurchaseId::from_uuid(Uuid::now_v7()),
        lot_id: LotId::from_uuid(Uuid::now_v7()),
        amount: MinorUnits::new(amount),
        line_items: vec![],
        reference: None,
        occurred_at: None,
        at: Utc::now(),
    }
}

#[tokio::test]
async fn an_append_at_a_stale_expected_version_is_a_conflict() {
    let app = TestApp::spawn_with(Components::NONE).await;
    let mut client = app.db().await;
    let customer = CustomerId::from_uuid(Uuid::now_v7());
    let enrolled = Event::CustomerEnrolled(ledger_core::events::CustomerEnrolled {
        customer_id: customer,
        personal_data: None,
        enrolled_at: Utc::now(),
        birthday: None,
        referral_code: None,
        referred_by: None,
    });
    let stream = StreamId::Customer(customer);
    let first = store::append(
        &mut client,
        app.tenant_id,
        stream,
        ExpectedVersion::NoStream,
        std::slice::from_ref(&enrolled),
        &metadata(),
    )
    .await
    .unwrap();
    assert_eq!(first[0].version, 1);
    let second = store::append(
        &mut client,
        app.tenant_id,
        stream,
        ExpectedVersion::NoStream,
        std::slice::from_ref(&enrolled),
        &metadata(),
    )
    .await;
    assert!(
        matches!(
            second,
            Err(StoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            })
        ),
        "{second:?}"
    );
    let third = store::append(
        &mut client,
        app.tenant_id,
        stream,
        ExpectedVersion::Exact(1),
        &[enrolled],
        &metadata(),
    )
    .await
    .unwrap();
    assert_eq!(third[0].version, 2);
    app.stop().await;
}

#[tokio::test]
async fn the_event_table_is_append_only() {
    let app = TestApp::spawn_with(Components::NONE).await;
    // The application role (every pooled connection) lacks the privilege.
    let client = app.db().await;
    for statement in [
        "UPDATE events SET event_type = 'Forged'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement} as the app role: {error}"
        );
    }
    // A superuser is stopped by the trigger.
    let admin = admin_client(&dbname(&app.database_url)).await;
    for statement in [
        "UPDATE events SET event_type = 'Forged'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = admin.batch_execute(statement).await.unwrap_err();
        let message = error
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(
            message.contains("append-only"),
            "{statement} as superuser: {error}"
        );
    }
    let count: i64 = admin
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "the tenant registration is still there");
    app.stop().await;
}

/// Appends a purchase in a transaction that stays open for `hold`, so that transactions
/// started after it commit first: the out-of-order commit a naive global-position reader
/// would skip.
async fn slow_append(app: &TestApp, tenant_id: TenantId, customer: CustomerId, hold: Duration) {
    let mut client = app.db().await;
    let transaction = schema::tenancy::begin(&mut client, tenant_id)
        .await
        .unwrap();
    let mut heads = store::lock_tenant_heads(&transaction, &[tenant_id])
        .await
        .unwrap();
    let stream = StreamId::Customer(customer);
    let version = store::stream_version(&*transaction, stream).await.unwrap();
    let head: &mut TenantHead = &mut heads[0].1;
    let event = Event::PurchaseLogged(ledger_core::events::PurchaseLogged {
        purchase_id: PurchaseId::from_uuid(Uuid::now_v7()),
        amount: MinorUnits::new(1),
        line_items: vec![],
        reference: Some("slow".into()),
        occurred_at: Utc::now(),
        purchase_number: 1,
    });
    let sealed = head
        .seal(
            tenant_id,
            ledger_core::EventId::from_uuid(Uuid::now_v7()),
            stream.to_string(),
            version + 1,
            &event,
            ledger_core::codec::encode_metadata(&metadata()).unwrap(),
            Utc::now(),
        )
        .unwrap();
    store::insert_events(&transaction, &[sealed]).await.unwrap();
    store::save_tenant_heads(&transaction, &heads)
        .await
        .unwrap();
    tokio::time::sleep(hold).await;
    transaction.commit().await.unwrap();
}

#[tokio::test]
async fn a_tailing_reader_sees_every_committed_event_once_and_in_stream_order() {
    let app = TestApp::spawn_with(Components::NONE).await;
    let (writer, writer_task) =
        schema::writer::spawn_standalone(app.pool.clone(), app.settings.writer());
    let (second_tenant, _) = create_tenant(&app.pool, &app.settings).await;
    let (slow_tenant, _) = create_tenant(&app.pool, &app.settings).await;
    let mut customers = enrol(&writer, app.tenant_id, 12).await;
    customers.extend(enrol(&writer, second_tenant, 12).await);
    let slow_customers = enrol(&writer, slow_tenant, 1).await;
    let owner: HashMap<CustomerId, TenantId> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, if i < 12 { app.tenant_id } else { second_tenant }))
        .collect();

    // The reader (with the relay's role) tails from the start while writers run. Once they
    // are done it is told how many events the table holds, and reads until it has seen that
    // many (then a few more empty rounds, to catch a duplicate) or gives up after a deadline:
    // the safe position waits for every older transaction on the server, which other tests'
    // transactions can hold back for a while on a busy machine.
    let expected_total = Arc::new(AtomicI64::new(-1));
    let reader = {
        let pool = app.platform_pool.clone();
        let expected_total = expected_total.clone();
        tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut position = Position::default();
            let mut idle_rounds_after_all_seen = 0;
            let mut deadline = None;
            loop {
                let batch = store::read_after(&**client, position, 200).await.unwrap();
                if let Some(last) = batch.last().and_then(|e| e.position) {
                    position = last;
                }
                let empty = batch.is_empty();
                seen.extend(batch);
                let expected = expected_total.load(Ordering::SeqCst);
                if expected >= 0 {
                    let deadline = *deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + Duration::from_secs(30)
                    });
                    if empty && seen.len() as i64 >= expected {
                        idle_rounds_after_all_seen += 1;
                    }
                    if idle_rounds_after_all_seen > 3 || tokio::time::Instant::now() > deadline {
                        return seen;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // Two group-commit writers, as two API processes would be, each fed by eight tasks.
    let other_writer = spawn_writer(&app);
    let writers: Vec<_> = (0..16)
        .map(|task| {
            let writer = if task % 2 == 0 {
                writer.clone()
            } else {
                other_writer.clone()
            };
            let customers = customers.clone();
            let owner = owner.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let customer = customers[(task * 7 + i * 3) % customers.len()];
                    let command = purchase_command(customer, 10_000 * (1 + (i as i64 % 9)));
                    let outcome = writer
                        .submit(submission(owner[&customer], command))
                        .await
                        .unwrap();
                    assert!(
                        matches!(outcome, Outcome::Decided { ref events, .. } if events.len() == 2)
                    );
                }
            })
        })
        .collect();
    let slow = async {
        for _ in 0..3 {
            slow_append(
                &app,
                slow_tenant,
                slow_customers[0],
                Duration::from_millis(150),
            )
            .await;
        }
    };
    let (results, ()) = tokio::join!(futures_util::future::join_all(writers), slow);
    for result in results {
        result.unwrap();
    }
    let admin = admin_client(&dbname(&app.database_url)).await;
    let total: i64 = admin
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    expected_total.store(total, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let ids: HashSet<_> = seen.iter().map(|e| e.event_id).collect();
    if ids.len() != seen.len() {
        let mut counted: HashMap<_, Vec<_>> = HashMap::new();
        for (index, event) in seen.iter().enumerate() {
            counted
                .entry(event.event_id)
                .or_default()
                .push((index, event.position));
        }
        counted.retain(|_, places| places.len() > 1);
        panic!("events delivered twice (index in delivery order, position): {counted:?}");
    }
    assert_eq!(seen.len() as i64, total, "the reader missed events");

    let mut versions: HashMap<&str, i32> = HashMap::new();
    let mut sequences: HashMap<TenantId, i64> = HashMap::new();
    let mut chains: HashMap<TenantId, ChainVerifier> = HashMap::new();
    for event in &seen {
        let version = versions.entry(event.stream_id.as_str()).or_insert(0);
        assert_eq!(
            event.version,
            *version + 1,
            "stream {} out of order",
            event.stream_id
        );
        *version = event.version;
        let sequence = sequences.entry(event.tenant_id).or_insert(0);
        assert_eq!(
            event.tenant_sequence,
            *sequence + 1,
            "tenant sequence out of order"
        );
        *sequence = event.tenant_sequence;
        chains
            .entry(event.tenant_id)
            .or_default()
            .push(StoredLink {
                fields: event.chain_fields(),
                previous_hash: &event.previous_hash,
                hash: &event.hash,
            })
            .expect("the hash chain links");
    }
    eprintln!(
        "tailing reader: {} events, {} streams, {} tenants",
        seen.len(),
        versions.len(),
        chains.len()
    );
    drop(writer);
    writer_task.await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_batch_answers_each_caller_with_its_own_result() {
    let app = TestApp::spawn_with(Components::NONE).await;
    let (writer, _task) = schema::writer::spawn_standalone(
        app.pool.clone(),
        schema::WriterConfig {
            batch_wait_max: Duration::from_millis(50),
            ..app.settings.writer()
        },
    );
    let customer = enrol(&writer, app.tenant_id, 1).await[0];
    let stranger = CustomerId::from_uuid(Uuid::now_v7());
    // Gathered into one batch by the 50 ms wait: one refusal must not fail the others.
    let (good, refused, good_again) = tokio::join!(
        writer.submit(submission(
            app.tenant_id,
            purchase_command(customer, 20_000)
        )),
        writer.submit(submission(
            app.tenant_id,
            purchase_command(stranger, 20_000)
        )),
        writer.submit(submission(
            app.tenant_id,
            purchase_command(customer, 30_000)
        )),
    );
    let events = |o: Outcome| match o {
        Outcome::Decided { events, response } => (events.len(), response.status),
        other => panic!("{other:?}"),
    };
    assert_eq!(events(good.unwrap()), (2, 201));
    assert_eq!(events(refused.unwrap()), (0, 409));
    let (n, status) = events(good_again.unwrap());
    assert_eq!((n, status), (2, 201));
    app.stop().await;
}

/// Two writers (two processes in production) on one tenant: each must see the other's
/// events before deciding, although each caches stream states between batches.
#[tokio::test]
async fn two_writers_on_one_customer_see_each_others_events() {
    let app = TestApp::spawn_with(Components::NONE).await;
    let (first, second) = (spawn_writer(&app), spawn_writer(&app));
    let customer = enrol(&first, app.tenant_id, 1).await[0];
    let mut expected_balance = 0;
    for round in 0..6 {
        let writer = if round % 2 == 0 { &first } else { &second };
        let outcome = writer
            .submit(submission(
                app.tenant_id,
                purchase_command(customer, 100_000),
            ))
            .await
            .unwrap();
        let Outcome::Decided { events, .. } = outcome else {
            panic!("round {round}: {outcome:?}");
        };
        assert_eq!(events.len(), 2, "round {round}");
        expected_balance += 10;
        // Versions continue from the other writer's: 1 enrolment + 2 per purchase.
        assert_eq!(events[1].version, 1 + 2 * (round + 1), "round {round}");
        let Event::PurchaseLogged(logged) = events[0].decode().unwrap() else {
            panic!("round {round}: not a purchase");
        };
        assert_eq!(
            logged.purchase_number,
            round as u32 + 1,
            "round {round}: stale state"
        );
    }
    // A redemption of everything through either writer succeeds; one more point fails.
    let redeem = |points: i64| Command::RedeemPoints {
        customer_id: customer,
        redemption_id: ledger_core::RedemptionId::from_uuid(Uuid::now_v7()),
        points: ledger_core::Points::new(points),
        description: "all of it".into(),
        at: Utc::now(),
    };
    let all = first
        .submit(submission(app.tenant_id, redeem(expected_balance)))
        .await
        .unwrap();
    assert!(matches!(all, Outcome::Decided { ref events, .. } if events.len() == 1));
    let more = second
        .submit(submission(app.tenant_id, redeem(1)))
        .await
        .unwrap();
    assert!(
        matches!(more, Outcome::Decided { ref events, ref response } if events.is_empty() && response.status == 409)
    );
    app.stop().await;
}

/// A stranger's append to one stream must not be hidden by this writer's own later append
/// to another stream of the same tenant.
#[tokio::test]
async fn a_strangers_append_invalidates_every_cached_stream_of_the_tenant() {
    let app = TestApp::spawn_with(Components::NONE).await;
    let (mine, stranger) = (spawn_writer(&app), spawn_writer(&app));
    let customers = enrol(&mine, app.tenant_id, 2).await;
    let (x, y) = (customers[0], customers[1]);
    let purchase = |writer: &WriterHandle, customer| {
        let writer = writer.clone();
        async move {
            match writer
                .submit(submission(
                    app.tenant_id,
                    purchase_command(customer, 100_000),
                ))
                .await
                .unwrap()
            {
                Outcome::Decided { events, .. } => events,
                other => panic!("{other:?}"),
            }
        }
    };
    purchase(&mine, y).await; // mine caches y at version 3
    purchase(&stranger, y).await; // y is now at version 5, unknown to mine
    purchase(&mine, x).await; // mine catches up x only, and commits
    let events = purchase(&mine, y).await; // must continue from 5, not conflict at 4
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].version, 6);
    app.stop().await;
}
