//! The `GET` verification handshake Meta performs when the callback URL or
//! verify token is saved in the App Dashboard:
//!
//! ```text
//! GET <callback>?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=<token>
//! ```
//!
//! A valid request is answered with HTTP 200 and the challenge, verbatim, as
//! a `text/plain` body; anything else with 403.

use ring::hmac;

/// Why a verification request was refused. Every variant maps to 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// No `hub.mode` parameter.
    #[error("missing hub.mode")]
    MissingMode,
    /// `hub.mode` is present but not `subscribe`.
    #[error("unsupported hub.mode (expected \"subscribe\")")]
    UnsupportedMode,
    /// No `hub.verify_token` parameter.
    #[error("missing hub.verify_token")]
    MissingToken,
    /// `hub.verify_token` differs from the configured token.
    #[error("hub.verify_token does not match")]
    TokenMismatch,
    /// No `hub.challenge` parameter, or an empty one.
    #[error("missing hub.challenge")]
    MissingChallenge,
    /// The configured verify token is empty: refuse every request rather
    /// than accept an empty token from anyone.
    #[error("no verify token configured")]
    NotConfigured,
}

/// Decides a verification request from its three query parameters
/// (`hub.mode`, `hub.verify_token`, `hub.challenge`) and the verify token
/// configured in the App Dashboard.
///
/// Returns the challenge to echo only when the mode is exactly `subscribe`
/// and the token matches. The token comparison runs in constant time.
pub fn verify_subscription(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
    expected_token: &str,
) -> Result<String, HandshakeError> {
    if expected_token.is_empty() {
        return Err(HandshakeError::NotConfigured);
    }
    match mode {
        None => return Err(HandshakeError::MissingMode),
        Some("subscribe") => {}
        Some(_) => return Err(HandshakeError::UnsupportedMode),
    }
    let token = token.ok_or(HandshakeError::MissingToken)?;
    if !constant_time_eq(token.as_bytes(), expected_token.as_bytes()) {
        return Err(HandshakeError::TokenMismatch);
    }
    match challenge {
        Some(challenge) if !challenge.is_empty() => Ok(challenge.to_owned()),
        _ => Err(HandshakeError::MissingChallenge),
    }
}

/// Equality without an early exit on the first differing byte: both sides
/// go through HMAC-SHA256 and the tags are compared by `ring::hmac::verify`,
/// which is constant time. Hashing also hides the expected token's length.
/// The key need not be secret; it only fixes the function.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"webhook-ingest verify-token comparison");
    let expected_tag = hmac::sign(&key, expected);
    hmac::verify(&key, given, expected_tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use HandshakeError::*;

    const TOKEN: &str = "my-verify-token";

    /// (name, hub.mode, hub.verify_token, hub.challenge, configured token, expected)
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        Result<&'static str, HandshakeError>,
    );

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        ("valid",                     Some("subscribe"),   Some(TOKEN),              Some("1158201444"),     TOKEN, Ok("1158201444")),
        ("challenge echoed verbatim", Some("subscribe"),   Some(TOKEN),              Some("a b&c=d\u{e9}"),  TOKEN, Ok("a b&c=d\u{e9}")),
        ("missing mode",              None,                Some(TOKEN),              Some("1"),              TOKEN, Err(MissingMode)),
        ("empty mode",                Some(""),            Some(TOKEN),              Some("1"),              TOKEN, Err(UnsupportedMode)),
        ("other mode",                Some("unsubscribe"), Some(TOKEN),              Some("1"),              TOKEN, Err(UnsupportedMode)),
        ("mode is case-sensitive",    Some("Subscribe"),   Some(TOKEN),              Some("1"),              TOKEN, Err(UnsupportedMode)),
        ("mode with whitespace",      Some("subscribe "),  Some(TOKEN),              Some("1"),              TOKEN, Err(UnsupportedMode)),
        ("missing token",             Some("subscribe"),   None,                     Some("1"),              TOKEN, Err(MissingToken)),
        ("empty token",               Some("subscribe"),   Some(""),                 Some("1"),              TOKEN, Err(TokenMismatch)),
        ("wrong token",               Some("subscribe"),   Some("not-the-token"),    Some("1"),              TOKEN, Err(TokenMismatch)),
        ("token prefix",              Some("subscribe"),   Some("my-verify"),        Some("1"),              TOKEN, Err(TokenMismatch)),
        ("token with suffix",         Some("subscribe"),   Some("my-verify-token2"), Some("1"),              TOKEN, Err(TokenMismatch)),
        ("token case differs",        Some("subscribe"),   Some("MY-VERIFY-TOKEN"),  Some("1"),              TOKEN, Err(TokenMismatch)),
        ("missing challenge",         Some("subscribe"),   Some(TOKEN),              None,                   TOKEN, Err(MissingChallenge)),
        ("empty challenge",           Some("subscribe"),   Some(TOKEN),              Some(""),               TOKEN, Err(MissingChallenge)),
        ("bad token before challenge", Some("subscribe"),   Some("x"),                None,                   TOKEN, Err(TokenMismatch)),
        ("nothing at all",            None,                None,                     None,                   TOKEN, Err(MissingMode)),
        ("unconfigured, empty given", Some("subscribe"),   Some(""),                 Some("1"),              "",    Err(NotConfigured)),
        ("unconfigured, some given",  Some("subscribe"),   Some("x"),                Some("1"),              "",    Err(NotConfigured)),
    ];

    #[test]
    fn table() {
        for &(name, mode, token, challenge, expected_token, want) in CASES {
            let got = verify_subscription(mode, token, challenge, expected_token);
            assert_eq!(got, want.map(str::to_owned), "case {name:?}");
        }
    }

    #[test]
    fn constant_time_eq_matches_plain_eq() {
        let samples: [&[u8]; 6] = [b"", b"a", b"b", b"ab", b"abc", TOKEN.as_bytes()];
        for a in samples {
            for b in samples {
                assert_eq!(constant_time_eq(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
    }
}
