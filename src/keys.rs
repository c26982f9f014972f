//! Rotating the personal-data keys (docs/SECURITY.md has the procedures).
//!
//! - **Master key**: prepend a new `id:key` to `LOYALTY_MASTER_KEYS` and restart (new data
//!   keys are wrapped by it, old ones still unwrap), run [`rewrap`] (every data key still
//!   wrapped by an older master key, the customers' and the sealed WhatsApp records' of
//!   every table in [`SEALED_TABLES`], is unwrapped and wrapped again by the first one), then
//!   drop the old key from the setting.
//! - **Blind-index key**: with the API stopped (so no enrolment computes an index with the
//!   old key meanwhile), run [`reindex`] with the new key; it opens each customer's phone
//!   number and writes its index under the new key; then start with the new key.
//!
//! Both read and write across tenants, so they run on the schema owner's connection
//! (`DATABASE_URL`), the operator's, never the service's roles. Both are idempotent and can
//! be re-run after an interruption.

use ledger_core::command::{PhoneIndex, WrappedDataKey};
use ledger_core::{CustomerId, Event, StreamId, TenantId};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use uuid::Uuid;
use vault::{Vault, VaultError};

/// Rows read per page (per round trip; [`rewrap`] writes each page in one transaction).
pub const PAGE_ROWS: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("event store: {0}")]
    Store(#[from] schema::StoreError),
    #[error("customer {customer}: {source}")]
    Vault {
        customer: Uuid,
        #[source]
        source: VaultError,
    },
    #[error("customer {0} has a data key but no sealed enrolment")]
    NoSealedEnrolment(Uuid),
}

/// Fresh keys in the environment's format, for a new deployment or a rotation.
pub fn generate(id_suffix: &str) -> Result<String, VaultError> {
    Ok(format!(
        "LOYALTY_MASTER_KEYS=m{id_suffix}:{}\nLOYALTY_BLIND_INDEX_KEY={}\nLOYALTY_JWT_KEYS=j{id_suffix}:{}\nLOYALTY_AUDIT_SIGNING_KEY={}\n",
        vault::generate_key_base64()?,
        vault::generate_key_base64()?,
        vault::generate_key_base64()?,
        vault::generate_key_base64()?,
    ))
}

/// Every table whose rows hold a data key wrapped by a master key, in the order [`rewrap`]
/// goes through them (and reports them).
pub const SEALED_TABLES: [&str; 5] = [
    "customer_keys",
    "whatsapp_numbers",
    "whatsapp_inbox",
    "whatsapp_conversations",
    "whatsapp_outbox",
];

/// What [`rewrap`] did: how many rows of each table it re-wrapped, and the rows it could not.
#[derive(Debug, Default)]
pub struct Rewrapped {
    /// Re-wrapped rows per table, every table of [`SEALED_TABLES`] in that order.
    pub counts: Vec<(&'static str, u64)>,
    /// Rows whose data key did not unwrap (their master key is not configured, or the bytes
    /// are damaged); they keep their old wrapping.
    pub failures: Vec<RewrapFailure>,
}

impl Rewrapped {
    /// Re-wrapped rows over all tables.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, count)| count).sum()
    }

    /// Re-wrapped rows of `table`.
    pub fn of(&self, table: &str) -> u64 {
        self.counts
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, count)| *count)
    }
}

/// A row [`rewrap`] could not re-wrap: its table, its key (ids and keyed digests only, never
/// content) and why.
#[derive(Debug)]
pub struct RewrapFailure {
    pub table: &'static str,
    pub key: String,
    pub error: VaultError,
}

impl std::fmt::Display for RewrapFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.table, self.key, self.error)
    }
}

/// Wraps every data key still under an older master key again under the vault's current one:
/// the customers' data keys (`customer_keys`) and the per-record keys of everything sealed
/// with [`Vault::seal_record`]: tenants' WhatsApp access tokens (`whatsapp_numbers`), the
/// webhook inbox's content (`whatsapp_inbox`), conversations' wa_ids
/// (`whatsapp_conversations`) and the outbox's recipients (`whatsapp_outbox`). Only the
/// wrapping changes: the sealed bytes stay, as their data key does.
///
/// Each table is read in pages of [`PAGE_ROWS`] by its key, each page in one short
/// transaction, so the service can keep running: a row is written back only if it still has
/// the master key id and wrapped key that were read (a row re-sealed meanwhile already has
/// the current key, or is picked up by a re-run; a deleted one is left deleted). Rows that
/// do not unwrap are listed in [`Rewrapped::failures`] and do not stop the others. A database
/// error stops the run; re-running resumes, as rows already re-wrapped are not read again.
pub async fn rewrap(owner: &mut Client, vault: &Vault) -> Result<Rewrapped, KeysError> {
    rewrap_in_pages(owner, vault, PAGE_ROWS).await
}

/// [`rewrap`] with pages of `page_rows` rows (tests use tiny pages to cross many pages).
pub async fn rewrap_in_pages(
    owner: &mut Client,
    vault: &Vault,
    page_rows: i64,
) -> Result<Rewrapped, KeysError> {
    let page_rows = page_rows.max(1);
    let mut done = Rewrapped::default();
    for table in record_tables() {
        let count = rewrap_table(owner, vault, &table, page_rows, &mut done.failures).await?;
        done.counts.push((table.table, count));
    }
    Ok(done)
}

/// A cursor or key value of a page query.
type Param = Box<dyn ToSql + Sync + Send>;

/// How one table's rows are paged, read and written back.
struct RecordTable {
    table: &'static str,
    /// `$1` the current master key id, `$2` the page size, `$3…` the key of the last row of
    /// the previous page (keyset pagination by the primary key).
    page: &'static str,
    /// `$1`, `$2` the new master key id and wrapped key, `$3`, `$4` the old ones (the guard),
    /// `$5…` the row's key.
    update: &'static str,
    /// The cursor before the first row.
    start: fn() -> Vec<Param>,
    read: fn(&Row) -> Result<Candidate, tokio_postgres::Error>,
}

/// One row to re-wrap.
struct Candidate {
    /// The row's key, as `RecordTable::update` and the next page's cursor take it.
    key: Vec<Param>,
    /// The row's key for a report: ids and keyed digests only.
    shown: String,
    /// What the wrapped key is bound to.
    binding: Binding,
    old: WrappedDataKey,
}

enum Binding {
    /// A customer's data key ([`Vault::wrap`]).
    Customer(TenantId, CustomerId),
    /// A sealed record's own data key ([`Vault::seal_record`]) and its context.
    Record(Vec<u8>),
}

fn record_tables() -> [RecordTable; 5] {
    [
        RecordTable {
            table: "customer_keys",
            page: "SELECT customer_id, tenant_id, master_key_id, wrapped_key FROM customer_keys \
                    WHERE master_key_id <> $1 AND customer_id > $3 \
                    ORDER BY customer_id LIMIT $2",
            update: "UPDATE customer_keys SET master_key_id = $1, wrapped_key = $2 \
                      WHERE master_key_id = $3 AND wrapped_key = $4 AND customer_id = $5",
            start: || vec![Box::new(Uuid::nil())],
            read: |row| {
                let customer: Uuid = row.try_get(0)?;
                Ok(Candidate {
                    key: vec![Box::new(customer)],
                    shown: customer.to_string(),
                    binding: Binding::Customer(
                        TenantId::from_uuid(row.try_get(1)?),
                        CustomerId::from_uuid(customer),
                    ),
                    old: wrapped_at(row, 2)?,
                })
            },
        },
        RecordTable {
            table: "whatsapp_numbers",
            page: "SELECT phone_number_id, tenant_id, master_key_id, wrapped_key \
                     FROM whatsapp_numbers \
                    WHERE sealed_access_token IS NOT NULL AND master_key_id <> $1 \
                      AND phone_number_id > $3 \
                    ORDER BY phone_number_id LIMIT $2",
            update: "UPDATE whatsapp_numbers SET master_key_id = $1, wrapped_key = $2 \
                      WHERE master_key_id = $3 AND wrapped_key = $4 AND phone_number_id = $5",
            start: || vec![Box::new(String::new())],
            read: |row| {
                let number: String = row.try_get(0)?;
                // A sealed token always has a tenant (whatsapp_numbers_shared_has_no_token).
                let tenant = TenantId::from_uuid(row.try_get(1)?);
                Ok(Candidate {
                    binding: Binding::Record(schema::whatsapp_numbers::token_seal_context(
                        &number, tenant,
                    )),
                    shown: number.clone(),
                    key: vec![Box::new(number)],
                    old: wrapped_at(row, 2)?,
                })
            },
        },
        RecordTable {
            table: "whatsapp_inbox",
            page: "SELECT inbox_id, dedupe_key, master_key_id, wrapped_key FROM whatsapp_inbox \
                    WHERE master_key_id <> $1 AND inbox_id > $3 \
                    ORDER BY inbox_id LIMIT $2",
            update: "UPDATE whatsapp_inbox SET master_key_id = $1, wrapped_key = $2 \
                      WHERE master_key_id = $3 AND wrapped_key = $4 AND inbox_id = $5",
            start: || vec![Box::new(0_i64)],
            read: |row| {
                let inbox_id: i64 = row.try_get(0)?;
                let dedupe_key: &str = row.try_get(1)?;
                Ok(Candidate {
                    key: vec![Box::new(inbox_id)],
                    shown: inbox_id.to_string(),
                    binding: Binding::Record(schema::inbox::seal_context(dedupe_key)),
                    old: wrapped_at(row, 2)?,
                })
            },
        },
        RecordTable {
            table: "whatsapp_conversations",
            page: "SELECT customer_digest, phone_number_id, master_key_id, wrapped_key \
                     FROM whatsapp_conversations \
                    WHERE master_key_id <> $1 AND (customer_digest, phone_number_id) > ($3, $4) \
                    ORDER BY customer_digest, phone_number_id LIMIT $2",
            update: "UPDATE whatsapp_conversations SET master_key_id = $1, wrapped_key = $2 \
                      WHERE master_key_id = $3 AND wrapped_key = $4 \
                        AND customer_digest = $5 AND phone_number_id = $6",
            start: || vec![Box::new(Vec::<u8>::new()), Box::new(String::new())],
            read: |row| {
                let digest: Vec<u8> = row.try_get(0)?;
                let number: String = row.try_get(1)?;
                // The column's CHECK makes it 32 bytes; a context from anything else would
                // simply not open, and the row is reported.
                let mut digest32 = [0u8; 32];
                if digest.len() == 32 {
                    digest32.copy_from_slice(&digest);
                }
                Ok(Candidate {
                    shown: format!("{} on {number}", to_hex(&digest)),
                    binding: Binding::Record(crate::conversations::conversation_seal_context(
                        &digest32, &number,
                    )),
                    key: vec![Box::new(digest), Box::new(number)],
                    old: wrapped_at(row, 2)?,
                })
            },
        },
        RecordTable {
            table: "whatsapp_outbox",
            page: "SELECT message_id, dedupe_key, master_key_id, wrapped_key FROM whatsapp_outbox \
                    WHERE master_key_id <> $1 AND message_id > $3 \
                    ORDER BY message_id LIMIT $2",
            update: "UPDATE whatsapp_outbox SET master_key_id = $1, wrapped_key = $2 \
                      WHERE master_key_id = $3 AND wrapped_key = $4 AND message_id = $5",
            start: || vec![Box::new(Uuid::nil())],
            read: |row| {
                let message_id: Uuid = row.try_get(0)?;
                let dedupe_key: &str = row.try_get(1)?;
                Ok(Candidate {
                    key: vec![Box::new(message_id)],
                    shown: message_id.to_string(),
                    binding: Binding::Record(crate::conversations::outbox_seal_context(dedupe_key)),
                    old: wrapped_at(row, 2)?,
                })
            },
        },
    ]
}

/// The master key id and wrapped key in columns `at` and `at + 1`.
fn wrapped_at(row: &Row, at: usize) -> Result<WrappedDataKey, tokio_postgres::Error> {
    Ok(WrappedDataKey {
        master_key_id: row.try_get(at)?,
        bytes: row.try_get(at + 1)?,
    })
}

/// Lower-case hex, for a keyed digest in a report.
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Re-wraps one table's rows still under an older master key; returns how many it wrote.
async fn rewrap_table(
    owner: &mut Client,
    vault: &Vault,
    table: &RecordTable,
    page_rows: i64,
    failures: &mut Vec<RewrapFailure>,
) -> Result<u64, KeysError> {
    let current = vault.current_master_key_id().to_owned();
    let mut cursor = (table.start)();
    let mut rewrapped = 0;
    loop {
        let transaction = owner.transaction().await?;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&current, &page_rows];
        params.extend(cursor.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
        let rows = transaction.query(table.page, &params).await?;
        let candidates = rows.iter().map(table.read).collect::<Result<Vec<_>, _>>()?;
        for candidate in &candidates {
            let new = match &candidate.binding {
                Binding::Customer(tenant, customer) => vault
                    .unwrap(&candidate.old, *tenant, *customer)
                    .and_then(|key| vault.wrap(&key, *tenant, *customer)),
                Binding::Record(context) => vault.rewrap_record_key(context, &candidate.old),
            };
            let new = match new {
                Ok(new) => new,
                Err(error) => {
                    failures.push(RewrapFailure {
                        table: table.table,
                        key: candidate.shown.clone(),
                        error,
                    });
                    continue;
                }
            };
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![
                &new.master_key_id,
                &new.bytes,
                &candidate.old.master_key_id,
                &candidate.old.bytes,
            ];
            params.extend(
                candidate
                    .key
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync)),
            );
            // Guarded by the old wrapping: a row re-sealed or deleted in between is left as
            // it is now (updates nothing).
            rewrapped += transaction.execute(table.update, &params).await?;
        }
        transaction.commit().await?;
        match candidates.into_iter().last() {
            Some(last) => cursor = last.key,
            None => return Ok(rewrapped),
        }
        if (rows.len() as i64) < page_rows {
            return Ok(rewrapped);
        }
    }
}

/// Recomputes every phone index under `new_index_key`'s blind-index key, opening each
/// customer's phone number with `vault` (which must hold the master keys). Customers
/// without a data key (erased) have no index. Returns how many indexes were written.
pub async fn reindex(
    owner: &Client,
    vault: &Vault,
    new_index_key: &Vault,
) -> Result<u64, KeysError> {
    let mut reindexed = 0;
    let mut after = Uuid::nil();
    loop {
        let rows = owner
            .query(
                "SELECT customer_id, tenant_id, master_key_id, wrapped_key FROM customer_keys \
                 WHERE customer_id > $1 ORDER BY customer_id LIMIT $2",
                &[&after, &PAGE_ROWS],
            )
            .await?;
        let Some(last) = rows.last() else {
            return Ok(reindexed);
        };
        after = last.try_get(0)?;
        for row in &rows {
            let customer: Uuid = row.try_get(0)?;
            let tenant = TenantId::from_uuid(row.try_get(1)?);
            let wrapped = WrappedDataKey {
                master_key_id: row.try_get(2)?,
                bytes: row.try_get(3)?,
            };
            let customer_id = CustomerId::from_uuid(customer);
            let first =
                schema::store::read_stream(owner, StreamId::Customer(customer_id), 0, 1).await?;
            let sealed = match first.first().map(|e| e.decode()).transpose() {
                Ok(Some(Event::CustomerEnrolled(enrolled))) => enrolled.personal_data,
                _ => None,
            }
            .ok_or(KeysError::NoSealedEnrolment(customer))?;
            let vault_error = |source| KeysError::Vault { customer, source };
            let data_key = vault
                .unwrap(&wrapped, tenant, customer_id)
                .map_err(vault_error)?;
            let personal = vault
                .open(&data_key, tenant, customer_id, &sealed)
                .map_err(vault_error)?;
            let PhoneIndex(index) = new_index_key.phone_index(tenant, &personal.phone);
            reindexed += owner
                .execute(
                    "UPDATE customer_phone_index SET phone_index = $1 WHERE customer_id = $2",
                    &[&index.as_slice(), &customer],
                )
                .await?;
        }
    }
}
