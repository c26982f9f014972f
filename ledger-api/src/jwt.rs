//! Access tokens: compact JWS (RFC 7515/7519) with HS256 only, signed and verified with
//! `ring::hmac` (constant-time verification).
//!
//! Why not the `jsonwebtoken` crate: its ring-based line (v9) also pulls PEM/ASN.1 parsing
//! for RSA and EC keys we never use, and its newer line wants a choice of crypto backend.
//! One algorithm is ~150 lines here, and owning the header check makes the refusals exact:
//! only `"alg":"HS256"` is accepted (never `none`, never an asymmetric algorithm whose
//! public key could be confused with our secret), and only a `kid` we hold.
//!
//! Keys come from `LOYALTY_JWT_KEYS` = `kid:base64key[,kid:base64key...]`, each key at least
//! 32 bytes. The first key signs; all verify. Rotation: prepend a new key and restart; drop
//! the old one once every token it signed has expired (15 minutes, plus the leeway).

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ledger_core::TenantId;
use ring::hmac;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ISSUER: &str = "loyalty-ledger";
pub const AUDIENCE: &str = "loyalty-api";
/// How long an access token lives.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// Clock difference tolerated between the issuing and the verifying process.
pub const LEEWAY_SECONDS: i64 = 30;
/// Shortest key accepted: HMAC-SHA256 keys should be at least the hash's output size.
pub const KEY_BYTES_MIN: usize = 32;
/// Longest token looked at; ours are about 400 bytes.
pub const TOKEN_BYTES_MAX: usize = 4_096;
const KID_CHARS_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtKeyError {
    #[error("LOYALTY_JWT_KEYS is not set: the API needs at least one key `kid:base64key` (32 bytes or more) to sign access tokens")]
    Missing,
    #[error("LOYALTY_JWT_KEYS entry {index} is not `kid:base64key`")]
    Shape { index: usize },
    #[error(
        "LOYALTY_JWT_KEYS entry {index}: the kid must be 1 to 64 characters of A-Z a-z 0-9 - _ ."
    )]
    Kid { index: usize },
    #[error("LOYALTY_JWT_KEYS entry {index}: the kid is used twice")]
    DuplicateKid { index: usize },
    #[error("LOYALTY_JWT_KEYS entry {index}: the key is not valid base64")]
    Base64 { index: usize },
    #[error("LOYALTY_JWT_KEYS entry {index}: the key is {bytes} bytes; at least 32 are required")]
    TooShort { index: usize, bytes: usize },
}

/// Why a token was refused. The client only ever sees "unauthenticated"; this is for tests
/// and debug logs (it never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm is not HS256")]
    Algorithm,
    #[error("unknown key id")]
    UnknownKid,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("no signing key configured")]
    NoSigningKey,
}

/// The verifying (and, first, signing) keys.
#[derive(Clone)]
pub struct JwtKeys {
    keys: Vec<(String, hmac::Key)>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("JwtKeys")
            .field("kids", &kids)
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl JwtKeys {
    /// No keys: every token is refused and none can be issued. For states built without
    /// accounts (unit tests of other endpoints); the binary refuses to start like this.
    pub fn none() -> JwtKeys {
        JwtKeys { keys: Vec::new() }
    }

    /// Parses `kid:base64key[,kid:base64key...]` (standard or URL-safe base64).
    pub fn parse(raw: &str) -> Result<JwtKeys, JwtKeyError> {
        if raw.trim().is_empty() {
            return Err(JwtKeyError::Missing);
        }
        let mut keys: Vec<(String, hmac::Key)> = Vec::new();
        for (index, entry) in raw.split(',').enumerate() {
            let (kid, encoded) = entry
                .trim()
                .split_once(':')
                .ok_or(JwtKeyError::Shape { index })?;
            let kid_ok = (1..=KID_CHARS_MAX).contains(&kid.len())
                && kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !kid_ok {
                return Err(JwtKeyError::Kid { index });
            }
            if keys.iter().any(|(known, _)| known == kid) {
                return Err(JwtKeyError::DuplicateKid { index });
            }
            let secret = decode_key(encoded.trim()).ok_or(JwtKeyError::Base64 { index })?;
            if secret.len() < KEY_BYTES_MIN {
                return Err(JwtKeyError::TooShort {
                    index,
                    bytes: secret.len(),
                });
            }
            keys.push((kid.to_owned(), hmac::Key::new(hmac::HMAC_SHA256, &secret)));
        }
        Ok(JwtKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Signs `claims` with the first key.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let (kid, key) = self.keys.first().ok_or(JwtError::NoSigningKey)?;
        let header = Header {
            alg: "HS256".to_owned(),
            typ: Some("JWT".to_owned()),
            kid: Some(kid.clone()),
        };
        let signing_input = format!("{}.{}", encode_json(&header), encode_json(claims));
        let signature = hmac::sign(key, signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Verifies a token at `now_seconds` (Unix time) and returns its claims.
    pub fn verify(&self, token: &str, now_seconds: i64) -> Result<Claims, JwtError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Header = decode_json(header_part)?;
        // The header is untrusted until the signature is checked, so it may only select
        // among our own keys, never the algorithm.
        if header.alg != "HS256" {
            return Err(JwtError::Algorithm);
        }
        let kid = header.kid.ok_or(JwtError::UnknownKid)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| *known == kid)
            .ok_or(JwtError::UnknownKid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .map_err(|_| JwtError::Malformed)?;
        let signing_input_len = header_part.len() + 1 + claims_part.len();
        hmac::verify(key, &token.as_bytes()[..signing_input_len], &signature)
            .map_err(|_| JwtError::Signature)?;
        let claims: Claims = decode_json(claims_part)?;
        if claims.iss != ISSUER {
            return Err(JwtError::Issuer);
        }
        if claims.aud != AUDIENCE {
            return Err(JwtError::Audience);
        }
        if claims.exp.saturating_add(LEEWAY_SECONDS) <= now_seconds {
            return Err(JwtError::Expired);
        }
        if claims.iat.saturating_sub(LEEWAY_SECONDS) > now_seconds {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

fn decode_key(encoded: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(encoded)
        .or_else(|_| URL_SAFE.decode(encoded))
        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
        .ok()
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A header or claims as base64url JSON. Both are plain structs of strings and numbers, for
/// which serialisation cannot fail.
fn encode_json<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The user's tenant.
    pub tid: Uuid,
    /// The role when issued (the role in force is re-read with the user's status).
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

impl Claims {
    /// The claims of a fresh access token for a user.
    pub fn access(user_id: Uuid, tenant_id: TenantId, role: &str, now_seconds: i64) -> Claims {
        Claims {
            sub: user_id,
            tid: tenant_id.as_uuid(),
            role: role.to_owned(),
            iat: now_seconds,
            exp: now_seconds + ACCESS_TOKEN_SECONDS,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: Uuid::now_v7(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn keys(spec: &str) -> JwtKeys {
        JwtKeys::parse(spec).unwrap()
    }

    fn key_a() -> String {
        format!("a:{}", STANDARD.encode([1u8; 32]))
    }

    fn key_b() -> String {
        format!("b:{}", STANDARD.encode([2u8; 32]))
    }

    fn claims() -> Claims {
        Claims {
            jti: Uuid::from_u128(3),
            ..Claims::access(
                Uuid::from_u128(1),
                TenantId::from_uuid(Uuid::from_u128(2)),
                "owner",
                NOW,
            )
        }
    }

    /// A token with an arbitrary header and claims, signed by `key` (for forged cases).
    fn forge(header: &str, claims: &str, key: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims_and_names_its_kid() {
        let keys = keys(&key_a());
        let token = keys.sign(&claims()).unwrap();
        assert_eq!(keys.verify(&token, NOW), Ok(claims()));
        let header: Header = decode_json(token.split('.').next().unwrap()).unwrap();
        assert_eq!(header.alg, "HS256");
        assert_eq!(header.kid.as_deref(), Some("a"));
    }

    #[test]
    fn rotation_the_first_key_signs_and_every_key_verifies() {
        let old = keys(&key_a());
        let rotated = keys(&format!("{},{}", key_b(), key_a()));
        let old_token = old.sign(&claims()).unwrap();
        let new_token = rotated.sign(&claims()).unwrap();
        assert_eq!(rotated.verify(&old_token, NOW), Ok(claims()));
        assert_eq!(rotated.verify(&new_token, NOW), Ok(claims()));
        // After the old key is dropped, its tokens are refused.
        let dropped = keys(&key_b());
        assert_eq!(dropped.verify(&old_token, NOW), Err(JwtError::UnknownKid));
    }

    #[test]
    fn every_rejection() {
        let keys = keys(&key_a());
        let good = keys.sign(&claims()).unwrap();
        let claims_json = serde_json::to_string(&claims()).unwrap();
        let with = |edit: &dyn Fn(&mut Claims)| {
            let mut c = claims();
            edit(&mut c);
            keys.sign(&c).unwrap()
        };
        let other_key = JwtKeys::parse(&format!("a:{}", STANDARD.encode([9u8; 32])))
            .unwrap()
            .sign(&claims())
            .unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let flipped_signature = {
            let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            sig[0] ^= 1;
            URL_SAFE_NO_PAD.encode(sig)
        };
        parts[2] = &flipped_signature;
        let tampered_signature = parts.join(".");
        let tampered_claims = {
            let mut c = claims();
            c.role = "owner2".into();
            let p: Vec<&str> = good.split('.').collect();
            format!(
                "{}.{}.{}",
                p[0],
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()),
                p[2]
            )
        };
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"a"}"#),
            URL_SAFE_NO_PAD.encode(&claims_json)
        );
        let cases: Vec<(&str, String, JwtError)> = vec![
            ("signed with another key", other_key, JwtError::Signature),
            ("signature altered", tampered_signature, JwtError::Signature),
            ("claims altered", tampered_claims, JwtError::Signature),
            (
                "unknown kid",
                forge(r#"{"alg":"HS256","kid":"zz"}"#, &claims_json, &[1u8; 32]),
                JwtError::UnknownKid,
            ),
            (
                "no kid",
                forge(r#"{"alg":"HS256"}"#, &claims_json, &[1u8; 32]),
                JwtError::UnknownKid,
            ),
            ("alg none", none_alg, JwtError::Algorithm),
            (
                "alg HS512",
                forge(r#"{"alg":"HS512","kid":"a"}"#, &claims_json, &[1u8; 32]),
                JwtError::Algorithm,
            ),
            (
                "alg RS256",
                forge(r#"{"alg":"RS256","kid":"a"}"#, &claims_json, &[1u8; 32]),
                JwtError::Algorithm,
            ),
            (
                "alg lower-case",
                forge(r#"{"alg":"hs256","kid":"a"}"#, &claims_json, &[1u8; 32]),
                JwtError::Algorithm,
            ),
            (
                "expired beyond the leeway",
                with(&|c| c.exp = NOW - LEEWAY_SECONDS),
                JwtError::Expired,
            ),
            (
                "issued in the future",
                with(&|c| c.iat = NOW + LEEWAY_SECONDS + 1),
                JwtError::NotYetValid,
            ),
            (
                "wrong issuer",
                with(&|c| c.iss = "someone".into()),
                JwtError::Issuer,
            ),
            (
                "wrong audience",
                with(&|c| c.aud = "other-api".into()),
                JwtError::Audience,
            ),
            ("empty", String::new(), JwtError::Malformed),
            ("two parts", "a.b".into(), JwtError::Malformed),
            ("four parts", format!("{good}.x"), JwtError::Malformed),
            ("not base64", "!!.??.**".into(), JwtError::Malformed),
            (
                "header not JSON",
                forge("not json", &claims_json, &[1u8; 32]),
                JwtError::Malformed,
            ),
            (
                "claims missing",
                forge(r#"{"alg":"HS256","kid":"a"}"#, r#"{"sub":"x"}"#, &[1u8; 32]),
                JwtError::Malformed,
            ),
            (
                "oversized",
                "a".repeat(TOKEN_BYTES_MAX + 1),
                JwtError::Malformed,
            ),
        ];
        for (name, token, expected) in cases {
            assert_eq!(keys.verify(&token, NOW), Err(expected), "{name}");
        }
    }

    #[test]
    fn expiry_allows_the_leeway() {
        let keys = keys(&key_a());
        let token = keys.sign(&claims()).unwrap();
        let exp = claims().exp;
        assert!(keys.verify(&token, exp + LEEWAY_SECONDS - 1).is_ok());
        assert_eq!(
            keys.verify(&token, exp + LEEWAY_SECONDS),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn key_configuration_is_checked() {
        let short = format!("a:{}", STANDARD.encode([1u8; 31]));
        let cases = [
            ("", JwtKeyError::Missing),
            ("  ", JwtKeyError::Missing),
            ("nokey", JwtKeyError::Shape { index: 0 }),
            (
                &short,
                JwtKeyError::TooShort {
                    index: 0,
                    bytes: 31,
                },
            ),
            ("a:not base64!", JwtKeyError::Base64 { index: 0 }),
            (
                &format!(":{}", STANDARD.encode([1u8; 32])),
                JwtKeyError::Kid { index: 0 },
            ),
            (
                &format!("{},{}", key_a(), key_a()),
                JwtKeyError::DuplicateKid { index: 1 },
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(JwtKeys::parse(spec).map(|_| ()), Err(expected), "{spec:?}");
        }
        let url_safe = format!("k1:{}", URL_SAFE_NO_PAD.encode([0xfbu8; 40]));
        assert!(JwtKeys::parse(&url_safe).is_ok());
        assert_eq!(JwtKeys::none().sign(&claims()), Err(JwtError::NoSigningKey));
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let secret = STANDARD.encode([7u8; 32]);
        let keys = keys(&format!("k:{secret}"));
        let shown = format!("{keys:?}");
        assert!(
            shown.contains("\"k\"") && !shown.contains(&secret),
            "{shown}"
        );
    }
}
