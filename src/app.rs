//! Starting and stopping components. `loyalty all` starts every component in one process;
//! the other subcommands start one each. Stopping is graceful: the HTTP server finishes the
//! requests in flight, the writer answers what it has taken, the relay and the projectors
//! finish their batch.

use crate::expiry;
use crate::settings::Settings;
use anyhow::Context;
use projections::balances::Balances;
use projections::relay::RelaySettings;
use projections::runner::RunnerSettings;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Which components to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Components {
    pub api: bool,
    /// The WhatsApp webhook ingest (its own listener, `LOYALTY_INGEST_ADDR`).
    pub ingest: bool,
    pub relay: bool,
    pub balances_projector: bool,
    pub expiry_schedule: bool,
    /// The WhatsApp conversation processor (inbox → conversation → reply outbox).
    pub conversations: bool,
    /// The WhatsApp notifier: sends the outbox, applies delivery statuses.
    pub notifier: bool,
    /// The notifications projector (ledger events → receipts in the outbox).
    pub notifications_projector: bool,
    /// The expiry-reminder job (lots about to expire → one reminder each).
    pub expiry_reminders: bool,
    /// The broadcast feeder (`crate::broadcasts`).
    pub broadcasts: bool,
    /// The referral process (`crate::referrals`: `ReferralQualified` → the referrer's
    /// bonus through the writer).
    pub referrals: bool,
    /// The chain-head signer (`crate::audit`), when `LOYALTY_AUDIT_SIGNING_KEY` is set.
    pub audit_signer: bool,
    /// The analytics projector and the WhatsApp analytics refresher (docs/ANALYTICS.md).
    pub analytics: bool,
}

impl Components {
    pub const ALL: Components = Components {
        api: true,
        ingest: true,
        relay: true,
        balances_projector: true,
        expiry_schedule: true,
        conversations: true,
        notifier: true,
        notifications_projector: true,
        expiry_reminders: true,
        broadcasts: true,
        referrals: true,
        audit_signer: true,
        analytics: true,
    };
    pub const NONE: Components = Components {
        api: false,
        ingest: false,
        relay: false,
        balances_projector: false,
        expiry_schedule: false,
        conversations: false,
        notifier: false,
        notifications_projector: false,
        expiry_reminders: false,
        broadcasts: false,
        referrals: false,
        audit_signer: false,
        analytics: false,
    };
}

/// The WhatsApp sandbox started in-process beside the components (`loyalty all` on a local
/// run): it stands in for Meta's Cloud API, and its status webhooks go to this process's
/// ingest when the ingest runs (else to `config.webhook_url`).
pub struct InProcessSandbox {
    /// Where it listens (`LOYALTY_SANDBOX_ADDR`).
    pub addr: String,
    pub config: whatsapp_sandbox::SandboxConfig,
}

pub struct RunningApp {
    /// Where the API listens, when it was started.
    pub http_addr: Option<SocketAddr>,
    /// Where the WhatsApp webhook ingest listens, when it was started.
    pub ingest_addr: Option<SocketAddr>,
    /// Where the in-process WhatsApp sandbox listens, when it was started.
    pub sandbox_addr: Option<SocketAddr>,
    /// The tenant-scoped pool (`loyalty_app`) of the API and the writer.
    pub pool: schema::Pool,
    /// The cross-tenant pool (`loyalty_platform`) of the relay, projectors and expiry scan.
    pub platform_pool: schema::Pool,
    servers: Vec<actix_web::dev::ServerHandle>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

pub async fn start(settings: &Settings, components: Components) -> anyhow::Result<RunningApp> {
    start_with_sandbox(settings, components, None).await
}

/// [`start`], plus the WhatsApp sandbox in this process when `sandbox` is given (started
/// after the ingest, whose address it posts statuses to, and before the notifier).
pub async fn start_with_sandbox(
    settings: &Settings,
    components: Components,
    sandbox: Option<InProcessSandbox>,
) -> anyhow::Result<RunningApp> {
    // Checked before anything starts: an API that cannot sign access tokens is refused.
    let accounts = if components.api {
        Some(settings.accounts().context("the API cannot start")?)
    } else {
        None
    };
    let ingest = if components.ingest {
        Some(
            settings
                .ingest()
                .context("the WhatsApp webhook ingest cannot start")?,
        )
    } else {
        None
    };
    let notifier = if components.notifier {
        Some(
            settings
                .notifier
                .config()
                .context("the WhatsApp notifier cannot start")?,
        )
    } else {
        None
    };
    let pool = schema::db::pool(&settings.app_db()).context("building the database pool")?;
    let platform_pool =
        schema::db::pool(&settings.platform_db()).context("building the platform database pool")?;
    let nats_client = projections::nats::connect(&settings.nats_url)
        .await
        .context("configuring the NATS client")?;
    let (shutdown, shutdown_signal) = watch::channel(false);
    let committed = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    let needs_writer = components.api
        || components.expiry_schedule
        || components.conversations
        || components.referrals;
    let writer = needs_writer.then(|| {
        let (handle, task) =
            schema::writer::spawn(pool.clone(), settings.writer(), committed.clone());
        tasks.push(("writer", task));
        handle
    });

    let workers = settings
        .http_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut http_addr = None;
    let mut servers = Vec::new();
    if let (true, Some(writer)) = (components.api, &writer) {
        let listener = TcpListener::bind(&settings.http_addr)
            .with_context(|| format!("binding the API to {}", settings.http_addr))?;
        let address = listener.local_addr()?;
        let nats_for_ready = nats_client.clone();
        let state = ledger_api::ApiState::new(
            pool.clone(),
            writer.clone(),
            Arc::new(move || projections::nats::is_connected(&nats_for_ready)),
            settings.body_bytes_max,
            Arc::new(settings.vault()?),
        )
        .with_edge(settings.edge.config().context("the rate limit settings")?)
        .with_accounts(accounts.clone().unwrap_or_default())
        .with_shared_whatsapp_number(settings.whatsapp_shared_phone_number_id.clone());
        let state = match settings.audit_signing_key()? {
            Some(key) => {
                state.with_audit_public_key(key.key_id().to_owned(), key.public_key_base64())
            }
            None => state,
        };
        let running = ledger_api::serve(listener, state, workers).context("starting the API")?;
        servers.push(running.handle());
        tasks.push((
            "api",
            tokio::spawn(async move {
                if let Err(error) = running.await {
                    tracing::error!(%error, "API server failed");
                }
            }),
        ));
        tracing::info!("listening on http://{address}");
        http_addr = Some(address);
    }
    let mut ingest_addr = None;
    if let Some(config) = ingest {
        let listener = TcpListener::bind(&settings.ingest_addr)
            .with_context(|| format!("binding the WhatsApp ingest to {}", settings.ingest_addr))?;
        let address = listener.local_addr()?;
        let state = webhook_ingest::IngestState::new(
            platform_pool.clone(),
            Arc::new(settings.vault()?),
            config,
        );
        let running =
            webhook_ingest::serve(listener, state, workers).context("starting the ingest")?;
        servers.push(running.handle());
        tasks.push((
            "ingest",
            tokio::spawn(async move {
                if let Err(error) = running.await {
                    tracing::error!(%error, "WhatsApp ingest server failed");
                }
            }),
        ));
        tracing::info!(
            "WhatsApp webhook ingest listening on http://{address}{}",
            webhook_ingest::server::WEBHOOK_PATH
        );
        ingest_addr = Some(address);
    }
    let mut sandbox_addr = None;
    if let Some(InProcessSandbox { addr, mut config }) = sandbox {
        if let Some(ingest) = ingest_addr {
            config.webhook_url = Some(format!(
                "http://{}{}",
                loopback_if_unspecified(ingest),
                webhook_ingest::server::WEBHOOK_PATH
            ));
        }
        let listener = TcpListener::bind(&addr)
            .with_context(|| format!("binding the WhatsApp sandbox to {addr}"))?;
        let address = listener.local_addr()?;
        let webhook_url = config.webhook_url.clone().unwrap_or_default();
        let running =
            whatsapp_sandbox::serve(listener, config).context("starting the WhatsApp sandbox")?;
        servers.push(running.handle());
        tasks.push((
            "sandbox",
            tokio::spawn(async move {
                if let Err(error) = running.await {
                    tracing::error!(%error, "WhatsApp sandbox failed");
                }
            }),
        ));
        tracing::info!(
            "WhatsApp sandbox (the local stand-in for Meta's Cloud API) listening on \
             http://{address}; status webhooks to {webhook_url}"
        );
        sandbox_addr = Some(address);
    }
    if components.relay {
        tasks.push((
            "relay",
            tokio::spawn(projections::relay::run(
                platform_pool.clone(),
                nats_client.clone(),
                settings.nats(),
                RelaySettings::new("main"),
                committed.clone(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if components.balances_projector {
        tasks.push((
            "projector:balances",
            tokio::spawn(projections::runner::run(
                Balances,
                platform_pool.clone(),
                nats_client.clone(),
                settings.nats(),
                RunnerSettings::default(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if components.analytics {
        tasks.push((
            "projector:analytics",
            tokio::spawn(projections::runner::run(
                projections::analytics::Analytics,
                platform_pool.clone(),
                nats_client.clone(),
                settings.nats(),
                RunnerSettings::default(),
                shutdown_signal.clone(),
            )),
        ));
        tasks.push((
            "analytics-whatsapp",
            tokio::spawn(projections::whatsapp_analytics::run(
                platform_pool.clone(),
                settings.whatsapp_analytics(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if components.notifications_projector {
        tasks.push((
            "projector:notifications",
            tokio::spawn(projections::runner::run(
                settings.notifications(Arc::new(settings.vault()?)),
                platform_pool.clone(),
                nats_client.clone(),
                settings.nats(),
                RunnerSettings::default(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if let (true, Some(writer)) = (components.referrals, &writer) {
        tasks.push((
            "projector:referrals",
            tokio::spawn(projections::runner::run(
                crate::referrals::Referrals {
                    writer: writer.clone(),
                },
                platform_pool.clone(),
                nats_client.clone(),
                settings.nats(),
                RunnerSettings::default(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if components.expiry_reminders {
        tasks.push((
            "expiry-reminders",
            tokio::spawn(crate::notifications::reminders::schedule(
                platform_pool.clone(),
                Arc::new(settings.vault()?),
                settings.reminders(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if components.broadcasts {
        tasks.push((
            "broadcasts",
            tokio::spawn(crate::broadcasts::schedule(
                platform_pool.clone(),
                Arc::new(settings.vault()?),
                settings.broadcasts(),
                shutdown_signal.clone(),
            )),
        ));
    }
    if let (true, Some(writer)) = (components.expiry_schedule, &writer) {
        let interval = Duration::from_secs(settings.expiry_interval_seconds.max(1));
        tasks.push((
            "expiry",
            tokio::spawn(expiry::schedule(
                platform_pool.clone(),
                writer.clone(),
                interval,
                shutdown_signal.clone(),
            )),
        ));
    }
    if components.audit_signer {
        match settings.audit_signing_key()? {
            Some(key) => tasks.push((
                "audit-signer",
                tokio::spawn(crate::audit::schedule(
                    platform_pool.clone(),
                    Arc::new(key),
                    Duration::from_secs(settings.audit_sign_interval_seconds.max(1)),
                    shutdown_signal.clone(),
                )),
            )),
            None => tracing::warn!(
                "LOYALTY_AUDIT_SIGNING_KEY is not set: chain heads are not signed \
                 (`loyalty keys generate` prints one)"
            ),
        }
    }
    if let (true, Some(writer)) = (components.conversations, &writer) {
        let processor = crate::conversations::Processor {
            pool: pool.clone(),
            platform_pool: platform_pool.clone(),
            writer: writer.clone(),
            vault: Arc::new(settings.vault()?),
            settings: settings.conversations(),
            wake: schema::wake::Wake::listen(
                schema::db::config(&settings.platform_db()).context("the platform database URL")?,
                schema::wake::INBOX_CHANNEL,
                shutdown_signal.clone(),
            ),
        };
        tasks.push((
            "conversations",
            tokio::spawn(crate::conversations::run(
                Arc::new(processor),
                shutdown_signal.clone(),
            )),
        ));
    }
    if let Some(config) = notifier {
        tracing::info!(
            base_url = %config.meta.base_url,
            "WhatsApp notifier sending the outbox"
        );
        tasks.push((
            "notifier",
            tokio::spawn(whatsapp_notifier::run_with_wake(
                platform_pool.clone(),
                Arc::new(settings.vault()?),
                config,
                schema::wake::Wake::listen(
                    schema::db::config(&settings.platform_db())
                        .context("the platform database URL")?,
                    schema::wake::OUTBOX_CHANNEL,
                    shutdown_signal.clone(),
                ),
                shutdown_signal.clone(),
            )),
        ));
    }
    // The writer stops when its last handle is gone: the API state, the expiry schedule and
    // the conversation processor hold theirs; this one is not needed any more.
    drop(writer);
    Ok(RunningApp {
        http_addr,
        ingest_addr,
        sandbox_addr,
        pool,
        platform_pool,
        servers,
        shutdown,
        tasks,
    })
}

impl RunningApp {
    /// Stops every component, letting each finish what it has in hand (bounded).
    pub async fn stop(self) {
        const GRACE: Duration = Duration::from_secs(15);
        for server in &self.servers {
            server.stop(true).await;
        }
        let _ = self.shutdown.send(true);
        for (name, task) in self.tasks {
            match tokio::time::timeout(GRACE, task).await {
                Ok(_) => tracing::debug!(component = name, "stopped"),
                Err(_) => tracing::warn!(component = name, "did not stop in time"),
            }
        }
    }
}

/// An address to reach a listener at: its own, or loopback when it listens on every
/// interface (`0.0.0.0`, `[::]`).
fn loopback_if_unspecified(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], address.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port()))
        }
        _ => address,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
