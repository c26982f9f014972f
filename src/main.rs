//! `loyalty`: every component of loyalty-ledger in one binary.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ledger_core::{Currency, MinorUnits, Points};
use loyalty::app::{self, Components};
use loyalty::sandbox::{SandboxSettings, Utterance};
use loyalty::settings::Settings;
use loyalty::{expiry, keys, sandbox, tenants};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "loyalty", version, about = "loyalty-ledger: an event-sourced loyalty-points service", long_about = None)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing and apply every pending migration.
    Migrate,
    /// Run every component in one process: API, WhatsApp webhook ingest, conversation
    /// processor, WhatsApp notifier, relay, balances and analytics projectors, expiry
    /// schedule, WhatsApp analytics refresh; and the WhatsApp sandbox when the Cloud API
    /// base URL is its address (the default).
    All {
        /// Start the WhatsApp sandbox in this process when LOYALTY_WHATSAPP_API_BASE_URL is
        /// its address (LOYALTY_SANDBOX_ADDR). `false`: never (e.g. a separate
        /// `loyalty sandbox serve`).
        #[arg(
            long,
            env = "LOYALTY_SANDBOX_ENABLED",
            default_value_t = true,
            action = clap::ArgAction::Set
        )]
        sandbox_enabled: bool,
        #[command(flatten)]
        sandbox: Box<SandboxSettings>,
    },
    /// Run the vendor HTTP API (with its group-commit writer).
    Api,
    /// Run the WhatsApp webhook ingest (GET/POST /webhooks/whatsapp on LOYALTY_INGEST_ADDR).
    Ingest,
    /// Run the WhatsApp notifier: send the outbox to the Cloud API (or the sandbox) and apply
    /// delivery statuses.
    Notify,
    /// Run the relay that publishes the event table to NATS JetStream.
    Relay,
    /// Run the WhatsApp conversation processor: inbox → conversation → replies queued in
    /// `whatsapp_outbox` (with its own group-commit writer).
    Converse,
    /// Run one projector, or rebuild a read model from the event table.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Run the scheduled due work once now (release expired holds, activate pending points,
    /// expire points, review tiers) and print what it did. Safe beside other instances.
    Expire,
    /// Queue the WhatsApp expiry reminders due now (once per lot) and print how many.
    Remind,
    /// Run the broadcast feeder: move recipients of running broadcasts into the WhatsApp
    /// outbox every LOYALTY_BROADCAST_INTERVAL_MS (one runner at a time across instances).
    Broadcasts {
        /// Run once, print what it did, and exit (for cron instead of a long-running
        /// process).
        #[arg(long)]
        once: bool,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Generate and rotate the secret keys (see docs/SECURITY.md).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Audit exports of a tenant's ledger (docs/AUDIT.md).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// A tenant's books, folded from its events: positions as of any time or sequence, and
    /// monthly liability statements (docs/BOOKS.md).
    Books {
        #[command(subcommand)]
        command: BooksCommand,
    },
    /// The WhatsApp sandbox: a fake Cloud API for sends, and a simulated customer.
    Sandbox {
        #[command(flatten)]
        settings: Box<SandboxSettings>,
        #[command(subcommand)]
        command: SandboxCommand,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Serve the fake Cloud API (sends, fault injection, signed status webhooks).
    Serve,
    /// Post a signed customer message to the ingest URL and print the replies.
    Say {
        /// The customer's number, e.g. +2348012345678.
        #[arg(long)]
        from: String,
        /// The business number written to (default: the shared number).
        #[arg(long)]
        to: Option<String>,
        /// Send a tap on the reply button with this id (the text is its title).
        #[arg(long, conflicts_with = "list_row_id")]
        button_id: Option<String>,
        /// Send the choice of the list row with this id (the text is its title).
        #[arg(long)]
        list_row_id: Option<String>,
        /// The wamid of the interactive message being answered.
        #[arg(long)]
        reply_to: Option<String>,
        /// How long to wait for replies.
        #[arg(long, default_value_t = 5)]
        wait_seconds: u64,
        /// What the customer writes.
        text: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Write a tenant's whole ledger, with its latest signed chain head, as JSON Lines.
    Export {
        /// The tenant's id.
        #[arg(long)]
        tenant: uuid::Uuid,
        /// The file to write (created or truncated).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Verify an export offline: the hash chain, the signed head, and a replay; prints a
    /// summary, or the first bad sequence and exits non-zero.
    Verify {
        /// The export file.
        file: std::path::PathBuf,
        /// The platform's audit public key, base64 (served at
        /// /.well-known/loyalty-ledger/audit-keys).
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Subcommand)]
enum BooksCommand {
    /// Print a tenant's (or one customer's) position as JSON: points outstanding and their
    /// worth, balances, movements, tiers; as of now, a time or a tenant sequence.
    Position {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Only this customer.
        #[arg(long)]
        customer: Option<uuid::Uuid>,
        /// RFC 3339 time: the ledger as recorded at or before it.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        /// Tenant sequence: the ledger up to and including it.
        #[arg(long)]
        sequence: Option<i64>,
    },
    /// Print a tenant's monthly liability statements (opening, issued, redeemed, expired,
    /// reversed, adjusted, closing; points and money).
    Statement {
        #[arg(long)]
        tenant: uuid::Uuid,
        /// First month, YYYY-MM.
        #[arg(long)]
        from: Option<String>,
        /// Last month, YYYY-MM.
        #[arg(long)]
        to: Option<String>,
        /// csv or json.
        #[arg(long, default_value = "json")]
        format: StatementFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StatementFormat {
    Json,
    Csv,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print fresh master, blind-index and JWT keys as environment lines.
    Generate,
    /// Wrap every customer's data key again under the first of LOYALTY_MASTER_KEYS.
    Rewrap,
    /// Recompute every phone index under the blind-index key in
    /// LOYALTY_NEW_BLIND_INDEX_KEY (run with the API stopped).
    Reindex,
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Run the balances projector (customer balances and lots).
    Balances,
    /// Run the notifications projector (WhatsApp receipts for purchases and redemptions).
    Notifications,
    /// Run the referral process (referrers credited for their referees' first purchases,
    /// through a writer of its own).
    Referrals,
    /// Run the analytics projector and the WhatsApp analytics refresher
    /// (docs/ANALYTICS.md).
    Analytics,
    /// Rebuild a read model from the event table alone, then exit.
    Rebuild {
        /// The read model to rebuild.
        name: ProjectionName,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ProjectionName {
    Balances,
    /// The analytics read model (schema `analytics`, docs/ANALYTICS.md).
    Analytics,
    /// WhatsApp traffic per tenant per day, recomputed from the WhatsApp tables.
    AnalyticsWhatsapp,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Register a tenant with a `per_amount_spent` rule and print its first API key (shown once).
    Create {
        /// The vendor's display name.
        #[arg(long)]
        name: String,
        /// The vendor's public code: 3 to 20 letters A-Z or digits (case-insensitive, unique).
        #[arg(long)]
        vendor_code: String,
        /// Also create the owner's account with this email; the password is read from
        /// LOYALTY_OWNER_PASSWORD (12 to 256 characters), never from the command line.
        #[arg(long)]
        owner_email: Option<String>,
        /// ISO 4217 currency of the tenant's amounts.
        #[arg(long, default_value = "NGN")]
        currency: String,
        /// Days a lot of points lives before it expires.
        #[arg(long, default_value_t = 180)]
        expiry_days: u32,
        /// Amount, in minor units, that earns `points_per_step` points.
        #[arg(long, default_value_t = 10_000)]
        amount_step_minor: i64,
        /// Points earned per whole amount step.
        #[arg(long, default_value_t = 1)]
        points_per_step: i64,
        /// Smallest purchase, in minor units, that earns points.
        #[arg(long, default_value_t = 0)]
        minimum_purchase_minor: i64,
        /// Print one JSON line `{"tenant_id", "vendor_code", "api_key"}` instead of prose.
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOYALTY_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let settings = cli.settings;
    match cli.command {
        Command::Keys { command } => run_keys(&settings, command).await?,
        Command::Audit { command } => run_audit(&settings, command).await?,
        Command::Books { command } => run_books(&settings, command).await?,
        Command::Sandbox { settings, command } => run_sandbox(&settings, command).await?,
        Command::Migrate => {
            let applied = schema::migrate::migrate(&settings.database_url())
                .await
                .context("migrating the database")?;
            println!("migrations applied: {applied}");
        }
        Command::All {
            sandbox_enabled,
            sandbox,
        } => {
            let in_process = sandbox::for_all(&settings, &sandbox, sandbox_enabled)?;
            serve_with_sandbox(&settings, Components::ALL, in_process).await?
        }
        Command::Api => {
            serve(
                &settings,
                Components {
                    api: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Ingest => {
            serve(
                &settings,
                Components {
                    ingest: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Notify => {
            serve(
                &settings,
                Components {
                    notifier: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Relay => {
            serve(
                &settings,
                Components {
                    relay: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Converse => {
            serve(
                &settings,
                Components {
                    conversations: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Project {
            command: ProjectCommand::Balances,
        } => {
            serve(
                &settings,
                Components {
                    balances_projector: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Project {
            command: ProjectCommand::Notifications,
        } => {
            serve(
                &settings,
                Components {
                    notifications_projector: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Project {
            command: ProjectCommand::Analytics,
        } => {
            serve(
                &settings,
                Components {
                    analytics: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Project {
            command: ProjectCommand::Referrals,
        } => {
            serve(
                &settings,
                Components {
                    referrals: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Broadcasts { once: false } => {
            serve(
                &settings,
                Components {
                    broadcasts: true,
                    ..Components::NONE
                },
            )
            .await?
        }
        Command::Broadcasts { once: true } => {
            let platform_pool = schema::db::pool(&settings.platform_db())?;
            let vault = settings.vault()?;
            let report =
                loyalty::broadcasts::run_once(&platform_pool, &vault, &settings.broadcasts())
                    .await?;
            match report {
                Some(report) => println!(
                    "running broadcasts: {}, messages queued: {}, skipped (opted out): {}, \
                     skipped (no WhatsApp): {}, completed: {}",
                    report.broadcasts,
                    report.enqueued,
                    report.skipped_opted_out,
                    report.skipped_no_whatsapp,
                    report.completed
                ),
                None => println!("another broadcast feeder run is in progress; nothing done"),
            }
        }
        Command::Remind => {
            let platform_pool = schema::db::pool(&settings.platform_db())?;
            let vault = settings.vault()?;
            let reminders = settings.reminders();
            let report = loyalty::notifications::reminders::run_once(
                &platform_pool,
                &vault,
                chrono::Utc::now(),
                reminders.days_ahead,
            )
            .await?;
            match report {
                Some(report) => println!(
                    "lots due: {}, reminders queued: {}",
                    report.lots_due, report.queued
                ),
                None => println!("another reminder run is in progress; nothing done"),
            }
        }
        Command::Project {
            command: ProjectCommand::Rebuild { name },
        } => {
            let pool = schema::db::pool(&settings.platform_db())?;
            let events = match name {
                ProjectionName::Balances => {
                    projections::runner::rebuild(&projections::balances::Balances, &pool).await
                }
                ProjectionName::Analytics => {
                    projections::runner::rebuild(&projections::analytics::Analytics, &pool).await
                }
                ProjectionName::AnalyticsWhatsapp => {
                    let rows = projections::whatsapp_analytics::rebuild(&pool)
                        .await
                        .context("rebuilding the WhatsApp analytics")?;
                    println!("rebuilt {rows} tenant-days from the WhatsApp tables");
                    return Ok(());
                }
            }
            .context("rebuilding the read model")?;
            println!("rebuilt from {events} events");
        }
        Command::Expire => {
            let pool = schema::db::pool(&settings.app_db())?;
            let platform_pool = schema::db::pool(&settings.platform_db())?;
            let (writer, task) = schema::writer::spawn_standalone(pool, settings.writer());
            let report = expiry::run_once(&platform_pool, &writer, chrono::Utc::now()).await?;
            drop(writer);
            let _ = task.await;
            match report {
                Some(report) => println!(
                    "customers checked: {}, holds released: {}, lots activated: {}, \
                     lots expired: {}, points expired: {}",
                    report.customers_checked,
                    report.holds_released,
                    report.lots_activated,
                    report.lots_expired,
                    report.points_expired
                ),
                None => println!("another instance is running the due work now; nothing done"),
            }
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    name,
                    vendor_code,
                    owner_email,
                    currency,
                    expiry_days,
                    amount_step_minor,
                    points_per_step,
                    minimum_purchase_minor,
                    json,
                },
        } => {
            let vendor_code = schema::accounts::VendorCode::parse(&vendor_code)
                .map_err(|e| anyhow::anyhow!("--vendor-code {e}"))?;
            let owner = owner_account(owner_email)?;
            let mut tenant = tenants::NewTenant::per_amount_spent(
                vendor_code,
                name,
                Currency::parse(&currency).context("--currency")?,
                expiry_days,
                MinorUnits::parse_positive(amount_step_minor).context("--amount-step-minor")?,
                Points::new(points_per_step),
                MinorUnits::parse_non_negative(minimum_purchase_minor)
                    .context("--minimum-purchase-minor")?,
            )
            .context("invalid rule")?;
            tenant.owner = owner;
            let pool = schema::db::pool(&settings.app_db())?;
            let created = tenants::create(&pool, tenant).await.map_err(|e| match e {
                tenants::CreateTenantError::VendorCodeTaken => {
                    anyhow::anyhow!("--vendor-code is already taken")
                }
                tenants::CreateTenantError::EmailTaken => {
                    anyhow::anyhow!("--owner-email is already registered")
                }
                other => anyhow::Error::new(other).context("creating the tenant"),
            })?;
            if json {
                let line = serde_json::json!({
                    "tenant_id": created.tenant_id.to_string(),
                    "vendor_code": created.vendor_code.as_str(),
                    "api_key": created.api_key.plaintext,
                });
                println!("{line}");
            } else {
                println!("tenant id: {}", created.tenant_id);
                println!("vendor code: {}", created.vendor_code.as_str());
                if let Some(user_id) = created.owner_user_id {
                    println!("owner user id: {user_id}");
                }
                println!("API key (shown once): {}", created.api_key.plaintext);
            }
        }
    }
    Ok(())
}

async fn run_sandbox(settings: &SandboxSettings, command: SandboxCommand) -> anyhow::Result<()> {
    match command {
        SandboxCommand::Serve => sandbox::serve(settings).await,
        SandboxCommand::Say {
            from,
            to,
            button_id,
            list_row_id,
            reply_to,
            wait_seconds,
            text,
        } => {
            let utterance = match (button_id, list_row_id) {
                (Some(id), _) => Utterance::Button { id, title: text },
                (None, Some(id)) => Utterance::ListRow { id, title: text },
                (None, None) => Utterance::Text(text),
            };
            let wait = Duration::from_secs(wait_seconds.min(600));
            sandbox::say(
                settings,
                &from,
                to.as_deref(),
                reply_to.as_deref(),
                utterance,
                wait,
            )
            .await
        }
    }
}

async fn run_books(settings: &Settings, command: BooksCommand) -> anyhow::Result<()> {
    let pool = schema::db::pool(&settings.platform_db())?;
    match command {
        BooksCommand::Position {
            tenant,
            customer,
            as_of,
            sequence,
        } => {
            let tenant = ledger_core::TenantId::from_uuid(tenant);
            let as_of = loyalty::books::as_of(as_of, sequence)?;
            let json = match customer {
                Some(customer) => serde_json::to_string_pretty(
                    &loyalty::books::customer_position(
                        &pool,
                        tenant,
                        ledger_core::CustomerId::from_uuid(customer),
                        as_of,
                    )
                    .await?,
                )?,
                None => serde_json::to_string_pretty(
                    &loyalty::books::tenant_position(&pool, tenant, as_of).await?,
                )?,
            };
            println!("{json}");
        }
        BooksCommand::Statement {
            tenant,
            from,
            to,
            format,
        } => {
            let text = loyalty::books::statements(
                &pool,
                ledger_core::TenantId::from_uuid(tenant),
                from,
                to,
                matches!(format, StatementFormat::Csv),
            )
            .await?;
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(())
}

async fn run_audit(settings: &Settings, command: AuditCommand) -> anyhow::Result<()> {
    use loyalty::audit::{export, verify};
    match command {
        AuditCommand::Export { tenant, out } => {
            let pool = schema::db::pool(&settings.platform_db())?;
            if !export::tenant_exists(&pool, tenant).await? {
                anyhow::bail!("--tenant {tenant}: no such tenant");
            }
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let exported =
                export::export(&pool, ledger_core::TenantId::from_uuid(tenant), &mut writer)
                    .await?;
            match exported.signed_sequence {
                Some(signed) => println!(
                    "exported {} events to {}; signed head at sequence {signed}",
                    exported.events,
                    out.display()
                ),
                None => println!(
                    "exported {} events to {}; no signed head yet",
                    exported.events,
                    out.display()
                ),
            }
        }
        AuditCommand::Verify { file, public_key } => {
            let key = vault::audit::decode_public_key(&public_key)
                .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?;
            let file = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            match verify::verify_reader(file, |message, signature| {
                vault::audit::verify(&key, message, signature)
            }) {
                Ok(summary) => println!("OK\n{summary}"),
                Err(error) => {
                    eprintln!("FAILED: {error}");
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

async fn run_keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => {
            let suffix = chrono::Utc::now().format("%Y%m%d").to_string();
            print!("{}", keys::generate(&suffix)?);
        }
        KeysCommand::Rewrap => {
            let vault = settings.vault()?;
            let mut owner = owner_connection(settings).await?;
            let done = keys::rewrap(&mut owner, &vault).await?;
            println!(
                "re-wrapped under master key {}: {} in all",
                vault.current_master_key_id(),
                done.total()
            );
            for (table, count) in &done.counts {
                println!("  {table}: {count}");
            }
            for failure in &done.failures {
                eprintln!("not re-wrapped: {failure}");
            }
            if !done.failures.is_empty() {
                anyhow::bail!(
                    "{} record(s) could not be re-wrapped and still need their old master key; \
                     keep it configured until they are dealt with (docs/SECURITY.md)",
                    done.failures.len()
                );
            }
        }
        KeysCommand::Reindex => {
            let vault = settings.vault()?;
            let new_key = std::env::var("LOYALTY_NEW_BLIND_INDEX_KEY")
                .context("LOYALTY_NEW_BLIND_INDEX_KEY is not set")?;
            let new_index_key = vault::Vault::from_config(
                settings.master_keys.as_deref().unwrap_or_default(),
                &new_key,
            )
            .map_err(|e| anyhow::anyhow!("LOYALTY_NEW_BLIND_INDEX_KEY: {e}"))?;
            let owner = owner_connection(settings).await?;
            let count = keys::reindex(&owner, &vault, &new_index_key).await?;
            println!(
                "phone indexes recomputed: {count}; now set LOYALTY_BLIND_INDEX_KEY to the new key"
            );
        }
    }
    Ok(())
}

/// The operator's connection (DATABASE_URL, the schema owner): key rotation reads and
/// writes across tenants, which the service's roles cannot.
async fn owner_connection(settings: &Settings) -> anyhow::Result<tokio_postgres::Client> {
    let (owner, connection) =
        tokio_postgres::connect(&settings.database_url(), tokio_postgres::NoTls)
            .await
            .context("connecting with DATABASE_URL (the schema owner's connection)")?;
    tokio::spawn(connection);
    Ok(owner)
}

/// The owner account of `tenant create`: the email from `--owner-email`, the password from
/// the environment (a command line is visible to every user of the machine).
fn owner_account(owner_email: Option<String>) -> anyhow::Result<Option<tenants::OwnerAccount>> {
    let Some(email) = owner_email else {
        return Ok(None);
    };
    let email =
        schema::accounts::Email::parse(&email).map_err(|e| anyhow::anyhow!("--owner-email {e}"))?;
    let password = std::env::var("LOYALTY_OWNER_PASSWORD").map_err(|_| {
        anyhow::anyhow!("--owner-email needs the owner's password in LOYALTY_OWNER_PASSWORD")
    })?;
    let password = ledger_api::passwords::Password::parse(&password)
        .map_err(|e| anyhow::anyhow!("LOYALTY_OWNER_PASSWORD {e}"))?;
    Ok(Some(tenants::OwnerAccount { email, password }))
}

async fn serve(settings: &Settings, components: Components) -> anyhow::Result<()> {
    serve_with_sandbox(settings, components, None).await
}

async fn serve_with_sandbox(
    settings: &Settings,
    components: Components,
    sandbox: Option<app::InProcessSandbox>,
) -> anyhow::Result<()> {
    let running = app::start_with_sandbox(settings, components, sandbox).await?;
    app::termination_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}
