//! `X-Hub-Signature-256` verification for WhatsApp Cloud API webhook `POST`s.
//!
//! Meta sends `X-Hub-Signature-256: sha256=<hex>` where `<hex>` is the
//! HMAC-SHA256 of the raw request body, keyed with the app secret (App
//! Dashboard → App settings → Basic; not the verify token, not the access
//! token). Verification must run on the bytes as received, before any parsing.

use std::fmt;

use ring::hmac;

/// Name of the header carrying the signature. HTTP header names are
/// case-insensitive; most frameworks expose it as `x-hub-signature-256`.
pub const HEADER_NAME: &str = "X-Hub-Signature-256";

/// Literal prefix of the header value.
const PREFIX: &str = "sha256=";

/// Length in hex characters of an HMAC-SHA256 tag.
const HEX_TAG_LEN: usize = 64;

/// The Meta app secret, held only as an HMAC-SHA256 key.
///
/// Its `Debug` output is redacted so it cannot leak through logs or panics.
#[derive(Clone)]
pub struct AppSecret {
    key: hmac::Key,
}

impl AppSecret {
    /// Builds the key from the secret's bytes (usually the string from the
    /// App Dashboard).
    ///
    /// An empty secret is refused: anyone could compute valid signatures with
    /// it, so it can only be a configuration mistake.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, EmptyAppSecret> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(EmptyAppSecret);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppSecret(<redacted>)")
    }
}

/// Returned by [`AppSecret::new`] for an empty secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the WhatsApp app secret is empty")]
pub struct EmptyAppSecret;

/// Why a webhook body was not accepted as signed by Meta. Every variant maps
/// to a 4xx response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    /// Well-formed header, but not the HMAC of this body under this secret.
    #[error("X-Hub-Signature-256 does not match the request body")]
    Mismatch,
}

/// Checks `header` (the `X-Hub-Signature-256` value, if present) against
/// `raw_body`, the request body bytes exactly as received.
///
/// The hex digest may be lowercase (what Meta sends) or uppercase. The
/// comparison of the MACs runs in constant time.
pub fn verify_signature(
    secret: &AppSecret,
    raw_body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_tag = header
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    if hex_tag.len() != HEX_TAG_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut tag = [0u8; HEX_TAG_LEN / 2];
    hex::decode_to_slice(hex_tag, &mut tag).map_err(|_| SignatureError::Malformed)?;
    hmac::verify(&secret.key, raw_body, &tag).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value Meta would send for `body`:
/// `sha256=` followed by the lowercase hex HMAC-SHA256.
pub fn sign(secret: &AppSecret, body: &[u8]) -> String {
    let tag = hmac::sign(&secret.key, body);
    format!("{PREFIX}{}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> AppSecret {
        AppSecret::new("test_app_secret").unwrap()
    }

    /// Vectors from the WhatsApp reference (§2), computed there with Python
    /// `hmac` and `openssl dgst`.
    #[test]
    fn known_answer_vectors() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"object":"whatsapp_business_account","entry":[]}"#,
                "sha256=dec6a680679a968e7e0319355b23599cbfc54502c0784668e9618baa0c633756",
            ),
            (
                b"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[]}]}\n",
                "sha256=9c2633e1d1a99ba4bd37d2553b08c5d5931e55443cea82b61d5f800cb6abe1e8",
            ),
            (
                "{\"text\":{\"body\":\"J'ai mangé\"}}".as_bytes(),
                "sha256=62e7a2b5694b50363334bcf372e5b0005449c4e36cd41cc6cc1213c9c251bf4e",
            ),
            (
                br#"{"text":{"body":"J'ai mang\u00e9"}}"#,
                "sha256=9df5de5a6cba732d53ff0a9c993c4cb970af01508c1b96b86eac62c32ecd8bf9",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(sign(&secret(), body), expected);
            assert_eq!(verify_signature(&secret(), body, Some(expected)), Ok(()));
        }
        // Same JSON value, different bytes: the escaped form does not verify
        // against the raw UTF-8 signature.
        assert_eq!(
            verify_signature(&secret(), cases[3].0, Some(cases[2].1)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let rendered = format!("{:?}", AppSecret::new("super-secret-value").unwrap());
        assert_eq!(rendered, "AppSecret(<redacted>)");
        assert!(!rendered.contains("super-secret-value"));
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(AppSecret::new("").unwrap_err(), EmptyAppSecret);
        assert_eq!(AppSecret::new(b"").unwrap_err(), EmptyAppSecret);
    }
}
