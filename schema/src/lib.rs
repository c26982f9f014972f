//! Everything that knows SQL on the write side: migrations, the connection pool, the event
//! store (reads and appends), the group-commit writer and API keys.
//!
//! Reading order: [`migrate`] (the schema, in `migrations/`), [`db`] (pools and login roles), [`tenancy`] (the tenant scope of a transaction),
//! [`store`] (the recorded event, the safe-position reader, a single append with expected
//! version), then [`writer`] (the group-commit path every command takes), [`api_keys`] and
//! [`accounts`] (roles, users, tokens, tenant registration), [`inbox`] (the WhatsApp webhook
//! inbox), [`rewards`] (the catalogue and redemption codes), [`whatsapp_numbers`] (a tenant's
//! own WhatsApp number and its sealed access token), [`broadcasts`] (a vendor's template
//! message to a segment: recipients, progress, pause and resume), [`audit`] (the audit export's
//! format and its paged snapshot reader).
//!
//! Architecture invariant: this crate knows SQL and Postgres, and nothing of HTTP or NATS.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod broadcasts;
pub mod db;
pub mod inbox;
pub mod migrate;
pub mod referrals;
pub mod rewards;
pub mod store;
pub mod tenancy;
pub mod wake;
pub mod whatsapp_numbers;
pub mod writer;

pub use db::{DbSettings, Pool};
pub use store::{Position, RecordedEvent, StoreError};
pub use writer::{
    IdempotencyClaim, Outcome, Refusal, Render, StoredResponse, Submission, Verdict, WriterConfig,
    WriterError, WriterHandle,
};
