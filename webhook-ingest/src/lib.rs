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
//! What is coming with the WhatsApp ingest issue: the HTTP endpoint itself
//! (body limit of at least 4 MB, since Meta sends up to 3 MB), parsing of the
//! webhook envelope (every `entry[]`, `changes[]`, `messages[]` and
//! `statuses[]`, unknown kinds stored and ignored rather than rejected), and a
//! durable append of the verified raw body before answering 200, with
//! de-duplication on the message id because Meta retries for up to 7 days.
//!
//! The order of operations the endpoint will follow: read the raw bytes, call
//! [`signature::verify_signature`], and only then parse.

pub mod handshake;
pub mod payload;
pub mod signature;
