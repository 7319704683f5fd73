//! # kala-store
//!
//! The storage boundary of kala. Every backend (the embedded file store,
//! Redis, PostgreSQL, MySQL/MariaDB, MongoDB, the in-memory store) implements
//! [`JobStore`], and every backend must pass the shared `conformance`
//! suite.
//!
//! Contract:
//! * A write returns `Ok` only once it is durable in the backend (for the
//!   embedded store: committed and fsynced). The API turns `Ok` into a 2xx.
//! * [`JobStore::apply`] is the only write of jobs and run records, and it
//!   is atomic: a [`Batch`] (jobs to put, jobs to delete with their runs,
//!   runs to append) is stored entirely or not at all. Graph changes
//!   (a child and its parents, a parent and its orphaned children) are one
//!   batch.
//! * [`JobStore::load_all`] returns every job in one bulk read (start-up).
//! * The run journal: [`Batch::begin`] records an [`OpenRun`] durably
//!   before a run's process starts; the batch with its run record ends it
//!   ([`Batch::end`]). [`JobStore::open_runs`] lists the runs that began
//!   and never ended (the process died): start-up records them as
//!   interrupted instead of running their schedule point again.
//! * The notification outbox: [`Batch::notices`] writes [`Notice`]s
//!   (insert or replace by id) in the same transaction as the run record
//!   that causes them; [`JobStore::pending_notices`] lists the ones still
//!   to deliver, [`JobStore::notices`] a job's. Deleting a job deletes
//!   its notices.
//! * The audit log: [`Batch::audit`] writes [`AuditEntry`]s in the same
//!   transaction as the change they describe; [`JobStore::audit`] pages
//!   them newest first. Deleting jobs (or all of them) keeps the log;
//!   only [`JobStore::prune_audit`] drops entries.
//! * [`JobStore::claim`] is the primitive that lets several instances on
//!   one database agree that exactly one of them runs a given occurrence.

mod audit;
mod cluster;
mod memory;
mod notice;

#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId, RunRecord, Trigger};
use serde::{Deserialize, Serialize};

pub use audit::{
    AuditDiff, AuditEntry, audit_id, audit_id_of, audit_id_parts, audit_page, unique_u64,
};
pub use cluster::{
    ALL_JOBS, Coordination, Fence, JobChange, JobUpdate, Lease, LeaseRequest, NodeInfo, NodeRole,
    PARTITIONS, RunDelta, partition_of,
};
pub use memory::MemoryStore;
pub use notice::{Notice, NoticeState, oldest_first, soonest};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached; the write did not happen. (HTTP 503.)
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The disk holding the store is full; the write did not happen.
    /// (HTTP 507.)
    #[error("storage full: {0}")]
    Full(String),
    /// The backend refused or failed the operation.
    #[error("storage error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The batch's [`Fence`] did not hold: the writer no longer owns the
    /// partition (another instance took it over). Nothing was written.
    #[error("fenced: {0}")]
    Fenced(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One atomic write.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Jobs to insert or replace (whole jobs).
    pub put: Vec<Job>,
    /// Jobs to delete, with all their run records.
    pub delete: Vec<JobId>,
    /// Run records to append.
    pub runs: Vec<RunRecord>,
    /// After appending, keep at most this many run records for each job
    /// that got a new one (oldest dropped first).
    pub keep_runs: Option<usize>,
    /// Runs beginning: journaled before their process starts.
    pub begin: Vec<OpenRun>,
    /// Runs ending (by [`OpenRun::run_id`]), normally in the batch that
    /// stores their record. Unknown ids are ignored. Applied after `begin`.
    pub end: Vec<String>,
    /// Changes applied to the stored jobs (after `put` and `delete`; a
    /// job that is not stored is skipped). Only backends with
    /// [`JobStore::coordination`] accept them.
    pub update: Vec<JobUpdate>,
    /// Notifications to store (insert, or replace the one with the same
    /// id). Applied after `delete`.
    pub notices: Vec<Notice>,
    /// Audit entries of the changes in this batch (inserted; never
    /// changed).
    pub audit: Vec<AuditEntry>,
    /// When set, the whole batch is written only if the lease it names is
    /// still held (see [`Fence`]); otherwise [`StoreError::Fenced`].
    pub fence: Option<Fence>,
}

/// A run that has begun and not ended: the run journal's entry. A deleted
/// job's open runs stay until they end (the run may still be going).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenRun {
    /// Unique per run (a UUID); also given to the run's process as
    /// `KALA_RUN_ID`, so an orphan can be found after a crash.
    pub run_id: String,
    pub job_id: JobId,
    pub trigger: Trigger,
    /// The schedule point, for scheduled runs.
    pub scheduled_at: Option<Timestamp>,
    pub started_at: Timestamp,
    /// The instance that runs it (`--node-id`).
    pub node: String,
    /// Set when the holder of the job's partition wrote the entry for
    /// another instance to run (`run_on`): the holder's name. The target
    /// finds it through the change feed and starts it; absent for an
    /// instance's own runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_by: Option<String>,
}

impl Batch {
    pub fn put(job: Job) -> Batch {
        Batch {
            put: vec![job],
            ..Batch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.put.is_empty()
            && self.delete.is_empty()
            && self.runs.is_empty()
            && self.begin.is_empty()
            && self.end.is_empty()
            && self.update.is_empty()
            && self.notices.is_empty()
            && self.audit.is_empty()
    }

    /// The jobs other instances must re-read after this batch: every job
    /// put or deleted, every job with a definition change, and every job
    /// with a run dispatched to another instance.
    pub fn changed_ids(&self) -> Vec<JobId> {
        let mut ids: Vec<JobId> = self
            .put
            .iter()
            .map(|j| j.id.clone())
            .chain(self.delete.iter().cloned())
            .chain(
                self.update
                    .iter()
                    .filter(|u| u.change.is_definition())
                    .map(|u| u.job_id.clone()),
            )
            // A run dispatched to another instance wakes it.
            .chain(
                self.begin
                    .iter()
                    .filter(|o| o.dispatched_by.is_some())
                    .map(|o| o.job_id.clone()),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The jobs this batch changes in place: updated and not put by it,
    /// sorted, each once. A store reads each, applies
    /// [`Batch::apply_updates`] and writes it back.
    pub fn updated_in_place(&self) -> Vec<&str> {
        let put: std::collections::HashSet<&str> = self.put.iter().map(|j| j.id.as_str()).collect();
        let mut ids: Vec<&str> = self
            .update
            .iter()
            .map(|u| u.job_id.as_str())
            .filter(|id| !put.contains(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Applies this batch's updates of `job` to it, in their order.
    pub fn apply_updates(&self, job: &mut Job) {
        for u in &self.update {
            if u.job_id == job.id {
                u.change.apply(job);
            }
        }
    }

    /// The jobs this batch puts, with its updates of them applied (updates
    /// come after puts).
    pub fn puts_updated(&self) -> Vec<Job> {
        let mut puts = self.put.clone();
        if !self.update.is_empty() {
            puts.iter_mut().for_each(|j| self.apply_updates(j));
        }
        puts
    }
}

/// Which run records to drop in [`JobStore::prune_runs`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Retention {
    /// Keep at most this many per job.
    pub max_per_job: Option<usize>,
    /// Drop records whose `ran_at` is older than this.
    pub max_age: Option<SignedDuration>,
}

/// A claim on one occurrence of one job, held by one instance until
/// `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub job_id: JobId,
    pub scheduled_at: Timestamp,
    pub owner: String,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// A short name for logs and metrics (`redb`, `memory`, `postgres`…).
    fn name(&self) -> &'static str;

    /// Every stored job, in one bulk read.
    async fn load_all(&self) -> Result<Vec<Job>>;

    /// Every stored job in its packed form (`kala_job::packed`), which is
    /// what the engine keeps in memory: a store that keeps jobs packed
    /// hands the bytes over without decoding them (the embedded store).
    /// The default packs [`JobStore::load_all`].
    async fn load_packed(&self) -> Result<Vec<Box<[u8]>>> {
        Ok(self
            .load_all()
            .await?
            .iter()
            .map(|j| kala_job::packed::encode(j).into_boxed_slice())
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>>;

    /// Stores `batch` atomically and durably.
    async fn apply(&self, batch: Batch) -> Result<()>;

    /// The job's run records, oldest first; with `limit`, only the newest
    /// `limit` of them.
    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>>;

    /// Drops run records by count and age, and expired claims. Returns the
    /// number of run records dropped.
    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64>;

    /// Deletes every job, run record, claim, open run and notice (a shared
    /// backend keeps nodes and leases, and appends the change
    /// [`ALL_JOBS`]), and writes `audit` in the same transaction. The
    /// audit log stays.
    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()>;

    /// Audit entries with ids before `before` (every one without it),
    /// newest first, at most `limit`.
    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Drops the audit entries older than `before`; returns how many.
    async fn prune_audit(&self, before: Timestamp) -> Result<u64>;

    /// Every run journaled by [`Batch::begin`] and not yet ended, in no
    /// particular order.
    async fn open_runs(&self) -> Result<Vec<OpenRun>>;

    /// Notices still to deliver ([`NoticeState::is_pending`]), at most
    /// `limit`, the soonest `next_attempt_at` first.
    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>>;

    /// Every stored notice of one job, oldest first.
    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>>;

    /// Drops the notices that are done (not pending) with `done_at`
    /// before `before`; returns how many.
    async fn prune_notices(&self, before: Timestamp) -> Result<u64>;

    /// Takes the claim if nobody holds an unexpired claim on the same
    /// (job, occurrence). `Ok(true)` means this caller may run it.
    async fn claim(&self, claim: Claim) -> Result<bool>;

    /// Flushes and closes; later calls may fail.
    async fn close(&self) -> Result<()>;

    /// The cluster operations, for a backend several instances can share
    /// (see [`Coordination`]). `None` (the default): one instance only.
    fn coordination(&self) -> Option<&dyn Coordination> {
        None
    }

    /// Why writes fail now, if the store knows (a full disk, an I/O
    /// error it is recovering from): what `/healthz` reports. `None`: no
    /// known problem.
    fn problem(&self) -> Option<String> {
        None
    }
}

/// Leaves out the `interrupted` records superseded by the real outcome
/// of the same run (same `run_id`), written later by the instance that
/// ran it once it could reach the store again: the store keeps both, and
/// readers see the run once, as it really ended.
pub fn settle_runs(runs: &mut Vec<RunRecord>) {
    let real: std::collections::HashSet<String> = runs
        .iter()
        .filter(|r| r.outcome != kala_job::Outcome::Interrupted)
        .filter_map(|r| r.run_id.clone())
        .collect();
    if real.is_empty() {
        return;
    }
    runs.retain(|r| {
        r.outcome != kala_job::Outcome::Interrupted
            || r.run_id.as_ref().is_none_or(|id| !real.contains(id))
    });
}

/// Keeps the newest `keep` of `runs` (sorted oldest first).
pub fn trim_oldest<T>(runs: &mut Vec<T>, keep: usize) -> usize {
    let extra = runs.len().saturating_sub(keep);
    runs.drain(..extra);
    extra
}

/// The record codec every JSON-valued backend shares (Redis, PostgreSQL,
/// MySQL, the embedded store): encode a job or run record, decode it with
/// an error that names the key; and for stores that keep bytes of their
/// own (the embedded file) a frame with a version byte and a CRC-32, so
/// that damage is detected and never served as data.
pub mod json {
    use super::{Result, StoreError};

    pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
    }

    pub fn encode_string<T: serde::Serialize>(v: &T) -> Result<String> {
        serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
    }

    pub fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The frame's version byte (JSON never starts with it).
    pub const FRAMED: u8 = 2;

    /// `[FRAMED][CRC-32 of the JSON, little-endian][JSON]`.
    pub fn encode_framed<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
        frame(&encode(v)?)
    }

    /// Frames JSON that is already encoded (migration of older stores).
    pub fn frame(json: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(json.len() + 5);
        out.push(FRAMED);
        out.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
        out.extend_from_slice(json);
        Ok(out)
    }

    /// Checks the frame and decodes; a wrong version, a short value or a
    /// checksum that does not match is [`StoreError::Corrupt`] naming `key`.
    pub fn decode_framed<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
        decode(key, unframe(key, bytes)?)
    }

    /// The JSON inside a frame, checked.
    pub fn unframe<'a>(key: &str, bytes: &'a [u8]) -> Result<&'a [u8]> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        match bytes {
            [FRAMED, a, b, c, d, json @ ..] => {
                if crc32fast::hash(json) == u32::from_le_bytes([*a, *b, *c, *d]) {
                    Ok(json)
                } else {
                    Err(corrupt("checksum mismatch: the stored value was damaged"))
                }
            }
            [] => Err(corrupt("empty value")),
            _ => Err(corrupt("unknown record format")),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_changed_byte_is_detected() {
            let v = serde_json::json!({"name": "x", "n": 1});
            let mut bytes = encode_framed(&v).unwrap();
            assert_eq!(decode_framed::<serde_json::Value>("k", &bytes).unwrap(), v);
            for i in 0..bytes.len() {
                bytes[i] ^= 0x01;
                let r = decode_framed::<serde_json::Value>("k", &bytes);
                assert!(r.is_err(), "byte {i} changed and not detected");
                bytes[i] ^= 0x01;
            }
            assert!(decode_framed::<serde_json::Value>("k", b"{\"a\":1}").is_err());
        }
    }
}

/// A timestamp as whole nanoseconds since 1970 in an `i64` (SQL `BIGINT`),
/// which covers 1677–2262.
pub fn ns_i64(t: Timestamp) -> Result<i64> {
    i64::try_from(t.as_nanosecond())
        .map_err(|_| StoreError::Backend(format!("timestamp {t} is outside 1677-2262")))
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn job(id: &str) -> Job {
        let mut j = Job::new(id, "true");
        j.id = id.to_string();
        j
    }

    fn update(id: &str, change: JobChange) -> JobUpdate {
        JobUpdate {
            job_id: id.to_string(),
            change,
        }
    }

    #[test]
    fn updates_of_put_jobs_change_the_puts_and_the_rest_are_changed_in_place() {
        let batch = Batch {
            put: vec![job("b")],
            update: vec![
                update(
                    "c",
                    JobChange::Disabled {
                        disabled: true,
                        at: jiff::Timestamp::UNIX_EPOCH,
                    },
                ),
                update(
                    "b",
                    JobChange::Disabled {
                        disabled: true,
                        at: jiff::Timestamp::UNIX_EPOCH,
                    },
                ),
                update("a", JobChange::AddChild("x".into())),
                update("c", JobChange::AddChild("y".into())),
            ],
            ..Batch::default()
        };
        assert_eq!(batch.updated_in_place(), ["a", "c"]);
        let puts = batch.puts_updated();
        assert_eq!(puts.len(), 1);
        assert!(puts[0].disabled, "the put of b carries its update");
        assert!(!batch.put[0].disabled, "the batch itself is unchanged");
        let mut c = job("c");
        batch.apply_updates(&mut c);
        assert!(c.disabled);
        assert_eq!(c.dependent_jobs.as_deref(), Some(&["y".to_string()][..]));
        let before = job("z");
        let mut other = before.clone();
        batch.apply_updates(&mut other);
        assert_eq!(other, before, "updates of other jobs leave it alone");
    }
}
