//! `audit-ledger`: generates one tenant's ledger for the audit benchmarks (benches/audit.sh,
//! issue #6 item 7) — a realistic mix of enrolments, purchases with their points, reward
//! redemptions, refunds, expiries and adjustments over a year, for `--customers` customers,
//! until `--events` events.
//!
//! Nothing here invents a format: every event is decided and folded by `ledger_core`
//! (`decide`/`evolve`, so the mix obeys the domain's rules), encoded by its codec and sealed
//! onto the chain by `schema::store::TenantHead::seal`, exactly as the writer does; the export
//! lines are `schema::audit`'s and the head is signed over `signed_head_message` with a
//! `vault::audit` key. Outputs (each optional):
//!
//! - `--export FILE`: the audit export (JSON Lines, docs/AUDIT.md) with the signed head;
//! - `--copy FILE`: the `events` rows in `COPY … FROM STDIN` text format (columns in
//!   [`COPY_COLUMNS`]), and `--sql FILE`: the tenant's `tenant_heads` and
//!   `signed_chain_heads` rows, for loading the same ledger into a database.
//!
//! Prints one JSON line: events, customers, the tenant id, the public key, seconds taken.

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use ledger_core::chain::signed_head_message;
use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::events::{Actor, EventMetadata, SealedPersonalData};
use ledger_core::rules::RuleKind;
use ledger_core::{
    decide, evolve, AdjustmentId, Command, Currency, CustomerId, CustomerState, EventId,
    LedgerState, LotId, MinorUnits, Points, PurchaseId, RedemptionId, ReferralCode, RefundId,
    RewardStock, Rule, RuleSet, StreamId, TenantId, TenantState,
};
use schema::audit::{event_line, Header, SignedHeadLine, Trailer, FORMAT, FORMAT_VERSION};
use schema::store::{RecordedEvent, TenantHead};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use uuid::Uuid;

/// The `events` columns the `--copy` file fills, in order (the rest take their defaults).
pub const COPY_COLUMNS: &str = "event_id, tenant_id, tenant_sequence, stream_id, version, \
     event_type, type_version, payload, metadata, recorded_at, previous_hash, hash";

#[derive(Parser)]
#[command(about = "Generate a chained, signed tenant ledger for the audit benchmarks")]
struct Args {
    /// Events to generate (the last command may add one or two more).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Customers (each enrolled on their first appearance).
    #[arg(long, default_value_t = 20_000)]
    customers: usize,
    /// Seed of the pseudo-random mix (same seed, same ledger apart from the signature).
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// The audit signing key (base64, 32 bytes); a fresh one when absent.
    #[arg(long, env = "AUDIT_LEDGER_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    #[arg(long)]
    export: Option<PathBuf>,
    #[arg(long)]
    copy: Option<PathBuf>,
    #[arg(long)]
    sql: Option<PathBuf>,
}

/// xorshift64*: enough for a reproducible mix, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }
}

struct Customer {
    id: CustomerId,
    state: Option<CustomerState>,
    version: i32,
    /// The last purchase and its amount, while not refunded.
    refundable: Option<(PurchaseId, i64)>,
}

struct Ledger {
    tenant_id: TenantId,
    tenant: TenantState,
    tenant_version: i32,
    head: TenantHead,
    ids: u128,
    at: DateTime<Utc>,
    metadata: Vec<u8>,
    stock: RewardStock,
}

impl Ledger {
    fn next_id(&mut self) -> Uuid {
        self.ids += 1;
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | self.ids)
    }

    /// Decides `command` on `stream`; seals and hands each event to `sink`. A refusal is no
    /// event (the generator then simply moves on, as a till would).
    fn run(
        &mut self,
        customer: Option<&mut Customer>,
        command: Command,
        sink: &mut impl FnMut(&RecordedEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        let empty = CustomerState::default();
        let state = customer
            .as_ref()
            .and_then(|c| c.state.as_ref())
            .unwrap_or(&empty);
        let Ok(events) = decide(
            LedgerState {
                tenant: &self.tenant,
                customer: state,
                stock: &self.stock,
            },
            &command,
        ) else {
            return Ok(0);
        };
        let count = events.len();
        match customer {
            Some(customer) => {
                let mut state = customer.state.take().unwrap_or_default();
                for event in &events {
                    state = evolve(state, event);
                    customer.version += 1;
                    let id = EventId::from_uuid(self.next_id());
                    let recorded = self.head.seal(
                        self.tenant_id,
                        id,
                        StreamId::Customer(customer.id).to_string(),
                        customer.version,
                        event,
                        self.metadata.clone(),
                        self.at,
                    )?;
                    sink(&recorded)?;
                }
                customer.state = Some(state);
            }
            None => {
                for event in &events {
                    self.tenant = evolve(std::mem::take(&mut self.tenant), event);
                    self.tenant_version += 1;
                    let id = EventId::from_uuid(self.next_id());
                    let recorded = self.head.seal(
                        self.tenant_id,
                        id,
                        StreamId::Tenant(self.tenant_id).to_string(),
                        self.tenant_version,
                        event,
                        self.metadata.clone(),
                        self.at,
                    )?;
                    sink(&recorded)?;
                }
            }
        }
        Ok(count)
    }
}

fn create(path: &Option<PathBuf>) -> anyhow::Result<Option<BufWriter<std::fs::File>>> {
    path.as_ref()
        .map(|p| {
            std::fs::File::create(p)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .with_context(|| format!("creating {}", p.display()))
        })
        .transpose()
}

fn line(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// One `events` row in COPY text format (bytea as `\\x…`, escaped for COPY).
fn copy_row(out: &mut impl Write, e: &RecordedEvent) -> anyhow::Result<()> {
    writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t\\\\x{}\t\\\\x{}\t{}\t\\\\x{}\t\\\\x{}",
        e.event_id.as_uuid(),
        e.tenant_id.as_uuid(),
        e.tenant_sequence,
        e.stream_id,
        e.version,
        e.event_type,
        e.type_version,
        hex::encode(&e.payload),
        hex::encode(&e.metadata),
        e.recorded_at.format("%Y-%m-%d %H:%M:%S%.6f+00"),
        hex::encode(e.previous_hash),
        hex::encode(e.hash),
    )?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.customers > 0 && args.events > 0, "nothing to generate");
    let started = std::time::Instant::now();
    let key = vault::audit::AuditSigningKey::parse(&match &args.signing_key {
        Some(key) => key.clone(),
        None => vault::generate_key_base64()?,
    })?;
    let mut export = create(&args.export)?;
    let mut copy = create(&args.copy)?;

    let start = Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap();
    let mut ledger = Ledger {
        tenant_id: TenantId::from_uuid(Uuid::now_v7()),
        tenant: TenantState::default(),
        tenant_version: 0,
        head: TenantHead::GENESIS,
        ids: 0,
        at: start,
        metadata: ledger_core::codec::encode_metadata(&EventMetadata {
            actor: Actor::System("audit-ledger".into()),
            correlation_id: Uuid::from_u128(6),
            causation_id: None,
        })?,
        stock: RewardStock::new(),
    };
    if let Some(out) = export.as_mut() {
        line(
            out,
            &Header {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                tenant_id: ledger.tenant_id.as_uuid(),
            },
        )?;
    }
    let mut sink = |event: &RecordedEvent| -> anyhow::Result<()> {
        if let Some(out) = export.as_mut() {
            line(out, &event_line(event))?;
        }
        if let Some(out) = copy.as_mut() {
            copy_row(out, event)?;
        }
        Ok(())
    };

    // 1 point per 100 minor units; lots live 90 days, so a year's ledger has expiries.
    let rule_set = RuleSet::new(
        1,
        vec![Rule::new(
            "per-amount",
            RuleKind::PerAmountSpent {
                amount_step: MinorUnits::new(100),
                points_per_step: Points::new(1),
                minimum_purchase: MinorUnits::ZERO,
            },
        )],
    )?;
    let tenant_id = ledger.tenant_id;
    ledger.run(
        None,
        Command::RegisterTenant {
            tenant_id,
            name: "Bench Grill".into(),
            currency: Currency::NGN,
            expiry_days: 90,
            rule_set,
            at: start,
        },
        &mut sink,
    )?;
    // Points worth 50 kobo for the first half of the year and 80 after, so the books value
    // lots at two values (docs/BOOKS.md).
    let point_value = |minor: i64| Command::ChangeProgrammeSettings {
        settings: ledger_core::events::ProgrammeSettings {
            point_value: Some(MinorUnits::new(minor)),
            ..Default::default()
        },
        at: start,
    };
    let mut written = 1 + ledger.run(None, point_value(50), &mut sink)? as u64;
    let mut revalued = false;

    let mut rng = Rng(args.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut customers: Vec<Customer> = (0..args.customers)
        .map(|n| Customer {
            id: CustomerId::from_uuid(Uuid::from_u128(
                0x0190_0000_0000_7000_9000_0000_0000_0000 | n as u128,
            )),
            state: None,
            version: 0,
            refundable: None,
        })
        .collect();
    // About a year: the clock moves on by the year's share of each command.
    let step_micros = (365 * 86_400 * 1_000_000 / (args.events as i64 / 2).max(1)).max(1);
    while written < args.events {
        if !revalued && written >= args.events / 2 {
            let mut change = point_value(80);
            if let Command::ChangeProgrammeSettings { at, .. } = &mut change {
                *at = ledger.at;
            }
            written += ledger.run(None, change, &mut sink)? as u64;
            revalued = true;
        }
        ledger.at += Duration::microseconds(rng.range(step_micros / 2, step_micros * 3 / 2));
        let at = ledger.at;
        let index = rng.below(args.customers as u64) as usize;
        let customer_id = customers[index].id;
        let command = if customers[index].state.is_none() {
            let n = index as u64;
            let mut phone = [0u8; 32];
            phone[..8].copy_from_slice(&n.to_be_bytes());
            let mut code = [0u8; 5];
            code.copy_from_slice(&n.to_be_bytes()[3..]);
            Command::EnrolCustomer {
                customer_id,
                phone_index: PhoneIndex(phone),
                personal_data: SealedPersonalData {
                    nonce: vec![7; 12],
                    ciphertext: vec![9; 40],
                },
                data_key: WrappedDataKey {
                    master_key_id: "bench".into(),
                    bytes: vec![3; 60],
                },
                birthday: None,
                referral_code: ReferralCode::from_random_bytes(code),
                referred_by: None,
                at,
            }
        } else {
            let available = customers[index]
                .state
                .as_ref()
                .map(|s| s.available().value())
                .unwrap_or(0);
            match rng.below(100) {
                0..=61 => {
                    let purchase_id = PurchaseId::from_uuid(ledger.next_id());
                    let amount = rng.range(500, 50_000);
                    customers[index].refundable = Some((purchase_id, amount));
                    Command::LogPurchase {
                        customer_id,
                        purchase_id,
                        lot_id: LotId::from_uuid(ledger.next_id()),
                        amount: MinorUnits::new(amount),
                        line_items: Vec::new(),
                        reference: None,
                        occurred_at: None,
                        at,
                    }
                }
                62..=76 if available >= 50 => Command::RedeemPoints {
                    customer_id,
                    redemption_id: RedemptionId::from_uuid(ledger.next_id()),
                    points: Points::new(rng.range(50, available.min(400))),
                    description: "a plate of suya".into(),
                    at,
                },
                77..=84 if customers[index].refundable.is_some() => {
                    let (purchase_id, amount) = customers[index].refundable.take().unwrap();
                    Command::RefundPurchase {
                        customer_id,
                        refund_id: RefundId::from_uuid(ledger.next_id()),
                        purchase_id,
                        amount: MinorUnits::new((amount / 2).max(1)),
                        reference: None,
                        at,
                    }
                }
                85..=96 => Command::ExpirePoints { customer_id, at },
                _ => Command::AdjustPoints {
                    customer_id,
                    adjustment_id: AdjustmentId::from_uuid(ledger.next_id()),
                    lot_id: LotId::from_uuid(ledger.next_id()),
                    points: Points::new(rng.range(5, 50)),
                    reason: "goodwill".into(),
                    at,
                },
            }
        };
        written += ledger.run(Some(&mut customers[index]), command, &mut sink)? as u64;
    }

    let head = ledger.head;
    let sequence = u64::try_from(head.sequence)?;
    let signed_at = ledger.at + Duration::seconds(1);
    let signature = key.sign(&signed_head_message(
        ledger.tenant_id,
        sequence,
        &head.hash,
        signed_at.timestamp_micros(),
    ));
    if let Some(mut out) = export.take() {
        line(
            &mut out,
            &Trailer {
                events: sequence,
                signed_head: Some(SignedHeadLine {
                    tenant_id: ledger.tenant_id.as_uuid(),
                    sequence,
                    head_hash: hex::encode(head.hash),
                    signed_at_micros: signed_at.timestamp_micros(),
                    key_id: key.key_id().into(),
                    signature: base64_standard(&signature),
                }),
            },
        )?;
        out.flush()?;
    }
    if let Some(mut out) = copy.take() {
        out.flush()?;
    }
    if let Some(path) = &args.sql {
        std::fs::write(
            path,
            format!(
                "INSERT INTO tenant_heads (tenant_id, sequence, head_hash) \
                 VALUES ('{tenant}', {sequence}, '\\x{hash}');\n\
                 INSERT INTO signed_chain_heads \
                 (tenant_id, sequence, head_hash, signed_at, key_id, signature) \
                 VALUES ('{tenant}', {sequence}, '\\x{hash}', '{signed_at}', '{key_id}', \
                 '\\x{signature}');\n",
                tenant = ledger.tenant_id.as_uuid(),
                hash = hex::encode(head.hash),
                signed_at = signed_at.format("%Y-%m-%d %H:%M:%S%.6f+00"),
                key_id = key.key_id(),
                signature = hex::encode(signature),
            ),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let enrolled = customers.iter().filter(|c| c.state.is_some()).count();
    println!(
        "{}",
        serde_json::json!({
            "events": sequence,
            "customers": enrolled,
            "tenant_id": ledger.tenant_id.as_uuid(),
            "public_key": key.public_key_base64(),
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
