//! Applies the SQL migrations in `schema/migrations/` (embedded at build time, run by
//! refinery, recorded in `refinery_schema_history`). Creates the database first if needed.

use std::str::FromStr;
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("invalid database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("the database URL names no database")]
    NoDatabase,
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot create database {name}: {source}")]
    Create {
        name: String,
        source: tokio_postgres::Error,
    },
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Names of the migrations this build carries, in order.
pub fn migration_names() -> Vec<String> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect()
}

/// A fingerprint of every migration's name and checksum: tests key their migrated template
/// database by it, so a changed migration gets a fresh template.
pub fn fingerprint() -> u64 {
    embedded::migrations::runner().get_migrations().iter().fold(
        0xcbf2_9ce4_8422_2325_u64,
        |hash, m| {
            (hash ^ m.checksum()).wrapping_mul(0x0100_0000_01b3)
                ^ u64::from(m.version().unsigned_abs())
        },
    )
}

/// Creates the database named in `url` when it does not exist, then applies every pending
/// migration. Returns how many were applied now.
pub async fn migrate(url: &str) -> Result<usize, MigrateError> {
    let config = tokio_postgres::Config::from_str(url).map_err(MigrateError::Url)?;
    let name = config
        .get_dbname()
        .ok_or(MigrateError::NoDatabase)?
        .to_owned();
    create_database_if_missing(&config, &name).await?;
    let mut client = connect(&config).await?;
    // One migrator at a time per database.
    client
        .batch_execute("SELECT pg_advisory_lock(7319001)")
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client
        .batch_execute("SELECT pg_advisory_unlock(7319001)")
        .await?;
    Ok(report?.applied_migrations().len())
}

pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, MigrateError> {
    let (client, connection) = config.connect(NoTls).await.map_err(MigrateError::Connect)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "migration connection closed");
        }
    });
    Ok(client)
}

async fn create_database_if_missing(
    config: &tokio_postgres::Config,
    name: &str,
) -> Result<(), MigrateError> {
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let client = connect(&maintenance).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match client.batch_execute(&statement).await {
        Ok(()) => Ok(()),
        // Another process created it between our check and our CREATE.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(source) => Err(MigrateError::Create {
            name: name.to_owned(),
            source,
        }),
    }
}
