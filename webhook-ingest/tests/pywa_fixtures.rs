//! Signature round-trips over every webhook body in the pywa fixture corpus
//! (`shared/fixtures/whatsapp/pywa/*.json`, each file a map of case name to a
//! full webhook body). The corpus carries no signatures: each body is signed
//! here with a test app secret, as Meta would sign what it sends.
//!
//! A missing or empty fixture folder fails the tests; it never skips them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use webhook_ingest::signature::{sign, verify_signature, AppSecret, SignatureError};

const FIXTURE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/whatsapp/pywa"
);

const SECRET: &str = "test_app_secret";

struct Case {
    /// `file.json#case`, for failure messages.
    name: String,
    value: Value,
    /// The body as sent: compact serialisation of `value`.
    body: Vec<u8>,
}

fn secret() -> AppSecret {
    AppSecret::new(SECRET).unwrap()
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(FIXTURE_DIR);
    let entries = fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "fixture folder {} cannot be read ({e}); shared/ must sit beside the repository",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable fixture folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json fixture in {}", dir.display());
    files
}

/// Every case of every fixture file, each body serialised compactly.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for path in fixture_files() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read(&path).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let parsed: Value =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parsing {file}: {e}"));
        let Value::Object(map) = parsed else {
            panic!("{file}: expected an object mapping case names to webhook bodies");
        };
        assert!(!map.is_empty(), "{file}: no cases");
        for (case, value) in map {
            assert_eq!(
                value.get("object").and_then(Value::as_str),
                Some("whatsapp_business_account"),
                "{file}#{case}: not a webhook body"
            );
            let body = serde_json::to_vec(&value).unwrap();
            cases.push(Case {
                name: format!("{file}#{case}"),
                value,
                body,
            });
        }
    }
    cases
}

#[test]
fn fixture_corpus_is_present() {
    let files = fixture_files();
    let cases = cases();
    // Nine files and 44 cases at pywa commit 0bcf2f1; only require the
    // corpus to be there, so new fixtures can be added freely.
    assert!(cases.len() >= files.len(), "{} cases", cases.len());
}

#[test]
fn every_case_round_trips() {
    let secret = secret();
    for case in cases() {
        let header = sign(&secret, &case.body);
        assert_eq!(header.len(), "sha256=".len() + 64, "{}", case.name);
        assert_eq!(
            verify_signature(&secret, &case.body, Some(&header)),
            Ok(()),
            "{}",
            case.name
        );
        assert_eq!(
            verify_signature(
                &secret,
                &case.body,
                Some(&header.to_uppercase().replace("SHA256=", "sha256="))
            ),
            Ok(()),
            "{}: uppercase hex",
            case.name
        );
    }
}

#[test]
fn every_case_parses_the_same_from_bytes_and_from_a_tree() {
    for case in cases() {
        let tree: serde_json::Value = serde_json::from_slice(&case.body).unwrap();
        let from_bytes = webhook_ingest::payload::parse(&case.body);
        assert!(from_bytes.is_ok(), "{}: {from_bytes:?}", case.name);
        assert_eq!(
            from_bytes,
            webhook_ingest::payload::parse_value(&tree),
            "{}",
            case.name
        );
    }
}

#[test]
fn every_case_rejects_a_flipped_byte() {
    let secret = secret();
    for case in cases() {
        let header = sign(&secret, &case.body);
        let len = case.body.len();
        for index in [0, len / 2, len - 1] {
            let mut tampered = case.body.clone();
            tampered[index] ^= 0x01;
            assert_eq!(
                verify_signature(&secret, &tampered, Some(&header)),
                Err(SignatureError::Mismatch),
                "{}: byte {index} flipped",
                case.name
            );
        }
        let mut with_newline = case.body.clone();
        with_newline.push(b'\n');
        assert_eq!(
            verify_signature(&secret, &with_newline, Some(&header)),
            Err(SignatureError::Mismatch),
            "{}: trailing newline",
            case.name
        );
        assert_eq!(
            verify_signature(&secret, &case.body[..len - 1], Some(&header)),
            Err(SignatureError::Mismatch),
            "{}: truncated",
            case.name
        );
    }
}

#[test]
fn every_case_rejects_a_wrong_secret() {
    let secret = secret();
    let others = [
        AppSecret::new("test_app_secreT").unwrap(),
        AppSecret::new("test_app_secret ").unwrap(),
        AppSecret::new("another secret").unwrap(),
    ];
    for case in cases() {
        let header = sign(&secret, &case.body);
        for other in &others {
            assert_eq!(
                verify_signature(other, &case.body, Some(&header)),
                Err(SignatureError::Mismatch),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn every_case_rejects_a_missing_or_malformed_header() {
    let secret = secret();
    for case in cases() {
        let header = sign(&secret, &case.body);
        let hex = header.strip_prefix("sha256=").unwrap();
        let malformed = [
            String::new(),
            hex.to_owned(),                    // no prefix
            format!("sha1={hex}"),             // wrong algorithm
            format!("SHA256={hex}"),           // prefix is case-sensitive
            format!("sha256:{hex}"),           // wrong separator
            format!(" {header}"),              // leading space
            format!("{header} "),              // trailing space
            "sha256=".to_owned(),              // empty digest
            format!("sha256={}", &hex[..63]),  // odd length
            format!("sha256={}", &hex[..62]),  // even, too short
            format!("{header}0"),              // odd, too long
            format!("{header}00"),             // even, too long
            format!("sha256=g{}", &hex[1..]),  // non-hex digit
            format!("sha256={}z", &hex[..63]), // non-hex at the end
            format!("sha256=+{}", &hex[1..]),  // sign character
            format!("sha256={}é", &hex[..62]), // 64 bytes, 63 chars, non-ASCII
        ];
        for bad in &malformed {
            assert_eq!(
                verify_signature(&secret, &case.body, Some(bad)),
                Err(SignatureError::Malformed),
                "{}: header {bad:?}",
                case.name
            );
        }
        assert_eq!(
            verify_signature(&secret, &case.body, None),
            Err(SignatureError::Missing),
            "{}",
            case.name
        );
    }
}

/// The seed's defect: hashing a re-serialisation of the parsed JSON instead of
/// the bytes received. The same JSON value, printed differently, must not
/// verify against the signature of the bytes that were actually sent.
#[test]
fn reserialised_json_does_not_verify() {
    let secret = secret();
    for case in cases() {
        let header = sign(&secret, &case.body);
        let pretty = serde_json::to_vec_pretty(&case.value).unwrap();
        assert_ne!(pretty, case.body, "{}", case.name);
        assert_eq!(
            serde_json::from_slice::<Value>(&pretty).unwrap(),
            case.value,
            "{}: same JSON value",
            case.name
        );
        assert_eq!(
            verify_signature(&secret, &pretty, Some(&header)),
            Err(SignatureError::Mismatch),
            "{}",
            case.name
        );
        // And the other way round: a signature over the pretty bytes does not
        // cover the compact ones.
        assert_eq!(
            verify_signature(&secret, &case.body, Some(&sign(&secret, &pretty))),
            Err(SignatureError::Mismatch),
            "{}",
            case.name
        );
    }
}
