//! The `loyalty` binary's one-shot commands: they apply what they should, refuse bad
//! arguments with a clear message and a non-zero exit, and write nothing then.

use crate::helpers::{admin_client, dbname, fresh_database};
use std::process::Command;

fn loyalty(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the loyalty binary")
}

async fn event_count(database_url: &str) -> i64 {
    let client = admin_client(&dbname(database_url)).await;
    client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn migrate_applies_nothing_the_second_time() {
    let database_url = fresh_database().await; // already migrated from the template
    let again = loyalty(&database_url, &["migrate"]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "migrations applied: 0"
    );
}

#[tokio::test]
async fn tenant_create_refuses_bad_arguments_and_writes_nothing() {
    let database_url = fresh_database().await;
    let cases: [(&[&str], &str); 8] = [
        (&["--vendor-code", "ab"], "--vendor-code"),
        (&["--vendor-code", "BAD-CODE"], "--vendor-code"),
        (&["--owner-email", "not-an-email"], "--owner-email"),
        (&["--currency", "ngn"], "--currency"),
        (&["--amount-step-minor", "0"], "--amount-step-minor"),
        (&["--minimum-purchase-minor=-1"], "--minimum-purchase-minor"),
        (&["--points-per-step=-5"], "invalid rule"),
        (&["--expiry-days", "many"], "--expiry-days"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["tenant", "create", "--name", "Bad Shop"];
        if !extra.contains(&"--vendor-code") {
            args.extend_from_slice(&["--vendor-code", "BADSHOP"]);
        }
        args.extend_from_slice(extra);
        let output = loyalty(&database_url, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    assert_eq!(event_count(&database_url).await, 0);

    let created = loyalty(
        &database_url,
        &[
            "tenant",
            "create",
            "--name",
            "Good Shop",
            "--vendor-code",
            "goodshop",
            "--json",
        ],
    );
    assert!(created.status.success(), "{created:?}");
    let line: serde_json::Value = serde_json::from_slice(&created.stdout).expect("one JSON line");
    assert!(line["api_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("ll_")));
    assert_eq!(line["vendor_code"], "GOODSHOP");
    assert_eq!(event_count(&database_url).await, 1);
    let tenants: i64 = admin_client(&dbname(&database_url))
        .await
        .query_one(
            "SELECT count(*) FROM tenants WHERE vendor_code = 'GOODSHOP'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenants, 1, "the directory row is written with the event");

    // The same code in another case is taken, and nothing more is written.
    let again = loyalty(
        &database_url,
        &[
            "tenant",
            "create",
            "--name",
            "Copy",
            "--vendor-code",
            "GoodShop",
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--vendor-code is already taken"));
    assert_eq!(event_count(&database_url).await, 1);
}

#[tokio::test]
async fn tenant_create_with_an_owner_reads_the_password_from_the_environment() {
    let database_url = fresh_database().await;
    let run = |password: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_loyalty"));
        command
            .args([
                "tenant",
                "create",
                "--name",
                "Owned Shop",
                "--vendor-code",
                "OWNED1",
                "--owner-email",
                "Owner@Owned.example",
            ])
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .env_remove("LOYALTY_OWNER_PASSWORD");
        if let Some(password) = password {
            command.env("LOYALTY_OWNER_PASSWORD", password);
        }
        command.output().expect("running the loyalty binary")
    };
    for (password, expected) in [
        (None, "LOYALTY_OWNER_PASSWORD"),
        (Some("short"), "LOYALTY_OWNER_PASSWORD must be 12"),
    ] {
        let output = run(password);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    assert_eq!(event_count(&database_url).await, 0);
    let output = run(Some("a long enough password"));
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("owner user id:"));
    let owners: i64 = admin_client(&dbname(&database_url))
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE email = 'owner@owned.example' AND role = 'owner' \
             AND password_hash LIKE '$argon2id$%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owners, 1);
}
