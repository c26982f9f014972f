//! `loyalty sandbox serve` and `loyalty sandbox say`: the WhatsApp sandbox
//! (`whatsapp-sandbox`) and its customer simulator from the command line. Settings from the
//! environment, documented in `.env.example`; docs/WHATSAPP.md (`## Sandbox`) has the story.

use anyhow::Context;
use clap::Args;
use std::net::TcpListener;
use std::time::Duration;
use whatsapp_sandbox::{
    After, AppSecret, BusinessNumber, SandboxConfig, SandboxOptions, Simulator, StatusOrder,
};

/// Settings of the sandbox and of the simulated customer.
#[derive(Args, Clone)]
#[command(
    next_help_heading = "Sandbox settings (each also read from the environment variable shown)"
)]
pub struct SandboxSettings {
    /// Address the sandbox listens on (`serve`) and is reached at (`say`).
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_ADDR",
        default_value = "127.0.0.1:8090",
        global = true
    )]
    pub sandbox_addr: String,

    /// The Meta app secret: signs status webhooks and simulated customer messages exactly as
    /// Meta does. Must equal the ingest's secret.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_APP_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub sandbox_app_secret: Option<String>,

    /// The ingest endpoint that receives the webhooks.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_WEBHOOK_URL",
        default_value = "http://127.0.0.1:8081/webhooks/whatsapp",
        global = true
    )]
    pub sandbox_webhook_url: String,

    /// The platform's shared business number (digits), as customers see it.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_BUSINESS_NUMBER",
        default_value = "15550001234",
        global = true
    )]
    pub sandbox_business_number: String,

    /// The shared number's Graph phone-number id (in send URLs and webhook metadata).
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_PHONE_NUMBER_ID",
        default_value = "100000000000001",
        global = true
    )]
    pub sandbox_phone_number_id: String,

    /// The WhatsApp Business Account id put in webhooks' `entry[].id`.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_WABA_ID",
        default_value = "100000000000000",
        global = true
    )]
    pub sandbox_waba_id: String,

    /// More business numbers (tenants' own), comma-separated `phone_number_id:digits`.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_NUMBERS",
        default_value = "",
        global = true
    )]
    pub sandbox_numbers: String,

    /// The only bearer token the sandbox accepts; unset: any non-empty token.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_ACCESS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub sandbox_access_token: Option<String>,

    /// Refuse free-form sends with 131047 unless the customer wrote in within 24 hours.
    #[arg(long, env = "LOYALTY_SANDBOX_ENFORCE_WINDOW", global = true)]
    pub sandbox_enforce_window: bool,

    /// Pause before each status webhook (sent, delivered, read), in milliseconds.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_STATUS_DELAY_MS",
        default_value_t = 50,
        global = true
    )]
    pub sandbox_status_delay_ms: u64,

    /// Order of the status webhooks: in_order, read_before_delivered or unread.
    #[arg(
        long,
        env = "LOYALTY_SANDBOX_STATUS_ORDER",
        default_value = "in_order",
        value_parser = ["in_order", "read_before_delivered", "unread"],
        global = true
    )]
    pub sandbox_status_order: String,
}

impl SandboxSettings {
    fn app_secret(&self) -> anyhow::Result<AppSecret> {
        let secret = self.sandbox_app_secret.as_deref().unwrap_or_default();
        AppSecret::new(secret).map_err(|_| {
            anyhow::anyhow!("LOYALTY_WHATSAPP_APP_SECRET is not set (the ingest's Meta app secret)")
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.sandbox_addr)
    }

    /// The shared number first, then `LOYALTY_SANDBOX_NUMBERS`.
    pub fn numbers(&self) -> anyhow::Result<Vec<BusinessNumber>> {
        let shared = BusinessNumber {
            phone_number_id: self.sandbox_phone_number_id.clone(),
            display_phone_number: self
                .sandbox_business_number
                .trim_start_matches('+')
                .to_owned(),
            waba_id: self.sandbox_waba_id.clone(),
            access_token: self.sandbox_access_token.clone(),
        };
        let mut numbers = vec![shared];
        for item in self
            .sandbox_numbers
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let (id, digits) = item.split_once(':').with_context(|| {
                format!("LOYALTY_SANDBOX_NUMBERS: `{item}` is not phone_number_id:digits")
            })?;
            numbers.push(BusinessNumber {
                phone_number_id: id.trim().to_owned(),
                display_phone_number: digits.trim().trim_start_matches('+').to_owned(),
                ..numbers[0].clone()
            });
        }
        Ok(numbers)
    }

    fn options(&self) -> SandboxOptions {
        SandboxOptions {
            enforce_window: self.sandbox_enforce_window,
            status_order: match self.sandbox_status_order.as_str() {
                "read_before_delivered" => StatusOrder::ReadBeforeDelivered,
                "unread" => StatusOrder::Unread,
                _ => StatusOrder::InOrder,
            },
            status_delay_ms: self
                .sandbox_status_delay_ms
                .min(whatsapp_sandbox::STATUS_DELAY_MS_MAX),
        }
    }

    /// The sandbox's configuration from these settings.
    pub fn config(&self) -> anyhow::Result<SandboxConfig> {
        let mut config = SandboxConfig::new(
            self.app_secret()?,
            Some(self.sandbox_webhook_url.clone()),
            self.numbers()?,
        );
        config.options = self.options();
        Ok(config)
    }
}

/// `loyalty sandbox serve`: runs until SIGINT/SIGTERM.
pub async fn serve(settings: &SandboxSettings) -> anyhow::Result<()> {
    let config = settings.config()?;
    let listener = TcpListener::bind(&settings.sandbox_addr)
        .with_context(|| format!("binding the sandbox to {}", settings.sandbox_addr))?;
    let address = listener.local_addr()?;
    let server = whatsapp_sandbox::serve(listener, config).context("starting the sandbox")?;
    let handle = server.handle();
    let running = tokio::spawn(server);
    tracing::info!(
        "WhatsApp sandbox listening on http://{address}; status webhooks to {}",
        settings.sandbox_webhook_url
    );
    crate::app::termination_signal().await;
    handle.stop(true).await;
    let _ = running.await;
    Ok(())
}

/// What the simulated customer sends.
#[derive(Debug, Clone)]
pub enum Utterance {
    Text(String),
    /// A tap on a reply button: id and title.
    Button {
        id: String,
        title: String,
    },
    /// A row chosen in a list: id and title.
    ListRow {
        id: String,
        title: String,
    },
}

/// `loyalty sandbox say`: posts one signed customer message to the ingest URL and prints the
/// replies the sandbox receives for that customer within `wait`.
pub async fn say(
    settings: &SandboxSettings,
    from: &str,
    to: Option<&str>,
    replying_to: Option<&str>,
    utterance: Utterance,
    wait: Duration,
) -> anyhow::Result<()> {
    let numbers = settings.numbers()?;
    let business = match to.map(|t| t.trim_start_matches('+')) {
        None => numbers[0].clone(),
        Some(to) => numbers
            .iter()
            .find(|n| n.display_phone_number == to)
            .cloned()
            .with_context(|| {
                format!("--to {to} is not a sandbox business number (LOYALTY_SANDBOX_BUSINESS_NUMBER, LOYALTY_SANDBOX_NUMBERS)")
            })?,
    };
    let simulator = Simulator::new(
        &settings.sandbox_webhook_url,
        settings.app_secret()?,
        business.clone(),
    )
    .with_sandbox(settings.url());
    let since = After::Time(chrono::Utc::now());
    let sent = match &utterance {
        Utterance::Text(text) => simulator.say(from, text).await,
        Utterance::Button { id, title } => simulator.say_button(from, replying_to, id, title).await,
        Utterance::ListRow { id, title } => {
            simulator
                .say_list_reply(from, replying_to, id, title, None)
                .await
        }
    }
    .context("posting the customer's message")?;
    let said = match &utterance {
        Utterance::Text(text) => format!("{text:?}"),
        Utterance::Button { id, title } => format!("button {title:?} (id {id})"),
        Utterance::ListRow { id, title } => format!("list row {title:?} (id {id})"),
    };
    println!(
        "-> {from} to {}: {said} ({}; ingest answered {})",
        business.display_phone_number, sent.wamid, sent.http_status
    );
    let replies = whatsapp_sandbox::wait_for_replies(&settings.url(), from, since, wait)
        .await
        .with_context(|| format!("reading replies from the sandbox at {}", settings.url()))?;
    if replies.is_empty() {
        println!("no reply within {} s", wait.as_secs_f32());
    }
    for reply in replies {
        println!(
            "<- {} ({})",
            reply.summary(),
            reply.wamid.unwrap_or_default()
        );
    }
    Ok(())
}
