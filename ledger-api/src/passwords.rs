//! Vendor passwords: a length policy and argon2id.
//!
//! Policy (NIST SP 800-63B): 12 to 256 characters, no composition rules; any characters,
//! including spaces and emoji, except control characters. Hashes are argon2id with the
//! `argon2` crate's defaults (OWASP's minimum: m = 19 MiB, t = 2, p = 1), as PHC strings that
//! carry their parameters, so the parameters can be raised later without breaking old hashes.
//! Hashing takes tens of milliseconds of CPU (measured in docs/SECURITY.md), so the HTTP
//! handlers run it with `tokio::task::spawn_blocking`, off the async workers.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

pub const PASSWORD_CHARS_MIN: usize = 12;
pub const PASSWORD_CHARS_MAX: usize = 256;

/// A password that meets the policy. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Checks the policy. The message never contains the password.
    pub fn parse(raw: &str) -> Result<Password, String> {
        let chars = raw.chars().count();
        if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&chars) {
            return Err(format!(
                "must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters long"
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(Password(raw.to_owned()))
    }

    /// A password presented at login: only checked against a hash, so the policy (which
    /// applies when a password is chosen) is not applied to it.
    pub fn presented(raw: &str) -> Password {
        Password(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("no randomness available for a salt: {0}")]
    Random(String),
    #[error("argon2: {0}")]
    Hash(String),
}

/// The argon2id PHC string of a password (CPU-heavy: call from a blocking thread).
pub fn hash(password: &Password) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC string (constant-time comparison inside argon2).
/// A malformed stored hash never matches. CPU-heavy: call from a blocking thread.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing anyone knows, verified against when the email is unknown (or the user
/// has no password yet), so that a failed login costs the same time whether or not the
/// account exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = Password("an unguessable placeholder password".to_owned());
        hash(&password).unwrap_or_else(|_| {
            // Only without an OS random source, where nothing else works either: a fixed
            // salt is fine, this hash protects nothing.
            let salt = SaltString::encode_b64(b"loyalty-ledger-dummy").unwrap_or_else(|_| {
                SaltString::from_b64("bG95YWx0eWxlZGdlcg").expect("a valid constant salt")
            });
            Argon2::default()
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
    })
}

/// Runs `work` on the blocking pool (argon2 must not stall an async worker).
pub async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, crate::problem::ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::problem::ApiError::Internal(format!("password hashing task: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_policy_counts_characters_and_nothing_else() {
        assert!(Password::parse("correct horse").is_ok());
        assert!(Password::parse(&"é".repeat(12)).is_ok());
        assert!(Password::parse(&"x".repeat(256)).is_ok());
        assert!(
            Password::parse("aaaaaaaaaaaa").is_ok(),
            "no composition rules"
        );
        for bad in [
            "",
            "short",
            &"x".repeat(11),
            &"x".repeat(257),
            "twelve chars\u{0}",
        ] {
            assert!(
                Password::parse(bad).is_err(),
                "{} characters",
                bad.chars().count()
            );
        }
        assert_eq!(
            format!("{:?}", Password::parse("correct horse").unwrap()),
            "Password(<redacted>)"
        );
    }

    #[test]
    fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let password = Password::parse("correct horse battery").unwrap();
        let started = std::time::Instant::now();
        let stored = hash(&password).unwrap();
        eprintln!(
            "argon2id hash took {:?} (argon2 is built with opt-level 3 even in dev)",
            started.elapsed()
        );
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(stored, hash(&password).unwrap(), "salted");
        assert!(!verify("anything at all", dummy_hash()));
    }
}
