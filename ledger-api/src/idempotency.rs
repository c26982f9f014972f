//! The `Idempotency-Key` header and the fingerprint of the request it is claimed for.
//!
//! The writer stores, under `(tenant, key)`, a SHA-256 of the request and the exact response
//! bytes, in the same transaction as the command's events. A retry with the same key and the
//! same request gets those bytes back and writes nothing; the same key with any other
//! request (another body, another endpoint) is refused with 422.
//!
//! **Refusals are stored too.** Like Stripe and TigerBeetle, a key's outcome is final: if
//! the first attempt was refused (say, insufficient points), every retry with that key gets
//! the same refusal, even if the balance has since grown. A retry can never turn a refusal
//! into a success, so a client that wants to try again after fixing something sends a new key.
//! Only answers that were never decided (503: the ledger was unavailable) are not stored.

use crate::problem::ApiError;
use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;
use schema::IdempotencyClaim;
use sha2::{Digest, Sha256};

pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const KEY_BYTES_MAX: usize = 255;

/// A valid idempotency key: 1 to 255 visible ASCII characters (0x21–0x7E). Built only by
/// [`IdempotencyKey::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, ApiError> {
        let valid = (1..=KEY_BYTES_MAX).contains(&raw.len())
            && raw.iter().all(|b| (0x21..=0x7E).contains(b));
        if !valid {
            return Err(ApiError::IdempotencyKeyInvalid);
        }
        // Visible ASCII is valid UTF-8.
        String::from_utf8(raw.to_vec())
            .map(IdempotencyKey)
            .map_err(|_| ApiError::IdempotencyKeyInvalid)
    }

    /// The key of a command that must have one (purchases, redemptions).
    pub fn required(req: &HttpRequest) -> Result<Self, ApiError> {
        Self::optional(req)?.ok_or(ApiError::IdempotencyKeyMissing)
    }

    /// The key of a command that may have one (enrolment). A header that is present must
    /// be valid; sending it twice is ambiguous and refused.
    pub fn optional(req: &HttpRequest) -> Result<Option<Self>, ApiError> {
        let mut values = req.headers().get_all(HEADER);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::IdempotencyKeyInvalid);
        }
        Self::parse(first.as_bytes()).map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Claims this key for one request.
    pub fn claim(self, method: &str, path: &str, body: &[u8]) -> IdempotencyClaim {
        IdempotencyClaim {
            key: self.0,
            request_hash: request_hash(method, path, body),
        }
    }
}

/// SHA-256 over the method, the path and the raw body bytes, each length-prefixed so no two
/// different requests can produce the same input. The raw bytes, not a re-serialisation: two
/// bodies that differ only in spacing are different requests, which is the safe side.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let longest = "k".repeat(255);
        for good in [
            "a",
            "order-2024-0001",
            "~!#$%&'*+-.^_`|",
            longest.as_str(),
            "AbC123==",
        ] {
            assert_eq!(
                IdempotencyKey::parse(good.as_bytes()).unwrap().as_str(),
                good
            );
        }
        let too_long = "k".repeat(256);
        for bad in [
            "".as_bytes(),
            too_long.as_bytes(),
            b"has space",
            b"tab\there",
            b"new\nline",
            b"del\x7f",
            "caf\u{e9}".as_bytes(),
            b"\x00",
        ] {
            assert!(
                matches!(
                    IdempotencyKey::parse(bad),
                    Err(ApiError::IdempotencyKeyInvalid)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_required_key_must_be_present_once() {
        let missing = TestRequest::default().to_http_request();
        assert!(matches!(
            IdempotencyKey::required(&missing),
            Err(ApiError::IdempotencyKeyMissing)
        ));
        assert!(matches!(IdempotencyKey::optional(&missing), Ok(None)));

        let present = TestRequest::default()
            .insert_header(("Idempotency-Key", "abc"))
            .to_http_request();
        assert_eq!(IdempotencyKey::required(&present).unwrap().as_str(), "abc");

        let twice = TestRequest::default()
            .append_header(("Idempotency-Key", "abc"))
            .append_header(("Idempotency-Key", "def"))
            .to_http_request();
        assert!(matches!(
            IdempotencyKey::required(&twice),
            Err(ApiError::IdempotencyKeyInvalid)
        ));

        let empty = TestRequest::default()
            .insert_header(("Idempotency-Key", ""))
            .to_http_request();
        assert!(matches!(
            IdempotencyKey::optional(&empty),
            Err(ApiError::IdempotencyKeyInvalid)
        ));
    }

    #[test]
    fn the_request_hash_covers_method_path_and_body() {
        let base = request_hash("POST", "/v1/purchases", b"{\"a\":1}");
        assert_eq!(base, request_hash("POST", "/v1/purchases", b"{\"a\":1}"));
        assert_ne!(base, request_hash("POST", "/v1/purchases", b"{\"a\": 1}"));
        assert_ne!(base, request_hash("PUT", "/v1/purchases", b"{\"a\":1}"));
        assert_ne!(base, request_hash("POST", "/v1/customers", b"{\"a\":1}"));
        // Length prefixes: moving bytes between parts changes the hash.
        assert_ne!(
            request_hash("POST", "/a", b"b"),
            request_hash("POST", "/ab", b"")
        );
    }
}
