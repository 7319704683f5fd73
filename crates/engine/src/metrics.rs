//! Counters the engine keeps for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::SignedDuration;
use kala_job::Outcome;

/// Upper bounds (seconds) of the run-lateness histogram buckets.
pub const LATENESS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 60.0,
];

#[derive(Default)]
pub struct Metrics {
    succeeded: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    interrupted: AtomicU64,
    not_started: AtomicU64,
    unjournaled: AtomicU64,
    store_errors: AtomicU64,
    invalid_jobs: AtomicU64,
    runs_dropped: AtomicU64,
    late_written: AtomicU64,
    fenced: AtomicU64,
    dispatched: AtomicU64,
    placement_skipped: AtomicU64,
    takeovers: AtomicU64,
    handovers: AtomicU64,
    lease_errors: AtomicU64,
    changes_applied: AtomicU64,
    notices_delivered: AtomicU64,
    notices_failed: AtomicU64,
    notices_dropped: AtomicU64,
    notices_pending: AtomicU64,
    notice_latency_sum_ns: AtomicU64,
    lateness: [AtomicU64; LATENESS_BUCKETS.len()],
    lateness_count: AtomicU64,
    lateness_sum_ns: AtomicU64,
    recent: std::sync::Mutex<Recent>,
}

/// Runs finished in the last minute, in six 10-second buckets on the
/// monotonic clock: a rate a dashboard can show at first sight.
#[derive(Default)]
struct Recent {
    /// (10-second slot since the process's origin, runs, failures).
    buckets: [(u64, u64, u64); RECENT_SLOTS as usize],
}

const RECENT_SLOTS: u64 = 6;

fn recent_slot() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
        / 10
        + RECENT_SLOTS
}

impl Recent {
    fn add(&mut self, failed: bool) {
        let slot = recent_slot();
        let b = &mut self.buckets[(slot % RECENT_SLOTS) as usize];
        if b.0 != slot {
            *b = (slot, 0, 0);
        }
        b.1 += 1;
        b.2 += u64::from(failed);
    }

    /// (runs, failures) in the buckets of the last minute.
    fn last_minute(&self) -> (u64, u64) {
        let now = recent_slot();
        self.buckets
            .iter()
            .filter(|b| b.0 + RECENT_SLOTS > now)
            .fold((0, 0), |(r, f), b| (r + b.1, f + b.2))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    pub runs_succeeded: u64,
    pub runs_failed: u64,
    pub runs_skipped: u64,
    /// Runs found unfinished in the run journal at start-up.
    pub runs_interrupted: u64,
    /// Runs not started because their journal entry could not be written
    /// (with `require_journal`).
    pub runs_not_started: u64,
    /// Runs started without a journal entry (the store could not write).
    pub runs_unjournaled: u64,
    pub store_errors: u64,
    /// Stored jobs whose timing did not parse at start-up (kept, never
    /// scheduled).
    pub invalid_jobs: u64,
    /// Run records lost for good: more than the late queue holds waited,
    /// or the job was gone when the record could be written.
    pub runs_dropped: u64,
    /// Run records written late (the store refused them when their runs
    /// ended).
    pub records_written_late: u64,
    /// Runs not started because this instance could not prove it holds
    /// the lease of the job's partition (cluster).
    pub runs_fenced: u64,
    /// Runs this instance dispatched to another (`run_on`).
    pub runs_dispatched: u64,
    /// Points (or instances of a point) skipped because fewer live
    /// instances matched `run_on` than it asks for.
    pub placement_skipped: u64,
    /// Partitions this instance took (at start, from a dead instance, or
    /// handed over).
    pub partitions_taken: u64,
    /// Partitions this instance gave up (rebalancing, shutdown).
    pub partitions_released: u64,
    /// Membership rounds that failed (the database did not answer).
    pub lease_errors: u64,
    /// Jobs re-read because another instance changed them.
    pub changes_applied: u64,
    /// Notifications delivered (a summary email counts each notice in it).
    pub notifications_delivered: u64,
    /// Delivery attempts that failed and will be retried.
    pub notification_attempts_failed: u64,
    /// Notifications given up on (retries exhausted, or a permanent error).
    pub notifications_dropped: u64,
    /// Notifications in the outbox at the deliverer's last look.
    pub notifications_pending: u64,
    /// Sum over delivered notifications of the time from the notice's
    /// creation (the run's end) to its delivery.
    pub notification_latency_sum_seconds: f64,
    /// Cumulative counts per bucket of [`LATENESS_BUCKETS`].
    pub lateness_buckets: Vec<u64>,
    pub lateness_count: u64,
    pub lateness_sum_seconds: f64,
    /// Runs that succeeded or failed in the last minute (50–60 s, in
    /// 10-second steps), and of them the failures.
    pub runs_last_minute: u64,
    pub failures_last_minute: u64,
}

impl Metrics {
    pub fn count(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Failed => &self.failed,
            Outcome::Skipped => &self.skipped,
            Outcome::Interrupted => &self.interrupted,
        };
        c.fetch_add(1, Ordering::Relaxed);
        if matches!(outcome, Outcome::Succeeded | Outcome::Failed) {
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(outcome == Outcome::Failed);
        }
    }

    pub fn not_started(&self) {
        self.not_started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unjournaled(&self) {
        self.unjournaled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn late_written(&self) {
        self.late_written.fetch_add(1, Ordering::Relaxed);
    }

    pub fn run_dropped(&self) {
        self.runs_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fenced(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dispatched(&self) {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    pub fn placement_skipped(&self) {
        self.placement_skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn taken(&self, n: usize) {
        self.takeovers.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn released(&self, n: usize) {
        self.handovers.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn lease_error(&self) {
        self.lease_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn changes_applied(&self, n: usize) {
        self.changes_applied.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn notice_delivered(&self, created: jiff::Timestamp, now: jiff::Timestamp) {
        self.notices_delivered.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(now.duration_since(created).as_nanos().max(0)).unwrap_or(0);
        self.notice_latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn notice_failed(&self) {
        self.notices_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn notice_dropped(&self) {
        self.notices_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn notices_pending(&self, n: usize) {
        self.notices_pending.store(n as u64, Ordering::Relaxed);
    }

    pub fn invalid_job(&self) {
        self.invalid_jobs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_lateness(&self, late: SignedDuration) {
        let secs = late.as_secs_f64().max(0.0);
        for (i, bound) in LATENESS_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.lateness[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lateness_count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(late.as_nanos().max(0)).unwrap_or(u64::MAX);
        self.lateness_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_minute();
        MetricsSnapshot {
            runs_succeeded: self.succeeded.load(Ordering::Relaxed),
            runs_failed: self.failed.load(Ordering::Relaxed),
            runs_skipped: self.skipped.load(Ordering::Relaxed),
            runs_interrupted: self.interrupted.load(Ordering::Relaxed),
            runs_not_started: self.not_started.load(Ordering::Relaxed),
            runs_unjournaled: self.unjournaled.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
            invalid_jobs: self.invalid_jobs.load(Ordering::Relaxed),
            runs_dropped: self.runs_dropped.load(Ordering::Relaxed),
            records_written_late: self.late_written.load(Ordering::Relaxed),
            runs_fenced: self.fenced.load(Ordering::Relaxed),
            runs_dispatched: self.dispatched.load(Ordering::Relaxed),
            placement_skipped: self.placement_skipped.load(Ordering::Relaxed),
            partitions_taken: self.takeovers.load(Ordering::Relaxed),
            partitions_released: self.handovers.load(Ordering::Relaxed),
            lease_errors: self.lease_errors.load(Ordering::Relaxed),
            changes_applied: self.changes_applied.load(Ordering::Relaxed),
            notifications_delivered: self.notices_delivered.load(Ordering::Relaxed),
            notification_attempts_failed: self.notices_failed.load(Ordering::Relaxed),
            notifications_dropped: self.notices_dropped.load(Ordering::Relaxed),
            notifications_pending: self.notices_pending.load(Ordering::Relaxed),
            notification_latency_sum_seconds: self.notice_latency_sum_ns.load(Ordering::Relaxed)
                as f64
                / 1e9,
            lateness_buckets: self
                .lateness
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            lateness_count: self.lateness_count.load(Ordering::Relaxed),
            lateness_sum_seconds: self.lateness_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            runs_last_minute: recent.0,
            failures_last_minute: recent.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_minute_counts_runs_and_failures() {
        let m = Metrics::default();
        m.count(Outcome::Succeeded);
        m.count(Outcome::Failed);
        m.count(Outcome::Skipped);
        let s = m.snapshot();
        assert_eq!((s.runs_last_minute, s.failures_last_minute), (2, 1));
        assert_eq!((s.runs_succeeded, s.runs_failed, s.runs_skipped), (1, 1, 1));
    }

    #[test]
    fn old_buckets_fall_out_of_the_minute() {
        let mut r = Recent::default();
        let now = recent_slot();
        r.buckets[((now - RECENT_SLOTS) % RECENT_SLOTS) as usize] = (now - RECENT_SLOTS, 5, 5);
        r.buckets[((now - 1) % RECENT_SLOTS) as usize] = (now - 1, 3, 1);
        assert_eq!(r.last_minute(), (3, 1));
    }
}
