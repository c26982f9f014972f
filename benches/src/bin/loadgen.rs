//! `loadgen`: a bounded HTTP load generator for the purchase command of loyalty-ledger.
//!
//! 1. Enrols `--customers` customers (`POST /v1/customers`, unique `+23480XXXXXXXX` phones;
//!    a 409 "already enrolled" is skipped).
//! 2. Runs `--clients` concurrent tasks, each looping `POST /v1/purchases` (fresh v4
//!    `Idempotency-Key`, random enrolled customer, random `amount_minor` in 100..=5_000_000)
//!    until `--warmup-seconds` + `--duration-seconds` have passed.
//! 3. Reports 2xx purchases/s and exact p50/p90/p99/p99.9/max latency over the measured
//!    window (requests that *complete* between the end of the warm-up and the deadline),
//!    plus every non-2xx status and transport error of the whole run.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use benches::{
    process_cpu_seconds, purchase_body, unique_phones, us_to_ms, LatencySummary, SplitMix64,
};
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

const AMOUNT_MIN_MINOR: u64 = 100;
const AMOUNT_MAX_MINOR: u64 = 5_000_000;
/// How many non-2xx bodies / transport errors are kept to print.
const SAMPLES_MAX: usize = 5;
/// Longest body excerpt printed per sample.
const SAMPLE_BYTES_MAX: usize = 600;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Bounded HTTP load generator for loyalty-ledger's POST /v1/purchases",
    after_help = "The run lasts warm-up + duration seconds (plus at most one request timeout to \
                  drain). Exit status: 0 = every request got a 2xx; 3 = the run finished but \
                  some requests got a non-2xx status or a transport error (all reported); \
                  1 = fatal (bad arguments, no customer could be enrolled, ...)."
)]
struct Args {
    /// Base URL of the loyalty API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Tenant API key (sent as `Authorization: Bearer <key>`).
    #[arg(long, env = "LOYALTY_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Concurrent request loops (and HTTP/1.1 keep-alive connections).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,
    /// Length of the measured window, after the warm-up.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_seconds: u64,
    /// Customers to enrol before the run (purchases pick one at random).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    customers: u32,
    /// Requests completing during the warm-up are not measured.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    warmup_seconds: u64,
    /// Also print the summary as one JSON line (the last line of stdout).
    #[arg(long)]
    json: bool,
    /// Tokio worker threads of the load generator (keep it small: it shares the box
    /// with the server and PostgreSQL).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
    /// Per-request timeout (connect + response + body).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    request_timeout_seconds: u64,
    /// Allow a base URL that is not a loopback address (off by default: benchmarks here
    /// are loopback only).
    #[arg(long)]
    allow_non_loopback: bool,
}

/// First few problem samples, shared by all tasks.
#[derive(Default)]
struct Samples {
    non_2xx: Vec<String>,
    transport: Vec<String>,
}

impl Samples {
    fn push_non_2xx(&mut self, what: &str, status: StatusCode, body: &[u8]) {
        if self.non_2xx.len() < SAMPLES_MAX {
            let text = String::from_utf8_lossy(&body[..body.len().min(SAMPLE_BYTES_MAX)]);
            self.non_2xx.push(format!("{what} -> {status}: {text}"));
        }
    }
    fn push_transport(&mut self, what: &str, err: &reqwest::Error) {
        if self.transport.len() < SAMPLES_MAX {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            self.transport.push(format!("{what}: {text}"));
        }
    }
}

/// Counters of one purchase task, merged at the end.
#[derive(Default)]
struct TaskStats {
    /// Latency (µs) of every HTTP response completed inside the measured window.
    latency_all_us: Vec<u32>,
    /// Latency (µs) of the 2xx responses completed inside the measured window.
    latency_ok_us: Vec<u32>,
    ok_measured: u64,
    ok_total: u64,
    non_2xx_total: BTreeMap<u16, u64>,
    non_2xx_measured: u64,
    transport_total: u64,
    timeouts_total: u64,
    transport_measured: u64,
}

impl TaskStats {
    fn merge(&mut self, other: TaskStats) {
        self.latency_all_us.extend(other.latency_all_us);
        self.latency_ok_us.extend(other.latency_ok_us);
        self.ok_measured += other.ok_measured;
        self.ok_total += other.ok_total;
        for (status, n) in other.non_2xx_total {
            *self.non_2xx_total.entry(status).or_default() += n;
        }
        self.non_2xx_measured += other.non_2xx_measured;
        self.transport_total += other.transport_total;
        self.timeouts_total += other.timeouts_total;
        self.transport_measured += other.transport_measured;
    }
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(false) => std::process::ExitCode::SUCCESS,
        Ok(true) => std::process::ExitCode::from(3),
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// `Ok(true)` when the run finished but some requests failed.
fn real_main() -> Result<bool> {
    let args = Args::parse();
    let base =
        Url::parse(&args.base_url).with_context(|| format!("bad --base-url {}", args.base_url))?;
    check_loopback(&base, args.allow_non_loopback)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(args, base))
}

fn check_loopback(url: &Url, allowed: bool) -> Result<()> {
    let loopback = match url.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if !loopback && !allowed {
        bail!("refusing non-loopback --base-url {url} (pass --allow-non-loopback to override)");
    }
    Ok(())
}

/// Returns `true` when any request failed (non-2xx or transport error).
async fn run(args: Args, base: Url) -> Result<bool> {
    let client = build_client(&args)?;
    let customers_url = base.join("v1/customers")?;
    let purchases_url = base.join("v1/purchases")?;
    let samples = Arc::new(Mutex::new(Samples::default()));

    let enrol_started = Instant::now();
    let enrolment = enrol(&client, &customers_url, &args, &samples).await?;
    println!(
        "enrolled {} customers in {:.2}s ({} already enrolled skipped, {} non-2xx, {} transport errors)",
        enrolment.ids.len(),
        enrol_started.elapsed().as_secs_f64(),
        enrolment.conflicts,
        enrolment.non_2xx,
        enrolment.transport
    );
    if enrolment.ids.is_empty() {
        print_samples(&samples);
        bail!("no customer could be enrolled at {customers_url}");
    }
    let customers_enrolled = enrolment.ids.len();

    println!(
        "running: {} clients, {} loadgen threads, {}s warm-up + {}s measured against {}",
        args.clients, args.threads, args.warmup_seconds, args.duration_seconds, purchases_url
    );
    let mut outcome = run_load(
        &client,
        &purchases_url,
        Arc::new(enrolment.ids),
        &samples,
        &args,
    )
    .await;
    let all = LatencySummary::from_samples(&mut outcome.stats.latency_all_us);
    let ok = LatencySummary::from_samples(&mut outcome.stats.latency_ok_us);
    print_report(&outcome, all.as_ref(), ok.as_ref());
    print_samples(&samples);
    if args.json {
        let enrolled = (customers_enrolled, enrolment.conflicts);
        println!("{}", json_report(&args, enrolled, &outcome, all.as_ref()));
    }
    Ok(outcome.failed())
}

fn build_client(args: &Args) -> Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", args.api_key))
        .context("the API key is not a valid header value")?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reqwest::Client::builder()
        .default_headers(headers)
        .http1_only()
        .pool_max_idle_per_host(args.clients as usize)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(args.request_timeout_seconds))
        .build()
        .context("building the HTTP client")
}

/// Merged counters of the load phase and how long it took.
struct LoadOutcome {
    stats: TaskStats,
    lost_tasks: usize,
    window_seconds: f64,
    wall_seconds: f64,
    cpu_seconds: Option<f64>,
}

impl LoadOutcome {
    fn non_2xx_sum(&self) -> u64 {
        self.stats.non_2xx_total.values().sum()
    }
    fn purchases_per_second(&self) -> f64 {
        self.stats.ok_measured as f64 / self.window_seconds
    }
    fn failed(&self) -> bool {
        self.non_2xx_sum() > 0 || self.stats.transport_total > 0 || self.lost_tasks > 0
    }
}

async fn run_load(
    client: &reqwest::Client,
    purchases_url: &Url,
    customer_ids: Arc<Vec<String>>,
    samples: &Arc<Mutex<Samples>>,
    args: &Args,
) -> LoadOutcome {
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let measure_start = start + Duration::from_secs(args.warmup_seconds);
    let deadline = measure_start + Duration::from_secs(args.duration_seconds);
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(purchase_loop(
                client.clone(),
                purchases_url.clone(),
                customer_ids.clone(),
                samples.clone(),
                measure_start,
                deadline,
            ))
        })
        .collect();
    // Each request is bounded by the client timeout, so every task ends at most one timeout
    // after the deadline; the extra guard only protects against a bug here.
    let guard = deadline + Duration::from_secs(args.request_timeout_seconds + 10);
    let mut stats = TaskStats::default();
    let mut lost_tasks = 0usize;
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout(guard.saturating_duration_since(Instant::now()), task).await {
            Ok(Ok(task_stats)) => stats.merge(task_stats),
            Ok(Err(e)) => {
                lost_tasks += 1;
                eprintln!("a load task failed: {e}");
            }
            Err(_) => {
                abort.abort();
                lost_tasks += 1;
                eprintln!("a load task did not stop in time; aborted");
            }
        }
    }
    let cpu_seconds = match (cpu_before, process_cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    LoadOutcome {
        stats,
        lost_tasks,
        window_seconds: (deadline - measure_start).as_secs_f64(),
        wall_seconds: start.elapsed().as_secs_f64(),
        cpu_seconds,
    }
}

fn print_report(outcome: &LoadOutcome, all: Option<&LatencySummary>, ok: Option<&LatencySummary>) {
    let stats = &outcome.stats;
    println!(
        "purchases/s (2xx, measured {:.1}s window): {:.1}",
        outcome.window_seconds,
        outcome.purchases_per_second()
    );
    match all {
        Some(s) => println!(
            "latency ms over {} responses in the window: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            s.count,
            us_to_ms(s.p50_us),
            us_to_ms(s.p90_us),
            us_to_ms(s.p99_us),
            us_to_ms(s.p999_us),
            us_to_ms(s.max_us)
        ),
        None => println!("latency: no response completed inside the measured window"),
    }
    if let (true, Some(s)) = (outcome.non_2xx_sum() > 0, ok) {
        println!(
            "latency ms of the 2xx only: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            us_to_ms(s.p50_us),
            us_to_ms(s.p90_us),
            us_to_ms(s.p99_us),
            us_to_ms(s.max_us)
        );
    }
    let by_status: Vec<String> = stats
        .non_2xx_total
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    println!(
        "requests (whole run incl. warm-up): 2xx {}  non-2xx {}{}  transport errors {} (timeouts {}); \
         in window: 2xx {}  non-2xx {}  transport {}",
        stats.ok_total,
        outcome.non_2xx_sum(),
        if by_status.is_empty() { String::new() } else { format!(" [{}]", by_status.join(" ")) },
        stats.transport_total,
        stats.timeouts_total,
        stats.ok_measured,
        stats.non_2xx_measured,
        stats.transport_measured
    );
    if let Some(cpu) = outcome.cpu_seconds {
        println!(
            "loadgen CPU: {cpu:.2}s over {:.1}s wall = {:.0}% of one core",
            outcome.wall_seconds,
            100.0 * cpu / outcome.wall_seconds
        );
    }
    if outcome.lost_tasks > 0 {
        println!(
            "WARNING: {} load tasks were lost; their counts are missing",
            outcome.lost_tasks
        );
    }
}

/// The summary as one JSON object; `enrolled` is (customers enrolled, phones skipped on 409).
fn json_report(
    args: &Args,
    enrolled: (usize, u64),
    outcome: &LoadOutcome,
    all: Option<&LatencySummary>,
) -> serde_json::Value {
    let stats = &outcome.stats;
    let ms = |f: fn(&LatencySummary) -> u32| all.map(|s| us_to_ms(f(s)));
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let by_status: BTreeMap<String, u64> = stats
        .non_2xx_total
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    serde_json::json!({
        "base_url": args.base_url,
        "clients": args.clients,
        "threads": args.threads,
        "warmup_seconds": args.warmup_seconds,
        "duration_seconds": args.duration_seconds,
        "customers_enrolled": enrolled.0,
        "customers_skipped_409": enrolled.1,
        "purchases_per_second": round(outcome.purchases_per_second(), 1),
        "ok_measured": stats.ok_measured,
        "ok_total": stats.ok_total,
        "latency_samples": all.map_or(0, |s| s.count),
        "p50_ms": ms(|s| s.p50_us),
        "p90_ms": ms(|s| s.p90_us),
        "p99_ms": ms(|s| s.p99_us),
        "p999_ms": ms(|s| s.p999_us),
        "max_ms": ms(|s| s.max_us),
        "non_2xx_total": outcome.non_2xx_sum(),
        "non_2xx_by_status": by_status,
        "transport_errors_total": stats.transport_total,
        "timeouts_total": stats.timeouts_total,
        "lost_tasks": outcome.lost_tasks,
        "loadgen_cpu_seconds": outcome.cpu_seconds.map(|c| round(c, 2)),
        "wall_seconds": round(outcome.wall_seconds, 2),
    })
}

/// What enrolment achieved (counts are of phones, one request each).
#[derive(Default)]
struct Enrolment {
    ids: Vec<String>,
    conflicts: u64,
    non_2xx: u64,
    transport: u64,
}

/// Enrols `--customers` fresh phones with up to `--clients` concurrent requests.
async fn enrol(
    client: &reqwest::Client,
    url: &Url,
    args: &Args,
    samples: &Arc<Mutex<Samples>>,
) -> Result<Enrolment> {
    let phones = Arc::new(unique_phones(
        &mut SplitMix64::from_os(),
        args.customers as usize,
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (args.clients as usize).min(phones.len());
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(enrol_worker(
                client.clone(),
                url.clone(),
                phones.clone(),
                next.clone(),
                samples.clone(),
            ))
        })
        .collect();
    let mut all = Enrolment::default();
    for handle in handles {
        let part = handle.await.context("an enrolment task failed")?;
        all.ids.extend(part.ids);
        all.conflicts += part.conflicts;
        all.non_2xx += part.non_2xx;
        all.transport += part.transport;
    }
    Ok(all)
}

/// Takes the next phone from the shared list until it is exhausted.
async fn enrol_worker(
    client: reqwest::Client,
    url: Url,
    phones: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    samples: Arc<Mutex<Samples>>,
) -> Enrolment {
    const WHAT: &str = "POST /v1/customers";
    let mut out = Enrolment::default();
    while let Some(phone) = phones.get(next.fetch_add(1, Ordering::Relaxed)) {
        let body = serde_json::json!({ "phone": phone }).to_string();
        let result = async {
            let resp = client.post(url.clone()).body(body).send().await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.bytes().await?))
        }
        .await;
        match result {
            Ok((status, bytes)) if status.is_success() => match customer_id_of(&bytes) {
                Some(id) => out.ids.push(id),
                None => {
                    out.non_2xx += 1;
                    let what = "POST /v1/customers (2xx without customer_id)";
                    samples.lock().unwrap().push_non_2xx(what, status, &bytes);
                }
            },
            // Already enrolled (a phone collision with an earlier run): skipped.
            Ok((StatusCode::CONFLICT, _)) => out.conflicts += 1,
            Ok((status, bytes)) => {
                out.non_2xx += 1;
                samples.lock().unwrap().push_non_2xx(WHAT, status, &bytes);
            }
            Err(e) => {
                out.transport += 1;
                samples.lock().unwrap().push_transport(WHAT, &e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}

fn customer_id_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(value.get("customer_id")?.as_str()?.to_owned())
}

async fn purchase_loop(
    client: reqwest::Client,
    url: Url,
    customers: Arc<Vec<String>>,
    samples: Arc<Mutex<Samples>>,
    measure_start: Instant,
    deadline: Instant,
) -> TaskStats {
    let mut rng = SplitMix64::from_os();
    let mut stats = TaskStats::default();
    while Instant::now() < deadline {
        let customer = &customers[rng.index(customers.len())];
        let amount_minor = rng.range_inclusive(AMOUNT_MIN_MINOR, AMOUNT_MAX_MINOR);
        let body = purchase_body(customer, amount_minor);
        let key = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        let result = async {
            let resp = client
                .post(url.clone())
                .header("Idempotency-Key", key)
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            // Read the whole body: the latency includes it and the connection is reused.
            Ok::<_, reqwest::Error>((status, resp.bytes().await?))
        }
        .await;
        let done = Instant::now();
        let in_window = done >= measure_start && done <= deadline;
        let micros = u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX);
        match result {
            Ok((status, bytes)) => {
                if in_window {
                    stats.latency_all_us.push(micros);
                }
                if status.is_success() {
                    stats.ok_total += 1;
                    if in_window {
                        stats.ok_measured += 1;
                        stats.latency_ok_us.push(micros);
                    }
                } else {
                    *stats.non_2xx_total.entry(status.as_u16()).or_default() += 1;
                    if in_window {
                        stats.non_2xx_measured += 1;
                    }
                    samples
                        .lock()
                        .unwrap()
                        .push_non_2xx("POST /v1/purchases", status, &bytes);
                }
            }
            Err(e) => {
                stats.transport_total += 1;
                if e.is_timeout() {
                    stats.timeouts_total += 1;
                }
                if in_window {
                    stats.transport_measured += 1;
                }
                samples
                    .lock()
                    .unwrap()
                    .push_transport("POST /v1/purchases", &e);
                // Do not spin on e.g. "connection refused".
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stats
}

fn print_samples(samples: &Arc<Mutex<Samples>>) {
    let s = samples.lock().unwrap();
    if !s.non_2xx.is_empty() {
        println!("first non-2xx responses:");
        for line in &s.non_2xx {
            println!("  body: {}", line.replace('\n', " "));
        }
    }
    if !s.transport.is_empty() {
        println!("first transport errors:");
        for line in &s.transport {
            println!("  error: {}", line.replace('\n', " "));
        }
    }
}
