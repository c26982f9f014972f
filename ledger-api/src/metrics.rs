//! Prometheus metrics of the HTTP surface, hand-rolled with atomics: a handful of counters
//! and one histogram do not justify a metrics crate, and the text exposition format is
//! simple and stable.
//!
//! Labels are fixed enumerations (status class, command outcome), never a path, tenant or
//! customer, so the number of series is bounded.

use actix_web::http::StatusCode;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Decided and accepted: events were committed.
    Committed,
    /// Decided and refused by the ledger (the refusal was stored under the key).
    Refused,
    /// An earlier response replayed for a repeated idempotency key.
    Replayed,
    /// An idempotency key reused with a different request.
    KeyReused,
    /// The writer or the database was unavailable; nothing was written.
    Unavailable,
}

impl CommandOutcome {
    const ALL: [CommandOutcome; 5] = [
        CommandOutcome::Committed,
        CommandOutcome::Refused,
        CommandOutcome::Replayed,
        CommandOutcome::KeyReused,
        CommandOutcome::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            CommandOutcome::Committed => "committed",
            CommandOutcome::Refused => "refused",
            CommandOutcome::Replayed => "replayed",
            CommandOutcome::KeyReused => "key_reused",
            CommandOutcome::Unavailable => "unavailable",
        }
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the request-duration buckets, in seconds.
const DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Writes a metric family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one sample; `labels` is empty or `key="value",…` without braces.
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = if labels.is_empty() {
        writeln!(out, "{name} {value}")
    } else {
        writeln!(out, "{name}{{{labels}}} {value}")
    };
}

/// The group-commit writer's counters.
pub fn render_writer(stats: &schema::writer::WriterStats, out: &mut String) {
    let counters = [
        (
            "loyalty_writer_transactions_total",
            "Group-commit transactions committed.",
            &stats.transactions,
        ),
        (
            "loyalty_writer_commands_total",
            "Commands decided in committed transactions.",
            &stats.commands,
        ),
        (
            "loyalty_writer_events_total",
            "Events appended.",
            &stats.events,
        ),
        (
            "loyalty_writer_failed_transactions_total",
            "Group-commit transactions that failed.",
            &stats.failed_transactions,
        ),
    ];
    for (name, help, counter) in counters {
        family(out, name, "counter", help);
        sample(out, name, "", counter.load(Ordering::Relaxed));
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    http_requests: [AtomicU64; 5],
    commands: [AtomicU64; 5],
    /// Cumulative counts are computed at exposition; each slot counts its own bucket, the
    /// last slot those above every bound.
    duration_buckets: [AtomicU64; 13],
    duration_micros_sum: AtomicU64,
}

impl Metrics {
    pub fn observe_request(&self, status: StatusCode, duration: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.http_requests[class].fetch_add(1, Ordering::Relaxed);
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS_SECONDS.len());
        self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros_sum
            .fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count_command(&self, outcome: CommandOutcome) {
        let index = CommandOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.commands[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, out: &mut String) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let requests = "loyalty_http_requests_total";
        family(
            out,
            requests,
            "counter",
            "HTTP responses sent, by status class.",
        );
        for (class, counter) in STATUS_CLASSES.iter().zip(&self.http_requests) {
            sample(
                out,
                requests,
                &format!("status_class=\"{class}\""),
                load(counter),
            );
        }
        let commands = "loyalty_commands_total";
        family(
            out,
            commands,
            "counter",
            "Ledger commands submitted over HTTP, by outcome.",
        );
        for (outcome, counter) in CommandOutcome::ALL.iter().zip(&self.commands) {
            sample(
                out,
                commands,
                &format!("outcome=\"{}\"", outcome.label()),
                load(counter),
            );
        }
        let duration = "loyalty_http_request_duration_seconds";
        family(out, duration, "histogram", "Time from request to response.");
        let bucket = format!("{duration}_bucket");
        let mut cumulative = 0;
        for (bound, counter) in DURATION_BUCKETS_SECONDS.iter().zip(&self.duration_buckets) {
            cumulative += load(counter);
            sample(out, &bucket, &format!("le=\"{bound}\""), cumulative);
        }
        cumulative += load(&self.duration_buckets[DURATION_BUCKETS_SECONDS.len()]);
        sample(out, &bucket, "le=\"+Inf\"", cumulative);
        let sum_micros = load(&self.duration_micros_sum);
        let sum = format!("{}.{:06}", sum_micros / 1_000_000, sum_micros % 1_000_000);
        sample(out, &format!("{duration}_sum"), "", sum);
        sample(out, &format!("{duration}_count"), "", cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_in_text_format() {
        let metrics = Metrics::default();
        metrics.observe_request(StatusCode::CREATED, Duration::from_micros(800));
        metrics.observe_request(StatusCode::NOT_FOUND, Duration::from_millis(3));
        metrics.observe_request(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10));
        metrics.count_command(CommandOutcome::Committed);
        metrics.count_command(CommandOutcome::Replayed);
        metrics.count_command(CommandOutcome::Replayed);
        let mut text = String::new();
        metrics.render(&mut text);
        for line in [
            "loyalty_http_requests_total{status_class=\"2xx\"} 1",
            "loyalty_http_requests_total{status_class=\"4xx\"} 1",
            "loyalty_http_requests_total{status_class=\"5xx\"} 1",
            "loyalty_commands_total{outcome=\"committed\"} 1",
            "loyalty_commands_total{outcome=\"replayed\"} 2",
            "loyalty_commands_total{outcome=\"key_reused\"} 0",
            "loyalty_http_request_duration_seconds_bucket{le=\"0.001\"} 1",
            "loyalty_http_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "loyalty_http_request_duration_seconds_bucket{le=\"2.5\"} 2",
            "loyalty_http_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "loyalty_http_request_duration_seconds_sum 10.003800",
            "loyalty_http_request_duration_seconds_count 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
