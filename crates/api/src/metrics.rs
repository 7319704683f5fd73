//! `/metrics` in Prometheus' text format, written by the `prometheus`
//! crate's encoder from metric families built at each scrape out of the
//! engine's counters (the engine keeps plain atomics and knows nothing
//! of Prometheus). Checked by `promtool check metrics` (tests/metrics.rs).

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::{Method, StatusCode};
use kala_engine::{Engine, LATENESS_BUCKETS};
use prometheus::TextEncoder;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Summary,
};

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

/// The families of one scrape, in order.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

/// A sample's labels: (name, value) pairs.
type Labels<'a> = &'a [(&'a str, &'a str)];

fn label_pairs(labels: Labels<'_>) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

impl Families {
    /// A family without samples (no HTTP request counted yet) is left
    /// out: the encoder refuses an empty family, and would fail the whole
    /// page with it.
    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        if metrics.is_empty() {
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    fn gauges(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        let metrics = samples
            .iter()
            .map(|(labels, v)| {
                let mut g = Gauge::default();
                g.set_value(*v);
                let mut m = Metric::default();
                m.set_label(label_pairs(labels));
                m.set_gauge(g);
                m
            })
            .collect();
        self.push(name, help, MetricType::GAUGE, metrics);
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        self.gauges(name, help, &[(&[], v as f64)]);
    }

    fn counters(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, u64)]) {
        let metrics = samples
            .iter()
            .map(|(labels, v)| {
                let mut c = Counter::default();
                c.set_value(*v as f64);
                let mut m = Metric::default();
                m.set_label(label_pairs(labels));
                m.set_counter(c);
                m
            })
            .collect();
        self.push(name, help, MetricType::COUNTER, metrics);
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.counters(name, help, &[(&[], v)]);
    }
}

pub fn render(engine: &Engine, http: &HttpMetrics) -> String {
    let stats = engine.app_stats();
    let m = engine.metrics().snapshot();
    let mut f = Families::default();
    f.gauges(
        "kala_jobs",
        "Jobs stored, by state.",
        &[
            (&[("state", "enabled")], stats.active_jobs as f64),
            (&[("state", "disabled")], stats.disabled_jobs as f64),
        ],
    );
    f.gauge(
        "kala_jobs_scheduled",
        "Jobs waiting in the timer queue.",
        engine.scheduled_count() as u64,
    );
    f.gauge(
        "kala_runs_running",
        "Runs executing now.",
        engine.running_count() as u64,
    );
    f.gauge(
        "kala_run_records_pending",
        "Run records waiting in memory to be written: the store refused them when their runs ended (written when it answers again).",
        engine.late_records() as u64,
    );
    if let Some(held) = engine.partitions_held() {
        f.gauge(
            "kala_partitions_held",
            "Partitions of the job ids whose lease this instance holds (cluster; of 64).",
            held as u64,
        );
    }
    f.gauges(
        "kala_runs_last_minute",
        "Runs that succeeded or failed in the last minute (50-60 s, in 10 s steps): all of them, and the failures.",
        &[
            (&[("result", "all")], m.runs_last_minute as f64),
            (&[("result", "failed")], m.failures_last_minute as f64),
        ],
    );
    f.counters(
        "kala_runs_total",
        "Finished runs, by result.",
        &[
            (&[("result", "succeeded")], m.runs_succeeded),
            (&[("result", "failed")], m.runs_failed),
            (&[("result", "skipped")], m.runs_skipped),
            (&[("result", "interrupted")], m.runs_interrupted),
        ],
    );
    let mut h = Histogram::default();
    h.set_sample_count(m.lateness_count);
    h.set_sample_sum(m.lateness_sum_seconds);
    h.set_bucket(
        LATENESS_BUCKETS
            .iter()
            .zip(&m.lateness_buckets)
            .map(|(bound, count)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*count);
                b
            })
            .collect(),
    );
    let mut lateness = Metric::default();
    lateness.set_histogram(h);
    f.push(
        "kala_run_lateness_seconds",
        "How late scheduled runs started after their scheduled time.",
        MetricType::HISTOGRAM,
        vec![lateness],
    );
    for (name, help, v) in [
        (
            "kala_store_errors_total",
            "Failed writes to the store.",
            m.store_errors,
        ),
        (
            "kala_run_records_dropped_total",
            "Run records lost for good: more waited to be written than memory keeps (10,000), or their job was gone when they could be.",
            m.runs_dropped,
        ),
        (
            "kala_run_records_written_late_total",
            "Run records written after their runs ended, once the store answered again.",
            m.records_written_late,
        ),
        (
            "kala_runs_fenced_total",
            "Runs not started because this instance could not prove it holds the job's partition (cluster).",
            m.runs_fenced,
        ),
        (
            "kala_runs_dispatched_total",
            "Runs this instance dispatched to another instance (run_on, cluster).",
            m.runs_dispatched,
        ),
        (
            "kala_placement_skipped_total",
            "Runs skipped because fewer live instances matched a job's run_on than it asks for.",
            m.placement_skipped,
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
        (
            "kala_runs_not_started_total",
            "Runs not started because their run-journal entry could not be written (require_journal).",
            m.runs_not_started,
        ),
        (
            "kala_runs_unjournaled_total",
            "Runs started without a run-journal entry because the store could not write (a crash during them is not recorded).",
            m.runs_unjournaled,
        ),
    ] {
        f.counter(name, help, v);
    }
    f.gauge(
        "kala_jobs_invalid",
        "Stored jobs whose timing did not parse at start-up (kept, never scheduled).",
        m.invalid_jobs,
    );
    f.gauge(
        "kala_notifications_pending",
        "Notifications in the outbox (to deliver or to retry) at the deliverer's last look.",
        m.notifications_pending,
    );
    let mut latency = Summary::default();
    latency.set_sample_count(m.notifications_delivered);
    latency.set_sample_sum(m.notification_latency_sum_seconds);
    let mut sample = Metric::default();
    sample.set_summary(latency);
    f.push(
        "kala_notification_latency_seconds",
        "Time from a run's end to the delivery of its notifications (a summary without quantiles: sum and count of the delivered ones).",
        MetricType::SUMMARY,
        vec![sample],
    );
    let requests: Vec<((&str, String), u64)> = match http.requests.lock() {
        Ok(reqs) => reqs
            .iter()
            .map(|((method, status), v)| ((*method, status.to_string()), *v))
            .collect(),
        Err(_) => Vec::new(),
    };
    let samples: Vec<([(&str, &str); 2], u64)> = requests
        .iter()
        .map(|((method, status), v)| ([("method", *method), ("status", status.as_str())], *v))
        .collect();
    let samples: Vec<(Labels<'_>, u64)> = samples.iter().map(|(l, v)| (&l[..], *v)).collect();
    f.counters(
        "kala_http_requests_total",
        "HTTP requests, by method and status.",
        &samples,
    );
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&f.0, &mut out) {
        tracing::error!(error = %e, "cannot encode /metrics");
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
