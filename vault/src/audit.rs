//! The platform's audit signing key (issue #6): Ed25519, from `LOYALTY_AUDIT_SIGNING_KEY`
//! (32 random bytes, base64: the key's seed). It signs tenants' chain heads
//! (`ledger_core::chain::signed_head_message`); auditors verify the signatures with the
//! public key the API serves, offline.

use super::{VaultError, BASE64, KEY_BYTES};
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// An Ed25519 signature: 64 bytes.
pub type Signature = [u8; 64];

pub struct AuditSigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditSigningKey({})", self.key_id)
    }
}

impl AuditSigningKey {
    /// The key from its base64 seed (what `loyalty keys generate` prints).
    pub fn parse(base64_seed: &str) -> Result<Self, VaultError> {
        let length_error = || VaultError::KeyLength {
            what: "LOYALTY_AUDIT_SIGNING_KEY".into(),
        };
        let seed = BASE64
            .decode(base64_seed.trim())
            .map_err(|_| length_error())?;
        if seed.len() != KEY_BYTES {
            return Err(length_error());
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| length_error())?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(AuditSigningKey { pair, key_id })
    }

    /// The public key, 32 bytes.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key in base64, as served and as `loyalty audit verify --public-key` takes it.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.public_key())
    }

    /// `ed25519:` and the first 16 hex digits of the public key's SHA-256: names the key in
    /// stored signatures, so keys can be rotated.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

/// The id of a public key (see [`AuditSigningKey::key_id`]).
pub fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("ed25519:{hex}")
}

/// A public key from its base64 form; refused unless it is 32 bytes.
pub fn decode_public_key(base64_key: &str) -> Result<Vec<u8>, VaultError> {
    let key = BASE64
        .decode(base64_key.trim())
        .map_err(|_| VaultError::KeyLength {
            what: "the audit public key".into(),
        })?;
    if key.len() != KEY_BYTES {
        return Err(VaultError::KeyLength {
            what: "the audit public key".into(),
        });
    }
    Ok(key)
}

/// Whether `signature` is `public_key`'s over `message`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let key = AuditSigningKey::parse(&crate::generate_key_base64().unwrap()).unwrap();
        let other = AuditSigningKey::parse(&crate::generate_key_base64().unwrap()).unwrap();
        let signature = key.sign(b"head 42");
        assert!(verify(key.public_key(), b"head 42", &signature));
        assert!(!verify(key.public_key(), b"head 43", &signature));
        assert!(!verify(other.public_key(), b"head 42", &signature));
        let mut forged = signature;
        forged[0] ^= 1;
        assert!(!verify(key.public_key(), b"head 42", &forged));
        assert!(key.key_id().starts_with("ed25519:") && key.key_id().len() == 24);
        assert_ne!(key.key_id(), other.key_id());
    }

    #[test]
    fn the_same_seed_is_the_same_key_and_a_bad_one_is_refused() {
        let seed = crate::generate_key_base64().unwrap();
        let a = AuditSigningKey::parse(&seed).unwrap();
        let b = AuditSigningKey::parse(&seed).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(
            AuditSigningKey::parse(&a.public_key_base64())
                .unwrap()
                .key_id()
                .len(),
            24
        );
        for bad in ["", "not base64!", "AAAA"] {
            assert!(matches!(
                AuditSigningKey::parse(bad),
                Err(VaultError::KeyLength { .. })
            ));
        }
    }
}
