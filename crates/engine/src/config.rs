//! Configuration, errors and events: the engine's vocabulary towards its
//! callers.
//!
//! Owns: [`EngineConfig`], [`MissedRuns`], [`NotifySettings`], [`EngineError`], [`Event`].
//! Must not: hold state or do I/O; everything here is plain data.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kala_job::{JobError, JobId, NotifyTarget, RunRecord, Trigger};
use kala_notify::Deliver;
use kala_store::StoreError;

/// What to do with a repeating job whose run fell due while the engine was
/// down (or disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedRuns {
    /// Run once now for the most recent missed point, then follow the
    /// schedule. (Kala never runs such a job again — a bug.)
    #[default]
    CatchUpOnce,
    /// Skip to the next point of the schedule.
    Skip,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs executing at once, at most.
    pub max_concurrent_runs: usize,
    /// Run records kept per job (oldest dropped first); `None` = all.
    pub keep_runs: Option<usize>,
    /// Run records older than this are pruned every minute.
    pub run_ttl: Option<SignedDuration>,
    pub missed_runs: MissedRuns,
    /// The longest delay between retries (the delay doubles each retry).
    pub max_retry_delay: SignedDuration,
    /// The shortest delay between retries, also when the job sets none:
    /// a command that cannot start fails in microseconds, and a huge
    /// `retries` must not turn it into a loop that starves the server.
    pub min_retry_delay: SignedDuration,
    /// This instance's name in run claims.
    pub instance_id: String,
    /// This instance's name in the run journal, stable across restarts
    /// (`--node-id`; default: the host name). At start-up the engine
    /// records as interrupted the open runs of its own node, or every
    /// open run when it does not claim runs (it is the only instance).
    pub node_id: String,
    /// A run whose journal entry cannot be written (the store is down or
    /// full): `false` (default) runs it anyway, from memory, as jobs keep
    /// running through a database outage (counted in
    /// `runs_unjournaled`); `true` does not start it (`runs_not_started`).
    pub require_journal: bool,
    /// Claim each scheduled occurrence in the store before running it, so
    /// that several instances on one database run it once. (Superseded
    /// by the cluster's partition leases; kept for embedders.)
    pub claim_runs: bool,
    /// Form a cluster with the other instances on the store when it
    /// offers [`kala_store::Coordination`] (default `true`). `false`: this
    /// engine runs every job itself, as if alone.
    pub cluster: bool,
    /// Where this instance's API listens, shown to the others.
    pub address: String,
    /// This instance's tags (`--tag key=value`), shown in the cluster's
    /// status: where jobs may be placed.
    pub tags: std::collections::BTreeMap<String, String>,
    /// What this instance does in a cluster: `Both` (default), `Worker`
    /// (no partitions, runs only what is dispatched to it) or `Scheduler`
    /// (dispatches every point, runs nothing itself). Alone, only `Both`.
    pub role: kala_store::NodeRole,
    /// A partition's lease lasts this long without renewal: the longest
    /// a dead instance's jobs wait for a new owner.
    pub lease_ttl: SignedDuration,
    /// Membership rounds (heartbeat, lease renewal, rebalancing) are this
    /// far apart; well under `lease_ttl`.
    pub heartbeat: SignedDuration,
    /// The change follower polls this often even without a notification.
    pub change_poll: std::time::Duration,
    /// Notifications of runs (targets, delivery, retries, rate limit).
    pub notify: NotifySettings,
    /// The audit log of changes.
    pub audit: crate::audit::model::AuditSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_runs: 256,
            keep_runs: Some(1000),
            run_ttl: None,
            missed_runs: MissedRuns::CatchUpOnce,
            max_retry_delay: SignedDuration::from_hours(1),
            min_retry_delay: SignedDuration::from_millis(100),
            instance_id: format!("kala-{}", std::process::id()),
            node_id: default_node_id(),
            require_journal: false,
            claim_runs: false,
            cluster: true,
            address: String::new(),
            tags: Default::default(),
            role: kala_store::NodeRole::Both,
            lease_ttl: SignedDuration::from_secs(3),
            heartbeat: SignedDuration::from_secs(1),
            change_poll: std::time::Duration::from_millis(500),
            notify: NotifySettings::default(),
            audit: crate::audit::model::AuditSettings::default(),
        }
    }
}

/// The host name (from the kernel), or `local`.
pub fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("job {0} does not exist")]
    NotFound(JobId),
    #[error(transparent)]
    Invalid(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("executor: {0}")]
    Executor(#[from] kala_executor::ExecutorError),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Something observers can subscribe to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    RunStarted {
        job_id: JobId,
        trigger: Trigger,
        at: Timestamp,
        scheduled_at: Option<Timestamp>,
    },
    /// Sent after the record is stored.
    RunFinished(RunRecord),
}

/// How notifications are made and delivered.
#[derive(Clone)]
pub struct NotifySettings {
    /// What delivers them; `None`: jobs cannot have `notify` targets and
    /// no notice is made.
    pub deliver: Option<Arc<dyn Deliver>>,
    /// Targets of every job (the server's `--notify-webhook`,
    /// `--notify-email`), beside each job's own.
    pub defaults: Vec<NotifyTarget>,
    /// Attempts before a notice is dropped.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; doubled after each next
    /// one, up to `max_backoff`.
    pub first_backoff: SignedDuration,
    pub max_backoff: SignedDuration,
    /// Emails per job and address per `email_window`; the events beyond
    /// it are sent as one summary when the window ends.
    pub email_burst: u32,
    pub email_window: SignedDuration,
    /// How long delivered and dropped notices are kept (they show in the
    /// run history).
    pub keep_done: SignedDuration,
    /// How often the outbox is read when nothing wakes the deliverer.
    pub poll: SignedDuration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            deliver: None,
            defaults: Vec::new(),
            max_attempts: 8,
            first_backoff: SignedDuration::from_secs(1),
            max_backoff: SignedDuration::from_mins(5),
            email_burst: 5,
            email_window: SignedDuration::from_mins(10),
            keep_done: SignedDuration::from_hours(24 * 7),
            poll: SignedDuration::from_secs(1),
            concurrency: 16,
        }
    }
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("deliver", &self.deliver.as_ref().map(|_| "…"))
            .field("defaults", &self.defaults)
            .field("max_attempts", &self.max_attempts)
            .field("email_burst", &self.email_burst)
            .field("email_window", &self.email_window)
            .finish_non_exhaustive()
    }
}
