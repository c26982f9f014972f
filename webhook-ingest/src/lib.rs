//! Receiving side of the WhatsApp Cloud API webhooks: the pieces that decide
//! whether a request comes from Meta, before anything else looks at it.
//!
//! What is here today, pure and fully tested:
//!
//! - [`signature`]: the `X-Hub-Signature-256` check for `POST` deliveries.
//!   HMAC-SHA256 keyed with the Meta **app secret**, computed over the **raw
//!   request body bytes** exactly as received, compared in constant time
//!   (`ring::hmac::verify`). Never hash a re-serialised JSON value: parsing and
//!   printing again changes whitespace, key order and escapes, and the
//!   signature no longer matches. [`signature::sign`] produces the header
//!   value, for tests and for the local sandbox.
//! - [`handshake`]: the `GET` verification handshake (`hub.mode`,
//!   `hub.verify_token`, `hub.challenge`). It returns the challenge to echo
//!   (as `text/plain`, HTTP 200) or an error, which the endpoint turns into 403.
//!
//! - [`payload`]: the typed model of a webhook body and its pure parser (every
//!   `entry[]`, `changes[]`, message, status and user preference; unknown kinds kept).
//! - [`inbox`]: from a parsed body to sealed inbox rows with their de-duplication
//!   keys (`schema::inbox` stores them).
//! - [`commit`]: the group commit: the items of many concurrent bodies appended in one
//!   statement and one transaction, each request answered with its own counts after it.
//! - [`server`]: the endpoint (`GET`/`POST /webhooks/whatsapp`): signature before
//!   parsing, body limit, the group commit, 200 only after the commit.
//!
//! Reading order: [`signature`], [`handshake`], [`payload`], [`inbox`], [`commit`], [`server`].
//!
//! Architecture invariants: a body is never parsed before its signature is verified;
//! a webhook is answered 200 only after every item of it is committed; nothing from a
//! body reaches a log, a column or an error message in plain text except the business's
//! `phone_number_id` (personal data and message ids are sealed or digested).

pub mod commit;
pub mod handshake;
pub mod inbox;
pub mod payload;
pub mod server;
pub mod signature;

pub use server::{serve, IngestConfig, IngestMetrics, IngestState, VerifyToken};
