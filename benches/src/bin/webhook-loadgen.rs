//! `webhook-loadgen`: a bounded load generator for the WhatsApp webhook ingest.
//!
//! Every request is a Meta-shaped text-message webhook (one message, a distinct wamid, one of
//! `--senders` customers) signed with `X-Hub-Signature-256` exactly as Meta signs it
//! (`webhook_ingest::signature::sign` over the exact body bytes).
//!
//! - `--mode ingest`: `--clients` closed loops post as fast as the ingest answers for
//!   `--warmup-seconds` + `--duration-seconds`; reports 2xx messages/s and the exact latency
//!   distribution of the measured window.
//! - `--mode e2e`: first every sender writes `JOIN <vendor code>` and the run waits until the
//!   sandbox recorded a reply to each; then an open-loop schedule posts a keyword that gets
//!   exactly one reply (`points`) at `--rate` messages/s. Latency = the sandbox's `received_at`
//!   of the reply (the notifier's send) − the time the webhook was *scheduled* to be posted (so
//!   a late scheduler cannot hide queueing). Replies are paired with requests per recipient in
//!   order ([`benches::ReplyMatcher`]); a request with no reply within
//!   `--reply-timeout-seconds` after the last post is a miss, reported as such.
//!
//! Exit status: 0 = every request got a 2xx (and, in e2e, a reply); 3 = the run finished but
//! something failed (all reported); 1 = fatal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use benches::{
    bench_wamid, latency_sample, open_loop_offset, process_cpu_seconds, shared_business_number,
    text_webhook_body, unique_phones, unix_micros, us_to_ms, LatencySummary, ReplyMatch,
    ReplyMatcher, SplitMix64,
};
use clap::{Parser, ValueEnum};
use webhook_ingest::signature::{sign, AppSecret, HEADER_NAME};
use whatsapp_sandbox::{After, BusinessNumber, RecordedMessage};

/// What customers write in `ingest` mode (the ingest stores any text alike).
const TEXTS: [&str; 4] = [
    "points",
    "Hello! How many points do I have at the shop on Allen Avenue?",
    "rewards",
    "history please",
];
/// The keyword of `e2e` mode: exactly one reply (the balance).
const E2E_KEYWORD: &str = "points";
/// Pause between two polls of the sandbox's recorded sends.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest wait for the JOIN replies of the set-up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Ingest,
    E2e,
}

#[derive(Parser, Debug)]
#[command(
    name = "webhook-loadgen",
    about = "Bounded load generator for loyalty-ledger's WhatsApp webhook ingest"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Ingest)]
    mode: Mode,
    /// The ingest's webhook endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8081/webhooks/whatsapp")]
    ingest_url: String,
    /// The sandbox (e2e only): where replies are recorded.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    sandbox_url: String,
    /// Meta app secret the ingest checks signatures with.
    #[arg(long, env = "LOYALTY_WHATSAPP_APP_SECRET", hide_env_values = true)]
    app_secret: String,
    /// ingest: closed loops; e2e: most requests in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,
    /// Distinct customers writing in.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    senders: u32,
    /// e2e: messages per second of the open-loop schedule.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// e2e: the vendor code the senders join first.
    #[arg(long, default_value = "BENCH")]
    vendor_code: String,
    /// e2e: JOIN messages per second during the set-up.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    setup_rate: u32,
    /// e2e: a reply later than this after the last post is a miss.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    reply_timeout_seconds: u64,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    duration_seconds: u64,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_seconds: u64,
    /// Tokio worker threads (it shares the box with everything else).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    request_timeout_seconds: u64,
    /// Also print the summary as one JSON line (the last line of stdout).
    #[arg(long)]
    json: bool,
}

/// Posts signed webhooks; shared by every task.
struct Poster {
    client: reqwest::Client,
    url: String,
    secret: AppSecret,
    business: BusinessNumber,
    run_id: String,
    next_wamid: AtomicU64,
}

/// The answer to one post: the HTTP status, or a transport error.
type PostResult = std::result::Result<u16, String>;

impl Poster {
    /// A text-message webhook from `wa_id` with the next wamid, and its signature.
    fn signed_text(&self, wa_id: &str, text: &str) -> (Vec<u8>, String) {
        let sequence = self.next_wamid.fetch_add(1, Ordering::Relaxed);
        let wamid = bench_wamid(&self.run_id, sequence);
        let now = unix_micros(SystemTime::now()) / 1_000_000;
        let body = text_webhook_body(&self.business, wa_id, "Bench Customer", &wamid, now, text);
        let signature = sign(&self.secret, &body);
        (body, signature)
    }

    /// Posts like [`Poster::post_text`] over the closed loop's own keep-alive connection
    /// (`benches::http1`: far less client CPU on a box the server shares).
    async fn post_text_on(
        &self,
        connection: &mut benches::http1::Connection,
        wa_id: &str,
        text: &str,
    ) -> PostResult {
        let (body, signature) = self.signed_text(wa_id, text);
        connection
            .post(
                &[
                    ("Content-Type", "application/json"),
                    (HEADER_NAME, signature.as_str()),
                ],
                &body,
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn post_text(&self, wa_id: &str, text: &str) -> PostResult {
        let (body, signature) = self.signed_text(wa_id, text);
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header(HEADER_NAME, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        // Read the body so the connection goes back to the pool.
        let _ = response.bytes().await;
        Ok(status)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// HTTP outcomes of posts, by status (0 = transport error).
#[derive(Default, Debug)]
struct Outcomes {
    by_status: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

impl Outcomes {
    fn add(&mut self, result: &PostResult) {
        match result {
            Ok(status) => *self.by_status.entry(*status).or_default() += 1,
            Err(e) => {
                *self.by_status.entry(0).or_default() += 1;
                self.first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    fn merge(&mut self, other: Outcomes) {
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
    fn ok(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }
    fn failed(&self) -> u64 {
        self.by_status.values().sum::<u64>() - self.ok()
    }
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| match s {
                0 => format!("transport:{n}"),
                s => format!("{s}:{n}"),
            })
            .collect();
        parts.join(" ")
    }
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(false) => std::process::ExitCode::SUCCESS,
        Ok(true) => std::process::ExitCode::from(3),
        Err(e) => {
            eprintln!("webhook-loadgen: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn real_main() -> Result<bool> {
    let args = Args::parse();
    for url in [&args.ingest_url, &args.sandbox_url] {
        let host = reqwest::Url::parse(url)
            .with_context(|| format!("bad URL {url}"))?
            .host_str()
            .unwrap_or_default()
            .to_owned();
        if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
            bail!("refusing non-loopback URL {url}: benchmarks here are loopback only");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        match args.mode {
            Mode::Ingest => run_ingest(&args).await,
            Mode::E2e => run_e2e(&args).await,
        }
    })
}

fn poster(args: &Args) -> Result<Arc<Poster>> {
    let secret = AppSecret::new(&args.app_secret).context("the app secret is empty")?;
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(args.clients as usize)
        .tcp_nodelay(true)
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(args.request_timeout_seconds))
        .build()
        .context("building the HTTP client")?;
    Ok(Arc::new(Poster {
        client,
        url: args.ingest_url.clone(),
        secret,
        business: shared_business_number(),
        run_id: format!("{:016x}", SplitMix64::from_os().next_u64()),
        next_wamid: AtomicU64::new(0),
    }))
}

fn senders(count: u32) -> Arc<Vec<String>> {
    let mut rng = SplitMix64::from_os();
    let phones = unique_phones(&mut rng, count as usize);
    Arc::new(
        phones
            .into_iter()
            .map(|p| p.trim_start_matches('+').to_owned())
            .collect(),
    )
}

fn print_latency(label: &str, summary: Option<&LatencySummary>) {
    match summary {
        Some(s) => println!(
            "{label} ms over {}: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            s.count,
            us_to_ms(s.p50_us),
            us_to_ms(s.p90_us),
            us_to_ms(s.p99_us),
            us_to_ms(s.p999_us),
            us_to_ms(s.max_us)
        ),
        None => println!("{label}: no sample"),
    }
}

fn latency_json(prefix: &str, s: Option<&LatencySummary>, out: &mut serde_json::Value) {
    let ms = |f: fn(&LatencySummary) -> u32| s.map(|s| us_to_ms(f(s)));
    out[format!("{prefix}p50_ms")] = serde_json::json!(ms(|s| s.p50_us));
    out[format!("{prefix}p90_ms")] = serde_json::json!(ms(|s| s.p90_us));
    out[format!("{prefix}p99_ms")] = serde_json::json!(ms(|s| s.p99_us));
    out[format!("{prefix}max_ms")] = serde_json::json!(ms(|s| s.max_us));
}

// ---- ingest: closed loops at the ingest's pace -------------------------------------------------

async fn run_ingest(args: &Args) -> Result<bool> {
    let poster = poster(args)?;
    let target = benches::http1::Target::parse(&args.ingest_url)
        .map_err(|e| anyhow::anyhow!("--ingest-url: {e}"))?;
    let senders = senders(args.senders);
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let measure_start = start + Duration::from_secs(args.warmup_seconds);
    let deadline = measure_start + Duration::from_secs(args.duration_seconds);
    println!(
        "ingest: {} clients, {} senders, {}s warm-up + {}s measured against {}",
        args.clients, args.senders, args.warmup_seconds, args.duration_seconds, args.ingest_url
    );
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let poster = poster.clone();
            let senders = senders.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let mut rng = SplitMix64::from_os();
                let mut connection = benches::http1::Connection::new(target);
                let mut outcomes = Outcomes::default();
                let mut measured = Outcomes::default();
                let mut latency_us = Vec::new();
                while Instant::now() < deadline {
                    let wa_id = &senders[rng.index(senders.len())];
                    let text = TEXTS[rng.index(TEXTS.len())];
                    let sent = Instant::now();
                    let result = poster.post_text_on(&mut connection, wa_id, text).await;
                    let done = Instant::now();
                    outcomes.add(&result);
                    if done >= measure_start && done < deadline {
                        measured.add(&result);
                        latency_us.push(latency_sample((done - sent).as_micros() as u64));
                    }
                }
                (outcomes, measured, latency_us)
            })
        })
        .collect();
    let mut outcomes = Outcomes::default();
    let mut measured = Outcomes::default();
    let mut latency_us = Vec::new();
    for task in tasks {
        let (o, m, l) = task.await.context("a load task panicked")?;
        outcomes.merge(o);
        measured.merge(m);
        latency_us.extend(l);
    }
    let cpu = cpu_before.zip(process_cpu_seconds()).map(|(b, a)| a - b);
    let summary = LatencySummary::from_samples(&mut latency_us);
    let per_second = measured.ok() as f64 / args.duration_seconds as f64;
    println!("messages/s (2xx, measured window): {per_second:.1}");
    print_latency("ingest latency", summary.as_ref());
    println!(
        "posts (whole run): {}; in window: {}",
        outcomes.describe(),
        measured.describe()
    );
    if let Some(e) = &outcomes.first_error {
        println!("first transport error: {e}");
    }
    if args.json {
        let mut out = serde_json::json!({
            "mode": "ingest",
            "messages_per_second": (per_second * 10.0).round() / 10.0,
            "posts_ok_measured": measured.ok(),
            "posts_failed_total": outcomes.failed(),
            "outcomes": outcomes.describe(),
            "clients": args.clients,
            "senders": args.senders,
            "loadgen_cpu_seconds": cpu.map(|c| (c * 100.0).round() / 100.0),
        });
        latency_json("", summary.as_ref(), &mut out);
        println!("{out}");
    }
    Ok(outcomes.failed() > 0)
}

// ---- e2e: open loop, replies read back from the sandbox ----------------------------------------

/// A reply the sandbox recorded: recipient digits and wall-clock time (Unix µs).
struct Reply {
    sequence: u64,
    recipient: String,
    received_us: i64,
}

async fn sandbox_replies(
    client: &reqwest::Client,
    sandbox_url: &str,
    after: u64,
) -> Result<(Vec<Reply>, u64)> {
    let url = format!(
        "{}/sandbox/messages?after={}&outcome=accepted",
        sandbox_url.trim_end_matches('/'),
        After::Sequence(after).to_query()
    );
    let page: serde_json::Value = client
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    let messages: Vec<RecordedMessage> =
        serde_json::from_value(page["messages"].clone()).context("recorded messages")?;
    let mut last = after;
    let replies = messages
        .into_iter()
        .filter_map(|m| {
            last = last.max(m.sequence);
            let received_us = m.received_at.timestamp_micros();
            m.recipient.map(|recipient| Reply {
                sequence: m.sequence,
                recipient,
                received_us,
            })
        })
        .collect();
    Ok((replies, last))
}

async fn run_e2e(args: &Args) -> Result<bool> {
    let poster = poster(args)?;
    let senders = senders(args.senders);
    let admin = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (_, mut last_sequence) = sandbox_replies(&admin, &args.sandbox_url, 0).await?;

    // Set-up: every sender joins the vendor; wait for a reply to each.
    let setup_started = Instant::now();
    let join = format!("JOIN {}", args.vendor_code);
    let mut setup = Outcomes::default();
    let mut posts = tokio::task::JoinSet::new();
    for (i, wa_id) in senders.iter().enumerate() {
        tokio::time::sleep_until(
            (setup_started + open_loop_offset(i as u64, args.setup_rate)).into(),
        )
        .await;
        let (poster, wa_id, join) = (poster.clone(), wa_id.clone(), join.clone());
        posts.spawn(async move { poster.post_text(&wa_id, &join).await });
    }
    while let Some(result) = posts.join_next().await {
        setup.add(&result.context("a JOIN task panicked")?);
    }
    if setup.failed() > 0 {
        bail!(
            "JOIN posts failed: {} ({})",
            setup.describe(),
            setup.first_error.unwrap_or_default()
        );
    }
    let mut joined = std::collections::HashSet::new();
    while joined.len() < senders.len() {
        if setup_started.elapsed() > SETUP_TIMEOUT {
            bail!(
                "only {} of {} senders got a JOIN reply within {:?}",
                joined.len(),
                senders.len(),
                SETUP_TIMEOUT
            );
        }
        tokio::time::sleep(POLL_INTERVAL * 5).await;
        let (replies, last) = sandbox_replies(&admin, &args.sandbox_url, last_sequence).await?;
        last_sequence = last;
        joined.extend(replies.into_iter().map(|r| r.recipient));
    }
    // The pacing of one recipient (LOYALTY_WHATSAPP_RECIPIENT_INTERVAL_MS, status webhooks)
    // must not carry the JOIN into the measured run: let the statuses settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, last) = sandbox_replies(&admin, &args.sandbox_url, last_sequence).await?;
    last_sequence = last;
    println!(
        "set-up: {} senders joined {} in {:.1}s",
        senders.len(),
        args.vendor_code,
        setup_started.elapsed().as_secs_f64()
    );

    // The poller collects every reply after the set-up until told to stop.
    let stop = Arc::new(tokio::sync::Notify::new());
    let poller = {
        let (admin, url, stop) = (admin.clone(), args.sandbox_url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut all = Vec::new();
            let mut after = last_sequence;
            let mut errors = 0u64;
            loop {
                match sandbox_replies(&admin, &url, after).await {
                    Ok((replies, last)) => {
                        after = last;
                        all.extend(replies);
                    }
                    Err(_) => errors += 1,
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = stop.notified() => break,
                }
            }
            // One last read after the stop.
            if let Ok((replies, _)) = sandbox_replies(&admin, &url, after).await {
                all.extend(replies);
            }
            (all, errors)
        })
    };

    // Open loop: request i is due at start + i / rate, whatever the previous ones are doing.
    let total = u64::from(args.rate) * (args.warmup_seconds + args.duration_seconds);
    let warmup_requests = u64::from(args.rate) * args.warmup_seconds;
    println!(
        "e2e: {} msg/s open loop, {} senders, {}s warm-up + {}s measured, '{}' -> one reply each",
        args.rate, args.senders, args.warmup_seconds, args.duration_seconds, E2E_KEYWORD
    );
    let in_flight = Arc::new(tokio::sync::Semaphore::new(args.clients as usize));
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let start_wall_us = unix_micros(SystemTime::now());
    let mut requests = Vec::with_capacity(total as usize);
    let mut tasks = tokio::task::JoinSet::new();
    let mut lag_max = Duration::ZERO;
    for i in 0..total {
        let due = start + open_loop_offset(i, args.rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        lag_max = lag_max.max(Instant::now().saturating_duration_since(due));
        let wa_id = senders[(i % senders.len() as u64) as usize].clone();
        let due_us = start_wall_us + open_loop_offset(i, args.rate).as_micros() as i64;
        requests.push((wa_id.clone(), i, due_us));
        let poster = poster.clone();
        tasks.spawn(async move {
            let result = poster.post_text(&wa_id, E2E_KEYWORD).await;
            drop(permit);
            let elapsed = Instant::now().saturating_duration_since(due);
            (i, result, latency_sample(elapsed.as_micros() as u64))
        });
    }
    let sending_seconds = start.elapsed().as_secs_f64();
    let mut outcomes = Outcomes::default();
    let mut ingest_latency_us = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, result, latency) = joined.context("a post task panicked")?;
        outcomes.add(&result);
        if i >= warmup_requests && matches!(result, Ok(200..=299)) {
            ingest_latency_us.push(latency);
        }
    }
    let cpu = cpu_before.zip(process_cpu_seconds()).map(|(b, a)| a - b);

    // Wait for the replies: all of them, or the timeout after the last post.
    let reply_deadline = Instant::now() + Duration::from_secs(args.reply_timeout_seconds);
    let expected = outcomes.ok();
    loop {
        let (page, _) = sandbox_replies(&admin, &args.sandbox_url, last_sequence).await?;
        if page.len() as u64 >= expected || Instant::now() >= reply_deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL * 10).await;
    }
    stop.notify_one();
    let (mut replies, poll_errors) = poller.await.context("the poller panicked")?;
    replies.sort_by_key(|r| (r.received_us, r.sequence));
    replies.dedup_by_key(|r| r.sequence);

    let mut matcher = ReplyMatcher::default();
    for (wa_id, i, due_us) in &requests {
        matcher.on_request(wa_id, *i, *due_us);
    }
    let mut e2e_us = Vec::new();
    let mut unexpected = 0u64;
    for reply in &replies {
        match matcher.on_reply(&reply.recipient, reply.received_us) {
            ReplyMatch::Matched {
                request,
                latency_us,
            } => {
                if request >= warmup_requests {
                    e2e_us.push(latency_sample(latency_us));
                }
            }
            ReplyMatch::Unexpected => unexpected += 1,
        }
    }
    let measured_requests = total - warmup_requests;
    let misses = measured_requests - e2e_us.len() as u64;
    let e2e = LatencySummary::from_samples(&mut e2e_us);
    let ingest = LatencySummary::from_samples(&mut ingest_latency_us);
    let achieved = total as f64 / sending_seconds;

    println!(
        "posted {total} in {sending_seconds:.1}s = {achieved:.1}/s (scheduler lag max {:.1} ms); posts: {}",
        lag_max.as_secs_f64() * 1000.0,
        outcomes.describe()
    );
    if let Some(e) = &outcomes.first_error {
        println!("first transport error: {e}");
    }
    print_latency("ingest answer (from schedule)", ingest.as_ref());
    print_latency("end to end (schedule -> reply recorded)", e2e.as_ref());
    println!(
        "replies: {} read, {} matched in window, {misses} of {measured_requests} measured requests missed (no reply within {}s of the last post), {unexpected} unexpected, {poll_errors} poll errors",
        replies.len(),
        measured_requests - misses,
        args.reply_timeout_seconds
    );
    if args.json {
        let mut out = serde_json::json!({
            "mode": "e2e",
            "rate_target": args.rate,
            "rate_achieved": (achieved * 10.0).round() / 10.0,
            "requests_measured": measured_requests,
            "replies_matched": measured_requests - misses,
            "misses": misses,
            "unexpected_replies": unexpected,
            "posts_failed_total": outcomes.failed(),
            "outcomes": outcomes.describe(),
            "scheduler_lag_max_ms": (lag_max.as_secs_f64() * 10_000.0).round() / 10.0,
            "senders": args.senders,
            "loadgen_cpu_seconds": cpu.map(|c| (c * 100.0).round() / 100.0),
        });
        latency_json("", e2e.as_ref(), &mut out);
        latency_json("ingest_", ingest.as_ref(), &mut out);
        println!("{out}");
    }
    Ok(outcomes.failed() > 0 || misses > 0)
}
