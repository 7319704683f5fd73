//! Shared state: the jobs in memory, the timer's queue, and the locks that
//! order writes.
//!
//! Owns: [`Inner`] (everything an engine handle points at), [`State`] (the
//! jobs and the queue behind one std mutex) and [`Due`].
//! Must not: decide when anything runs (that is `timer`), run anything
//! (`runner`), or talk to the store (`record`, `facade`, `startup`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use kala_executor::Executor;
use kala_job::{Job, JobError, JobId};
use kala_store::JobStore;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};

use crate::clock::Clock;
use crate::config::{EngineConfig, EngineError, Event};
use crate::jobs::{Idx, Jobs};
use crate::metrics::Metrics;

/// Job ids are made by the server (UUIDs), so a fast, randomly seeded
/// hasher is safe here; SipHash was ~6 % of start-up with 1M jobs.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Stripes of the per-job write lock.
pub(crate) const STRIPES: usize = 1024;

/// A job's next scheduled run: when the timer fires it, and the point of
/// the schedule it stands for. They differ only for a caught-up run (fired
/// now for a point that was missed while the engine was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub fire_at: Timestamp,
    pub point: Timestamp,
}

/// Everything behind the engine's std mutex. Each critical section is a
/// few map or queue operations (O(1) or O(log n)) and is never held across
/// an await, so a std mutex is cheaper than tokio's here.
#[derive(Default)]
pub(crate) struct State {
    /// Every job, packed, with its timer entry when it has one.
    pub jobs: Jobs,
    /// The timer's queue, ordered by fire time: (fire at, job's slab
    /// index).
    pub queue: BTreeSet<(Timestamp, Idx)>,
    /// Runs in progress per job (for `overlap: skip`).
    pub running: FastMap<JobId, u32>,
    /// The schedule point of each queued caught-up run (fired now for a
    /// point missed while the engine was down or the job disabled); every
    /// other queued run stands for its fire time. A side map because it
    /// is rare: a point in every slot would cost 16 bytes per job.
    pub caught_up: FastMap<Idx, Timestamp>,
    /// Stored jobs whose timing did not parse at load, with why: never
    /// scheduled, and every run asked of them fails with this error.
    pub invalid: FastMap<JobId, Arc<JobError>>,
    /// One-off jobs whose run this process started (or is starting):
    /// each is started once. A run that could not start (fenced) takes
    /// its job out again, for whoever holds its partition next.
    pub once_started: std::collections::HashSet<JobId>,
}

impl State {
    /// Replaces `id`'s queue entry with `due` (or removes it), and shows
    /// it as the job's `next_run_at`. Returns whether the earliest entry
    /// moved earlier, i.e. the timer must wake.
    pub fn arm(&mut self, id: &str, due: Option<Due>) -> bool {
        self.disarm(id);
        let Some(idx) = self.jobs.find(id) else {
            return false;
        };
        let fire_at = due.map(|d| d.fire_at);
        if let Some(slot) = self.jobs.at_mut(idx) {
            slot.fire_at = fire_at;
        }
        if let Some(mut job) = self.jobs.get_at(idx)
            && job.next_run_at != fire_at
        {
            job.next_run_at = fire_at;
            self.jobs.put(&job);
        }
        let Some(due) = due else { return false };
        self.enqueue(idx, due)
    }

    /// The queued run of the job at slab index `idx`, if it has one.
    pub fn due_at(&self, idx: Idx) -> Option<Due> {
        let fire_at = self.jobs.at(idx)?.fire_at?;
        let point = self.caught_up.get(&idx).copied().unwrap_or(fire_at);
        Some(Due { fire_at, point })
    }

    /// Puts a queue entry in (and the caught-up point, if it is one);
    /// whether it is now the earliest.
    fn enqueue(&mut self, idx: Idx, due: Due) -> bool {
        if due.point != due.fire_at {
            self.caught_up.insert(idx, due.point);
        }
        let earliest = self.queue.first().map(|(t, _)| *t);
        self.queue.insert((due.fire_at, idx));
        earliest.is_none_or(|e| due.fire_at < e)
    }

    /// Adds (or replaces) a job as it is (the caller has set its
    /// `next_run_at`), queueing its due run if it has one. Returns whether
    /// the timer must wake (see [`State::arm`]).
    pub fn insert(&mut self, job: Job, due: Option<Due>) -> bool {
        self.disarm(&job.id);
        let idx = self.jobs.put(&job);
        if let Some(slot) = self.jobs.at_mut(idx) {
            slot.fire_at = due.map(|d| d.fire_at);
        }
        due.is_some_and(|due| self.enqueue(idx, due))
    }

    /// Forgets a job: its slot, queue entry and any load error.
    pub fn remove(&mut self, id: &str) {
        self.disarm(id);
        self.jobs.remove(id);
        self.invalid.remove(id);
    }

    /// Takes `id` out of the queue (its `next_run_at` is left as it was).
    pub fn disarm(&mut self, id: &str) {
        if let Some(idx) = self.jobs.find(id) {
            self.disarm_at(idx);
        }
    }

    /// [`State::disarm`] of the job at slab index `idx`.
    pub fn disarm_at(&mut self, idx: Idx) {
        if let Some(fire_at) = self.jobs.at_mut(idx).and_then(|s| s.fire_at.take()) {
            self.caught_up.remove(&idx);
            self.queue.remove(&(fire_at, idx));
        }
    }

    /// Stores `job` (its `next_run_at` already set to `due`'s fire time)
    /// at slab index `idx`, which the caller has disarmed, and queues
    /// `due`: the timer's path, one pack and no lookup. Returns whether
    /// the timer must wake (see [`State::arm`]).
    pub fn rearm_at(&mut self, idx: Idx, job: &Job, due: Option<Due>) -> bool {
        let Some(slot) = self.jobs.at_mut(idx) else {
            return false;
        };
        slot.set(job);
        slot.fire_at = due.map(|d| d.fire_at);
        due.is_some_and(|due| self.enqueue(idx, due))
    }

    /// `id`'s job (a decoded copy).
    pub fn job(&self, id: &str) -> Option<Job> {
        self.jobs.get(id)
    }

    /// Changes `id`'s job in memory; `None` if there is no such job.
    pub fn update<R>(&mut self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.jobs.update(id, f)
    }

    pub fn running_start(&mut self, id: &str) {
        *self.running.entry(id.to_string()).or_default() += 1;
    }

    pub fn running_end(&mut self, id: &str) {
        if let Some(n) = self.running.get_mut(id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(id);
            }
        }
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.running.get(id).copied().unwrap_or(0) > 0
    }
}

/// What every engine handle shares.
pub(crate) struct Inner {
    /// The source of truth; memory is a cache of it. Written before a
    /// caller is told a change happened.
    pub store: Arc<dyn JobStore>,
    pub executor: Executor,
    /// Injected time: every "now" and every sleep of the engine.
    pub clock: Arc<dyn Clock>,
    pub config: EngineConfig,
    /// Jobs and queue (std mutex: short sections, never across an await).
    pub state: Mutex<State>,
    /// Wakes the timer when an earlier entry arrives or on shutdown.
    pub wake: Notify,
    /// The worker pool: one permit per executing run.
    pub workers: Arc<Semaphore>,
    /// Per-job write order (tokio mutexes: held across the store write so
    /// an older snapshot of a job can never overwrite a newer one).
    pub stripes: Vec<tokio::sync::Mutex<()>>,
    /// Serialises changes to the dependency graph (create with parents,
    /// delete); held across the store write for the same reason.
    pub graph: tokio::sync::Mutex<()>,
    pub events: broadcast::Sender<Event>,
    pub shutdown: watch::Sender<bool>,
    /// The timer task, taken and awaited by shutdown.
    pub timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The cluster's membership loop and change follower, stopped by
    /// shutdown before the hand-over (so no lease round runs beside it).
    pub cluster_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub metrics: Metrics,
    /// The notification deliverer's memory.
    pub outbox: crate::outbox::memory::Outbox,
    /// Run records waiting to be written (the store refused them).
    pub late: crate::late::queue::Late,
    /// Set when this engine is one instance of a cluster (the store
    /// offers coordination and `config.cluster`): which partitions it
    /// holds. `None`: it runs every job.
    pub cluster: Option<crate::cluster::model::Cluster>,
    /// `--audit-log`: committed audit entries as JSON lines.
    pub audit_sink: crate::audit::model::Sink,
}

fn stripe_of(id: &str) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

impl Inner {
    pub fn new(
        store: Arc<dyn JobStore>,
        executor: Executor,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        audit_sink: crate::audit::model::Sink,
    ) -> Inner {
        let (events, _) = broadcast::channel(4096);
        let (shutdown, _) = watch::channel(false);
        let cluster = (config.cluster && store.coordination().is_some())
            .then(|| crate::cluster::model::Cluster::new(clock.now()));
        Inner {
            cluster,
            store,
            executor,
            clock,
            workers: Arc::new(Semaphore::new(config.max_concurrent_runs.max(1))),
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            graph: tokio::sync::Mutex::new(()),
            events,
            shutdown,
            timer: Mutex::new(None),
            cluster_tasks: Mutex::new(Vec::new()),
            metrics: Metrics::default(),
            outbox: crate::outbox::memory::Outbox::default(),
            late: crate::late::queue::Late::default(),
            audit_sink,
        }
    }

    /// The state lock. A panic elsewhere while it was held leaves the maps
    /// consistent (every section is a few infallible operations), so a
    /// poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        self.workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// Locks the stripes of `ids` in index order (so two callers cannot
    /// deadlock).
    pub async fn lock_stripes(&self, ids: &[&str]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = ids.iter().map(|id| stripe_of(id)).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            guards.push(self.stripes[i].lock().await);
        }
        guards
    }

    /// Every stripe, in order (a reload of every job).
    pub async fn lock_all_stripes(&self) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut guards = Vec::with_capacity(self.stripes.len());
        for s in &self.stripes {
            guards.push(s.lock().await);
        }
        guards
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
