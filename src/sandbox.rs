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

    /// More business numbers (tenants' own), comma-separated `phone_number_id:digits`, or
    /// `phone_number_id:digits:token` for a number that accepts only its own token.
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
    /// `LOYALTY_WHATSAPP_APP_SECRET`, else the one `scripts/run-local.sh` generated into
    /// `.local/keys.env` (so the README's demo `say` lines need no set-up in a new terminal).
    fn app_secret(&self) -> anyhow::Result<AppSecret> {
        let secret = match self.sandbox_app_secret.as_deref() {
            Some(secret) if !secret.is_empty() => secret.to_owned(),
            _ => local_app_secret(LOCAL_KEYS_FILE).unwrap_or_default(),
        };
        AppSecret::new(&secret).map_err(|_| {
            anyhow::anyhow!(
                "LOYALTY_WHATSAPP_APP_SECRET is not set (the ingest's Meta app secret), nor in \
                 {LOCAL_KEYS_FILE}"
            )
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
            // phone_number_id:digits, or phone_number_id:digits:token for a number that
            // accepts only its own token (a tenant's number in Meta has its own system user).
            let mut parts = item.splitn(3, ':');
            let (Some(id), Some(digits)) = (parts.next(), parts.next()) else {
                anyhow::bail!(
                    "LOYALTY_SANDBOX_NUMBERS: an item is not phone_number_id:digits[:token]"
                );
            };
            let access_token = match parts.next().map(str::trim) {
                Some("") => anyhow::bail!("LOYALTY_SANDBOX_NUMBERS: an empty token"),
                Some(token) => Some(token.to_owned()),
                None => numbers[0].access_token.clone(),
            };
            numbers.push(BusinessNumber {
                phone_number_id: id.trim().to_owned(),
                display_phone_number: digits.trim().trim_start_matches('+').to_owned(),
                access_token,
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

/// Where `scripts/run-local.sh` keeps the local secrets (relative to the repository root).
pub const LOCAL_KEYS_FILE: &str = ".local/keys.env";

/// The `LOYALTY_WHATSAPP_APP_SECRET=` line of a dotenv file, if the file and the line exist.
fn local_app_secret(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let value = line
            .trim()
            .trim_start_matches("export ")
            .strip_prefix("LOYALTY_WHATSAPP_APP_SECRET=")?;
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The sandbox `loyalty all` starts in-process: when `enabled` (`LOYALTY_SANDBOX_ENABLED`,
/// default true) and the notifier's base URL is the sandbox's own address (the default), so
/// that sends reach it. Pointing `LOYALTY_WHATSAPP_API_BASE_URL` at Meta turns it off.
pub fn for_all(
    settings: &crate::settings::Settings,
    sandbox: &SandboxSettings,
    enabled: bool,
) -> anyhow::Result<Option<crate::app::InProcessSandbox>> {
    let base_url = settings
        .notifier
        .whatsapp_api_base_url
        .trim_end_matches('/');
    if !enabled {
        tracing::info!("WhatsApp sandbox not started: LOYALTY_SANDBOX_ENABLED=false");
        return Ok(None);
    }
    if base_url != sandbox.url() {
        tracing::info!(
            %base_url,
            "WhatsApp sandbox not started: LOYALTY_WHATSAPP_API_BASE_URL is not the sandbox's \
             address (LOYALTY_SANDBOX_ADDR)"
        );
        return Ok(None);
    }
    let mut config = sandbox
        .config()
        .context("the in-process WhatsApp sandbox cannot start")?;
    // The shared number the processor answers on is the one the sandbox sends from.
    config.numbers[0].phone_number_id = settings.whatsapp_shared_phone_number_id.clone();
    config.numbers[0].display_phone_number = settings
        .whatsapp_shared_display_number
        .trim_start_matches('+')
        .to_owned();
    Ok(Some(crate::app::InProcessSandbox {
        addr: sandbox.sandbox_addr.clone(),
        config,
    }))
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

#[cfg(test)]
mod tests {
    use super::{local_app_secret, SandboxSettings};

    #[test]
    fn extra_numbers_take_an_optional_token_of_their_own() {
        let settings = SandboxSettings {
            sandbox_addr: "127.0.0.1:0".into(),
            sandbox_app_secret: None,
            sandbox_webhook_url: "http://127.0.0.1:9/webhooks/whatsapp".into(),
            sandbox_business_number: "+15550001234".into(),
            sandbox_phone_number_id: "100000000000001".into(),
            sandbox_waba_id: "100000000000000".into(),
            sandbox_numbers:
                "200000000000001:2348010000001:tenant-token, 200000000000002:+2348010000002".into(),
            sandbox_access_token: Some("platform-token".into()),
            sandbox_enforce_window: false,
            sandbox_status_delay_ms: 10,
            sandbox_status_order: "in_order".into(),
        };
        let numbers = settings.numbers().unwrap();
        let tokens: Vec<(&str, &str, Option<&str>)> = numbers
            .iter()
            .map(|n| {
                (
                    n.phone_number_id.as_str(),
                    n.display_phone_number.as_str(),
                    n.access_token.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            tokens,
            [
                ("100000000000001", "15550001234", Some("platform-token")),
                ("200000000000001", "2348010000001", Some("tenant-token")),
                ("200000000000002", "2348010000002", Some("platform-token")),
            ]
        );
        for bad in ["200000000000001", "200000000000001:2348010000001:"] {
            let settings = SandboxSettings {
                sandbox_numbers: bad.into(),
                ..settings.clone()
            };
            assert!(settings.numbers().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_local_app_secret_is_read_from_a_dotenv_file() {
        let dir = std::env::temp_dir().join(format!("loyalty-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.env");
        std::fs::write(
            &path,
            "LOYALTY_MASTER_KEYS=m1:abc\nLOYALTY_WHATSAPP_APP_SECRET=\"00ff\"\n",
        )
        .unwrap();
        assert_eq!(
            local_app_secret(path.to_str().unwrap()).as_deref(),
            Some("00ff")
        );
        std::fs::write(&path, "LOYALTY_WHATSAPP_APP_SECRET=\n").unwrap();
        assert_eq!(local_app_secret(path.to_str().unwrap()), None);
        assert_eq!(
            local_app_secret(dir.join("missing").to_str().unwrap()),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
