//! What several instances on one database share: membership (nodes and
//! their heartbeats), leases over hash partitions of the job ids with a
//! fencing token, a change sequence of job definitions, and changes to a
//! job applied to the stored job instead of a copy from memory.
//!
//! Owns: [`Coordination`] (the trait a shared backend implements besides
//! [`crate::JobStore`]), [`JobUpdate`]/[`JobChange`]/[`RunDelta`] (applied
//! by [`JobChange::apply`], one function for every backend), [`Fence`],
//! [`partition_of`].
//! Must not: decide who should own what (that is the engine's membership
//! loop); a backend only stores and compares.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Hash partitions of the job ids. Each is leased by one instance at a
/// time; a job runs only on the holder of its partition's lease.
pub const PARTITIONS: u32 = 64;

/// The partition of a job: CRC-32 of its id, modulo [`PARTITIONS`]
/// (stable across builds and machines, unlike std's hasher).
pub fn partition_of(job_id: &str) -> u32 {
    crc32fast::hash(job_id.as_bytes()) % PARTITIONS
}

/// The job id of the change [`crate::JobStore::delete_all`] appends:
/// every job is gone, reload everything.
pub const ALL_JOBS: &str = "*";

/// A change to one stored job, applied inside the batch's transaction to
/// the job as the database holds it (a missing job is left missing). This
/// is how two instances change one job without either overwriting the
/// other's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub job_id: JobId,
    pub change: JobChange,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    /// A run, skip or interruption was recorded.
    Ran(RunDelta),
    /// Disabled (`true`) or enabled, at `at` (the deciding instance's
    /// clock): the stored job keeps its disabled stretch
    /// ([`kala_job::Job::set_disabled`]), from which every instance (the
    /// owner, or one taking the partition over) knows which points fell
    /// while the job was disabled (one catch-up run at the enable) and
    /// which before (each owed a run or a record).
    Disabled { disabled: bool, at: Timestamp },
    /// A recorded run's counters are taken back (saturating): its record
    /// is superseded by a later one of the same run (see
    /// [`crate::settle_runs`]). Times and the schedule point stay.
    Superseded(RunDelta),
    /// A child was created: appended to `dependent_jobs` if absent.
    AddChild(JobId),
    /// These jobs were deleted: removed from `dependent_jobs` and
    /// `parent_jobs`.
    Unlink(Vec<JobId>),
    /// The job's notification targets were replaced.
    Notify(Vec<kala_job::NotifyTarget>),
}

/// What one recorded run adds to its job: counters add, times move
/// forward only (so deltas commute, whatever order they commit in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDelta {
    /// The schedule point it was for: `last_scheduled_at` becomes the
    /// later of the two, and `scheduled_runs` grows by one.
    pub point: Option<Timestamp>,
    pub attempted_at: Option<Timestamp>,
    pub successes: u64,
    pub errors: u64,
    pub finished: u64,
    pub last_success: Option<Timestamp>,
    pub last_error: Option<Timestamp>,
    /// The job's next run as its owner armed it, and whether it is done.
    pub next_run_at: Option<Option<Timestamp>>,
    pub is_done: Option<bool>,
}

fn later(cur: &mut Option<Timestamp>, new: Option<Timestamp>) {
    if let Some(n) = new
        && cur.is_none_or(|c| c < n)
    {
        *cur = Some(n);
    }
}

impl JobChange {
    /// Applies the change to `job` (the stored one).
    pub fn apply(&self, job: &mut Job) {
        match self {
            JobChange::Ran(d) => {
                if d.point.is_some() {
                    job.scheduled_runs += 1;
                }
                later(&mut job.last_scheduled_at, d.point);
                let m = &mut job.metadata;
                later(&mut m.last_attempted_run, d.attempted_at);
                m.success_count += d.successes;
                m.error_count += d.errors;
                m.number_of_finished_runs += d.finished;
                later(&mut m.last_success, d.last_success);
                later(&mut m.last_error, d.last_error);
                if let Some(next) = d.next_run_at {
                    job.next_run_at = next;
                }
                if let Some(done) = d.is_done {
                    job.is_done = done;
                }
            }
            JobChange::Disabled { disabled, at } => job.set_disabled(*disabled, *at),
            JobChange::Superseded(d) => {
                let m = &mut job.metadata;
                m.success_count = m.success_count.saturating_sub(d.successes);
                m.error_count = m.error_count.saturating_sub(d.errors);
                m.number_of_finished_runs = m.number_of_finished_runs.saturating_sub(d.finished);
            }
            JobChange::Notify(targets) => job.notify.clone_from(targets),
            JobChange::AddChild(c) => {
                let kids = job.dependent_jobs.get_or_insert_with(Vec::new);
                if !kids.contains(c) {
                    kids.push(c.clone());
                }
            }
            JobChange::Unlink(gone) => {
                for list in [&mut job.dependent_jobs, &mut job.parent_jobs]
                    .into_iter()
                    .flatten()
                {
                    list.retain(|id| !gone.contains(id));
                }
            }
        }
    }

    /// Whether other instances must hear of it (a definition change); run
    /// deltas are not announced (counters are read from the database).
    pub fn is_definition(&self) -> bool {
        !matches!(self, JobChange::Ran(_) | JobChange::Superseded(_))
    }
}

/// The proof a run's journal entry carries that its writer still holds the
/// lease of the job's partition: the batch fails with
/// [`crate::StoreError::Fenced`] unless the lease is `node`'s, has this
/// `token`, and has not expired at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    pub partition: u32,
    pub node: String,
    pub token: u64,
    pub now: Timestamp,
}

impl Fence {
    /// The fence a run's *record* is written under: the lease must not
    /// have changed hands (owner and token), but its expiry is not
    /// checked (`now` is the epoch). A lease that ran out while nobody
    /// took it over leaves no one who could have recorded the run
    /// `interrupted`: the check holds the lease row (key) until the
    /// batch commits, and the batch ends the journal entry, so a later
    /// takeover finds nothing to interrupt.
    pub fn for_record(self) -> Fence {
        Fence {
            now: Timestamp::UNIX_EPOCH,
            ..self
        }
    }
}

/// One instance as the database knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// Where its API listens (`host:port`), for the cluster page.
    pub address: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    /// It counts as alive until then.
    pub expires_at: Timestamp,
    /// Runs it finished since it started.
    pub runs_done: u64,
    /// Shutting down: it holds no lease and takes none, but its runs in
    /// flight are still its own (not interrupted) until it is gone.
    pub leaving: bool,
    /// The instance's tags (`--tag key=value`): where jobs may be placed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// What it does (`--role`): absent for `both`.
    #[serde(default, skip_serializing_if = "NodeRole::is_both")]
    pub role: NodeRole,
}

/// What an instance of a cluster does (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Holds partitions (schedules) and runs jobs: the default.
    #[default]
    Both,
    /// Takes no partition and schedules nothing: runs only what is
    /// dispatched to it.
    Worker,
    /// Schedules, but runs nothing itself: every point is dispatched to
    /// an instance that runs jobs.
    Scheduler,
}

impl NodeRole {
    pub fn is_both(&self) -> bool {
        *self == NodeRole::Both
    }

    /// It holds partitions.
    pub fn schedules(self) -> bool {
        self != NodeRole::Worker
    }

    /// It runs jobs.
    pub fn executes(self) -> bool {
        self != NodeRole::Scheduler
    }

    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Both => "both",
            NodeRole::Worker => "worker",
            NodeRole::Scheduler => "scheduler",
        }
    }
}

/// The lease of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub partition: u32,
    pub owner: String,
    /// Grows by one whenever the lease changes hands.
    pub token: u64,
    pub expires_at: Timestamp,
}

/// One round of lease keeping by `node`.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub node: String,
    /// Renew these if `node` holds them; take them if free, expired or
    /// already `node`'s.
    pub take: Vec<u32>,
    /// Give these up now (if `node` holds them).
    pub release: Vec<u32>,
    pub now: Timestamp,
    pub ttl: SignedDuration,
}

impl Lease {
    /// Whether `req` may take or renew this lease.
    pub fn takeable(&self, req: &LeaseRequest) -> bool {
        self.owner == req.node || self.expires_at <= req.now
    }
}

/// The operations several instances on one database need besides
/// [`crate::JobStore`]. Backends that can be shared return it from
/// [`crate::JobStore::coordination`]; the embedded store cannot.
///
/// Also expected of such a backend's [`crate::JobStore::apply`]: it
/// applies [`crate::Batch::update`] to the stored jobs, checks
/// [`crate::Batch::fence`], and appends a change (see [`Coordination::changes`])
/// for every job put, deleted, or changed by a definition change.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Registers or refreshes `node` and returns every registered node
    /// (the caller judges liveness by `expires_at`). Nodes gone for more
    /// than an hour are forgotten.
    async fn heartbeat(&self, node: &NodeInfo) -> Result<Vec<NodeInfo>>;

    /// Forgets `node` and frees every lease it holds.
    async fn leave(&self, node: &str) -> Result<()>;

    /// Renews, takes and releases leases as `req` asks, atomically per
    /// partition, and returns every lease after.
    async fn lease(&self, req: LeaseRequest) -> Result<Vec<Lease>>;

    /// Every lease.
    async fn leases(&self) -> Result<Vec<Lease>>;

    /// Changes after sequence number `after`, oldest first, at most
    /// `limit`: `(sequence, job id)`. Sequence numbers grow but may have
    /// gaps (a transaction that rolled back) and may appear out of order
    /// for a moment (a transaction that commits late).
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<(u64, JobId)>>;

    /// The newest change's sequence number (0 when none): where a
    /// follower that just loaded everything starts.
    async fn last_change(&self) -> Result<u64>;

    /// Drops changes older than `before`.
    async fn prune_changes(&self, before: Timestamp) -> Result<()>;

    /// The jobs with these ids that exist, in one or a few reads.
    async fn get_many(&self, ids: &[JobId]) -> Result<Vec<Job>>;

    /// Whether a sequence number can only become visible after every
    /// smaller one (the numbers are given in commit order: Redis, Consul,
    /// the memory store). `false` (SQL sequences): a smaller number may
    /// appear late, and followers re-read across gaps for a while.
    fn commit_ordered(&self) -> bool {
        false
    }

    /// Woken when another instance may have committed a change (the
    /// database's own notification: PostgreSQL `LISTEN`). `None`: the
    /// follower polls.
    fn change_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_commute_and_links_change_in_place() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let a = JobChange::Ran(RunDelta {
            point: Some(t(20)),
            attempted_at: Some(t(21)),
            successes: 1,
            finished: 1,
            last_success: Some(t(22)),
            ..RunDelta::default()
        });
        let b = JobChange::Ran(RunDelta {
            point: Some(t(10)),
            attempted_at: Some(t(11)),
            errors: 2,
            finished: 1,
            last_error: Some(t(12)),
            ..RunDelta::default()
        });
        let mut x = Job::new("x", "true");
        let mut y = x.clone();
        a.apply(&mut x);
        b.apply(&mut x);
        b.apply(&mut y);
        a.apply(&mut y);
        assert_eq!(x, y);
        assert_eq!(x.last_scheduled_at, Some(t(20)));
        assert_eq!(x.scheduled_runs, 2);
        assert_eq!(x.metadata.success_count, 1);
        assert_eq!(x.metadata.error_count, 2);
        assert_eq!(x.metadata.last_attempted_run, Some(t(21)));
        JobChange::AddChild("c".into()).apply(&mut x);
        JobChange::AddChild("c".into()).apply(&mut x);
        assert_eq!(x.dependent_jobs, Some(vec!["c".to_string()]));
        x.parent_jobs = Some(vec!["p".into(), "q".into()]);
        JobChange::Unlink(vec!["c".into(), "p".into()]).apply(&mut x);
        assert_eq!(x.dependent_jobs, Some(vec![]));
        assert_eq!(x.parent_jobs, Some(vec!["q".to_string()]));
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("abc"), crc32fast::hash(b"abc") % PARTITIONS);
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            seen.insert(partition_of(&format!("job-{i}")));
        }
        assert_eq!(seen.len(), PARTITIONS as usize);
    }
}
