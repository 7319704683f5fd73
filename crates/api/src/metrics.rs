//! `/metrics` in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::http::{Method, StatusCode};
use kala_engine::{Engine, LATENESS_BUCKETS};

/// HTTP requests by method and status.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl HttpMetrics {
    pub fn count(&self, method: &Method, status: StatusCode) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method_label(method), status.as_u16()))
                .or_default() += 1;
        }
    }
}

pub fn render(engine: &Engine, http: &HttpMetrics) -> String {
    let stats = engine.app_stats();
    let m = engine.metrics().snapshot();
    let mut out = String::new();
    header(&mut out, "kala_jobs", "Jobs stored, by state.", "gauge");
    let _ = writeln!(out, "kala_jobs{{state=\"enabled\"}} {}", stats.active_jobs);
    let _ = writeln!(
        out,
        "kala_jobs{{state=\"disabled\"}} {}",
        stats.disabled_jobs
    );
    header(
        &mut out,
        "kala_jobs_scheduled",
        "Jobs waiting in the timer queue.",
        "gauge",
    );
    let _ = writeln!(out, "kala_jobs_scheduled {}", engine.scheduled_count());
    header(
        &mut out,
        "kala_runs_running",
        "Runs executing now.",
        "gauge",
    );
    let _ = writeln!(out, "kala_runs_running {}", engine.running_count());
    header(
        &mut out,
        "kala_run_records_pending",
        "Run records waiting in memory to be written: the store refused them when their runs ended (written when it answers again).",
        "gauge",
    );
    let _ = writeln!(out, "kala_run_records_pending {}", engine.late_records());
    if let Some(held) = engine.partitions_held() {
        header(
            &mut out,
            "kala_partitions_held",
            "Partitions of the job ids whose lease this instance holds (cluster; of 64).",
            "gauge",
        );
        let _ = writeln!(out, "kala_partitions_held {held}");
    }
    header(
        &mut out,
        "kala_runs_last_minute",
        "Runs that succeeded or failed in the last minute (50-60 s, in 10 s steps): all of them, and the failures.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "kala_runs_last_minute{{result=\"all\"}} {}\nkala_runs_last_minute{{result=\"failed\"}} {}",
        m.runs_last_minute, m.failures_last_minute
    );
    header(
        &mut out,
        "kala_runs_total",
        "Finished runs, by result.",
        "counter",
    );
    for (result, v) in [
        ("succeeded", m.runs_succeeded),
        ("failed", m.runs_failed),
        ("skipped", m.runs_skipped),
        ("interrupted", m.runs_interrupted),
    ] {
        let _ = writeln!(out, "kala_runs_total{{result=\"{result}\"}} {v}");
    }
    header(
        &mut out,
        "kala_run_lateness_seconds",
        "Actual start minus scheduled time of scheduled runs.",
        "histogram",
    );
    for (bound, count) in LATENESS_BUCKETS.iter().zip(&m.lateness_buckets) {
        let _ = writeln!(
            out,
            "kala_run_lateness_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "kala_run_lateness_seconds_bucket{{le=\"+Inf\"}} {}",
        m.lateness_count
    );
    let _ = writeln!(
        out,
        "kala_run_lateness_seconds_sum {}",
        m.lateness_sum_seconds
    );
    let _ = writeln!(out, "kala_run_lateness_seconds_count {}", m.lateness_count);
    header(
        &mut out,
        "kala_store_errors_total",
        "Failed writes to the store.",
        "counter",
    );
    let _ = writeln!(out, "kala_store_errors_total {}", m.store_errors);
    header(
        &mut out,
        "kala_run_records_dropped_total",
        "Run records lost for good: more waited to be written than memory keeps (10,000), or their job was gone when they could be.",
        "counter",
    );
    let _ = writeln!(out, "kala_run_records_dropped_total {}", m.runs_dropped);
    header(
        &mut out,
        "kala_run_records_written_late_total",
        "Run records written after their runs ended, once the store answered again.",
        "counter",
    );
    let _ = writeln!(
        out,
        "kala_run_records_written_late_total {}",
        m.records_written_late
    );
    for (name, help, v) in [
        (
            "kala_runs_fenced_total",
            "Runs not started because this instance could not prove it holds the job's partition (cluster).",
            m.runs_fenced,
        ),
        (
            "kala_partitions_taken_total",
            "Partitions of the job ids this instance took over (cluster).",
            m.partitions_taken,
        ),
        (
            "kala_partitions_released_total",
            "Partitions this instance handed over (cluster).",
            m.partitions_released,
        ),
        (
            "kala_lease_errors_total",
            "Membership rounds the database did not answer (cluster).",
            m.lease_errors,
        ),
        (
            "kala_changes_applied_total",
            "Jobs re-read because another instance changed them (cluster).",
            m.changes_applied,
        ),
        (
            "kala_notifications_delivered_total",
            "Notifications delivered (webhook answered 2xx, or the SMTP server took the email; each notice of a summary counts).",
            m.notifications_delivered,
        ),
        (
            "kala_notification_attempts_failed_total",
            "Notification delivery attempts that failed and are retried.",
            m.notification_attempts_failed,
        ),
        (
            "kala_notifications_dropped_total",
            "Notifications given up on (retries exhausted, or an error retrying cannot fix).",
            m.notifications_dropped,
        ),
    ] {
        header(&mut out, name, help, "counter");
        let _ = writeln!(out, "{name} {v}");
    }
    header(
        &mut out,
        "kala_runs_not_started_total",
        "Runs not started because their run-journal entry could not be written (require_journal).",
        "counter",
    );
    let _ = writeln!(out, "kala_runs_not_started_total {}", m.runs_not_started);
    header(
        &mut out,
        "kala_runs_unjournaled_total",
        "Runs started without a run-journal entry because the store could not write (a crash during them is not recorded).",
        "counter",
    );
    let _ = writeln!(out, "kala_runs_unjournaled_total {}", m.runs_unjournaled);
    header(
        &mut out,
        "kala_jobs_invalid",
        "Stored jobs whose timing did not parse at start-up (kept, never scheduled).",
        "gauge",
    );
    let _ = writeln!(out, "kala_jobs_invalid {}", m.invalid_jobs);
    header(
        &mut out,
        "kala_notifications_pending",
        "Notifications in the outbox (to deliver or to retry) at the deliverer's last look.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "kala_notifications_pending {}",
        m.notifications_pending
    );
    header(
        &mut out,
        "kala_notification_latency_seconds",
        "Time from a run's end to the delivery of its notifications (a summary without quantiles: sum and count of the delivered ones).",
        "summary",
    );
    let _ = writeln!(
        out,
        "kala_notification_latency_seconds_sum {}\nkala_notification_latency_seconds_count {}",
        m.notification_latency_sum_seconds, m.notifications_delivered
    );
    header(
        &mut out,
        "kala_http_requests_total",
        "HTTP requests, by method and status.",
        "counter",
    );
    if let Ok(reqs) = http.requests.lock() {
        for ((method, status), v) in reqs.iter() {
            let _ = writeln!(
                out,
                "kala_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {v}"
            );
        }
    }
    out
}

/// Methods the API uses, for metrics labels.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// The `# HELP` and `# TYPE` lines of one metric.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
