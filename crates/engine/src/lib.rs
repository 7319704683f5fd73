//! # kala-engine
//!
//! The scheduler: decides when each job runs, runs it through the
//! executor, retries it, chains its dependents, and records what happened —
//! embeddable in any tokio service.
//!
//! Shape (after mini-redis's purge task): **one timer task** over an
//! ordered queue of `(fire at, job id)`; it sleeps until the earliest entry
//! and is woken early when an earlier entry arrives. Due runs execute on a
//! **bounded worker pool** (a semaphore), so a burst of due jobs cannot
//! exhaust processes or sockets. Insert, remove and next-due are O(log n).
//!
//! State: the engine owns the in-memory map of jobs (a cache of the store)
//! and the queue. Every change a caller is told about (create, delete,
//! enable, disable, a finished run) is written to the store first; writes
//! of one job are serialised by a striped lock so an older snapshot can
//! never overwrite a newer one.

pub mod clock;
mod metrics;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kala_executor::{Executor, HandlerResult};
use kala_job::graph::{plan_create, plan_delete};
use kala_job::wire::AppStats;
use kala_job::{Job, JobError, JobId, Outcome, RunRecord, Trigger};
use kala_store::{Batch, Claim, JobStore, Retention, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};

pub use clock::{Clock, FakeClock, SystemClock};
pub use metrics::{LATENESS_BUCKETS, Metrics, MetricsSnapshot};

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
    /// This instance's name in run claims.
    pub instance_id: String,
    /// Claim each scheduled occurrence in the store before running it, so
    /// that several instances on one database run it once.
    pub claim_runs: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_runs: 256,
            keep_runs: Some(1000),
            run_ttl: None,
            missed_runs: MissedRuns::CatchUpOnce,
            max_retry_delay: SignedDuration::from_hours(1),
            instance_id: format!("kala-{}", std::process::id()),
            claim_runs: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("job {0} does not exist")]
    NotFound(JobId),
    #[error(transparent)]
    Invalid(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

const STRIPES: usize = 1024;

/// Job ids are made by the server (UUIDs), so a fast, randomly seeded
/// hasher is safe here; SipHash was ~6 % of start-up with 1M jobs.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One job in memory. The job is shared, so readers (GET, the list) take a
/// reference count instead of a deep copy; writers use `Arc::make_mut`.
/// `armed` (fire at, the schedule point it stands for) mirrors the job's
/// entry in the queue; keeping it here saves a second map and a copy of
/// the id per job.
struct Slot {
    job: Arc<Job>,
    armed: Option<(Timestamp, Timestamp)>,
}

impl Slot {
    fn new(job: Job) -> Slot {
        Slot {
            job: Arc::new(job),
            armed: None,
        }
    }
}

#[derive(Default)]
struct State {
    /// Every job, with its timer entry when it has one.
    jobs: FastMap<JobId, Slot>,
    /// (fire at, job): the timer's queue.
    queue: BTreeSet<(Timestamp, JobId)>,
    running: FastMap<JobId, u32>,
}

struct Inner {
    store: Arc<dyn JobStore>,
    executor: Executor,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    state: Mutex<State>,
    wake: Notify,
    workers: Arc<Semaphore>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    graph: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Event>,
    shutdown: watch::Sender<bool>,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Metrics,
}

/// The scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Engine {
    /// Loads every job from `store`, schedules them (missed runs per
    /// `config.missed_runs`), and starts the timer.
    pub async fn start(
        store: Arc<dyn JobStore>,
        executor: Executor,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let load_started = std::time::Instant::now();
        let jobs = store.load_all().await?;
        let loaded_in = load_started.elapsed();
        let (events, _) = broadcast::channel(4096);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
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
            metrics: Metrics::default(),
        });
        let engine = Engine { inner };
        let mut pending_once = Vec::new();
        let arm_started = std::time::Instant::now();
        let count = jobs.len();
        {
            // Bulk start-up: nothing is armed yet and the timer is not
            // running, so the queue is built in one sorted pass instead of
            // a million O(log n) inserts.
            let now = engine.inner.clock.now();
            let mut st = engine.inner.lock();
            st.jobs.reserve(count);
            let mut queue = Vec::with_capacity(count);
            for mut job in jobs {
                if job_is_pending_once(&job) {
                    pending_once.push(job.id.clone());
                }
                let armed = engine.inner.next_arm(&job, now, true);
                if let Some((fire, _)) = armed {
                    job.next_run_at = Some(fire);
                    queue.push((fire, job.id.clone()));
                }
                let id = job.id.clone();
                st.jobs.insert(
                    id,
                    Slot {
                        job: Arc::new(job),
                        armed,
                    },
                );
            }
            queue.sort_unstable();
            st.queue = queue.into_iter().collect();
        }
        tracing::info!(
            jobs = count,
            load_ms = loaded_in.as_millis() as u64,
            schedule_ms = arm_started.elapsed().as_millis() as u64,
            "engine started"
        );
        for id in pending_once {
            engine.spawn_run(id, Trigger::Once);
        }
        let timer = engine.inner.clone();
        let handle = tokio::spawn(async move { timer.timer_loop().await });
        if let Ok(mut t) = engine.inner.timer.lock() {
            *t = Some(handle);
        }
        if engine.inner.config.run_ttl.is_some() {
            let e = engine.clone();
            tokio::spawn(async move { e.maintenance_loop().await });
        }
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Registers an in-process handler; jobs of type `InProcess` whose
    /// command is `name` run it.
    pub fn register_handler<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.inner.executor.register(name, handler);
    }

    /// Run started/finished events. A slow receiver misses events
    /// (`RecvError::Lagged`) rather than slowing the engine.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Validates, stores and schedules a new job. A job without a schedule
    /// (and without parents) runs once, now, in the background.
    pub async fn create(&self, mut job: Job) -> Result<JobId, EngineError> {
        self.check_running()?;
        let inner = &self.inner;
        let now = inner.clock.now();
        job.validate(Some(now))?;
        job.created_at = now;
        let id = job.id.clone();
        let needs_graph = job.is_child() || !job.on_failure_job.is_empty();
        let _graph = if needs_graph {
            Some(inner.graph.lock().await)
        } else {
            None
        };
        let plan = {
            let st = inner.lock();
            plan_create(job, |pid| st.jobs.get(pid).map(|s| Job::clone(&s.job)))?
        };
        let mut job = plan.job;
        // The first run, so that the stored job shows it.
        if let Some((fire, _)) = inner.next_arm(&job, now, false) {
            job.next_run_at = Some(fire);
        }
        let mut ids: Vec<&str> = plan.updated_parents.iter().map(|p| p.id.as_str()).collect();
        ids.push(&id);
        let _stripes = inner.lock_stripes(&ids).await;
        let mut put = plan.updated_parents.clone();
        put.push(job.clone());
        inner
            .store
            .apply(Batch {
                put,
                ..Batch::default()
            })
            .await?;
        let run_now = job_is_pending_once(&job);
        {
            let mut st = inner.lock();
            for p in &plan.updated_parents {
                if let Some(cur) = st.jobs.get_mut(&p.id).map(|s| Arc::make_mut(&mut s.job)) {
                    cur.dependent_jobs = p.dependent_jobs.clone();
                }
            }
            st.jobs.insert(id.clone(), Slot::new(job));
            inner.arm_from_state(&mut st, &id, now, false);
        }
        if run_now {
            self.spawn_run(id.clone(), Trigger::Once);
        }
        Ok(id)
    }

    /// The job as it is now (a shared snapshot: later changes make a new
    /// copy and leave this one as it was).
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.inner.lock().jobs.get(id).map(|s| s.job.clone())
    }

    /// Every job (a snapshot).
    pub fn list(&self) -> Vec<Arc<Job>> {
        self.inner
            .lock()
            .jobs
            .values()
            .map(|s| s.job.clone())
            .collect()
    }

    /// Up to `limit` jobs with ids after `after`, in id order.
    pub fn list_page(&self, after: Option<&str>, limit: usize) -> Vec<Arc<Job>> {
        let st = self.inner.lock();
        let mut ids: Vec<&JobId> = st
            .jobs
            .keys()
            .filter(|id| after.is_none_or(|a| id.as_str() > a))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .take(limit)
            .filter_map(|id| st.jobs.get(id).map(|s| s.job.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes a job: unlinks it from its parents and deletes each child
    /// left without a parent, in one atomic write.
    pub async fn delete(&self, id: &str) -> Result<(), EngineError> {
        let inner = &self.inner;
        let _graph = inner.graph.lock().await;
        let plan = {
            let st = inner.lock();
            plan_delete(id, |x| st.jobs.get(x).map(|s| Job::clone(&s.job)))
                .ok_or_else(|| EngineError::NotFound(id.to_string()))?
        };
        let ids: Vec<&str> = plan
            .deleted
            .iter()
            .map(String::as_str)
            .chain(plan.updated.iter().map(|j| j.id.as_str()))
            .collect();
        let _stripes = inner.lock_stripes(&ids).await;
        inner
            .store
            .apply(Batch {
                put: plan.updated.clone(),
                delete: plan.deleted.clone(),
                ..Batch::default()
            })
            .await?;
        let mut st = inner.lock();
        for d in &plan.deleted {
            Inner::disarm(&mut st, d);
            st.jobs.remove(d);
        }
        for u in &plan.updated {
            if let Some(cur) = st.jobs.get_mut(&u.id).map(|s| Arc::make_mut(&mut s.job)) {
                cur.dependent_jobs = u.dependent_jobs.clone();
                cur.parent_jobs = u.parent_jobs.clone();
            }
        }
        Ok(())
    }

    /// Deletes every job and run record.
    pub async fn delete_all(&self) -> Result<(), EngineError> {
        let inner = &self.inner;
        let _graph = inner.graph.lock().await;
        let mut guards = Vec::with_capacity(STRIPES);
        for s in &inner.stripes {
            guards.push(s.lock().await);
        }
        inner.store.delete_all().await?;
        let mut st = inner.lock();
        st.jobs.clear();
        st.queue.clear();
        Ok(())
    }

    /// Disables a job: its pending run is cancelled; nothing else happens.
    pub async fn disable(&self, id: &str) -> Result<(), EngineError> {
        self.set_disabled(id, true).await
    }

    /// Enables a job: it is scheduled again (an overdue run is caught up
    /// once, or skipped with `resume_at_next_scheduled_time`); a one-off
    /// that never ran runs now.
    pub async fn enable(&self, id: &str) -> Result<(), EngineError> {
        self.set_disabled(id, false).await
    }

    async fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        let _stripe = inner.lock_stripes(&[id]).await;
        let mut job = inner
            .lock()
            .jobs
            .get(id)
            .map(|s| Job::clone(&s.job))
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if job.disabled == disabled {
            return Ok(());
        }
        job.disabled = disabled;
        inner.store.apply(Batch::put(job.clone())).await?;
        let now = inner.clock.now();
        let run_once = {
            let mut st = inner.lock();
            let Some(cur) = st.jobs.get_mut(id).map(|s| Arc::make_mut(&mut s.job)) else {
                return Err(EngineError::NotFound(id.to_string()));
            };
            cur.disabled = disabled;
            let once = !disabled && job_is_pending_once(cur);
            if disabled {
                Inner::disarm(&mut st, id);
            } else {
                inner.arm_from_state(&mut st, id, now, true);
            }
            once
        };
        if run_once {
            self.spawn_run(id.to_string(), Trigger::Once);
        }
        Ok(())
    }

    /// Runs a job now and waits for the run (retries, children and the
    /// on-failure job included), like Kala. The schedule is unchanged. A
    /// disabled job runs nothing: `Ok(None)`.
    pub async fn run_now(&self, id: &str) -> Result<Option<RunRecord>, EngineError> {
        self.check_running()?;
        let disabled = self
            .inner
            .lock()
            .jobs
            .get(id)
            .map(|s| s.job.disabled)
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if disabled {
            return Ok(None);
        }
        let _permit = self.inner.permit().await?;
        Ok(self
            .inner
            .clone()
            .run_pipeline(id.to_string(), Trigger::Manual, None, Vec::new())
            .await)
    }

    /// The job's run records, oldest first (`limit`: only the newest).
    pub async fn runs(
        &self,
        id: &str,
        limit: Option<usize>,
    ) -> Result<Vec<RunRecord>, EngineError> {
        if !self.inner.lock().jobs.contains_key(id) {
            return Err(EngineError::NotFound(id.to_string()));
        }
        Ok(self.inner.store.runs(id, limit).await?)
    }

    /// Kala's app-level stats. `next_run_at` is the earliest pending run of
    /// an enabled job (never the zero time while one exists).
    pub fn app_stats(&self) -> AppStats {
        let st = self.inner.lock();
        let mut s = AppStats {
            created: Some(self.inner.clock.now()),
            next_run_at: st.queue.first().map(|(at, _)| *at),
            ..AppStats::default()
        };
        for j in st.jobs.values().map(|s| &s.job) {
            s.jobs += 1;
            if j.disabled {
                s.disabled_jobs += 1;
            } else {
                s.active_jobs += 1;
            }
            s.error_count += j.metadata.error_count;
            s.success_count += j.metadata.success_count;
            if j.metadata.last_attempted_run > s.last_attempted_run {
                s.last_attempted_run = j.metadata.last_attempted_run;
            }
        }
        s
    }

    /// Jobs waiting in the timer queue.
    pub fn scheduled_count(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Runs executing now.
    pub fn running_count(&self) -> usize {
        self.inner.config.max_concurrent_runs.max(1) - self.inner.workers.available_permits()
    }

    /// Stops the timer and waits up to `grace` for running jobs to finish.
    /// Returns whether they all finished. Runs still waiting for a worker
    /// are dropped; the engine accepts no new work afterwards.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.shutdown.send_replace(true);
        self.inner.wake.notify_one();
        let timer = self.inner.timer.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = timer {
            let _ = t.await;
        }
        let all = u32::try_from(self.inner.config.max_concurrent_runs.max(1)).unwrap_or(u32::MAX);
        let done = tokio::time::timeout(grace, self.inner.workers.acquire_many(all)).await;
        self.inner.workers.close();
        matches!(done, Ok(Ok(_)))
    }

    fn check_running(&self) -> Result<(), EngineError> {
        if *self.inner.shutdown.borrow() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(())
    }

    fn spawn_run(&self, id: JobId, trigger: Trigger) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Ok(_permit) = inner.permit().await else {
                return;
            };
            inner.run_pipeline(id, trigger, None, Vec::new()).await;
        });
    }

    async fn maintenance_loop(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.changed() => return,
            }
            let retention = Retention {
                max_per_job: self.inner.config.keep_runs,
                max_age: self.inner.config.run_ttl,
            };
            if let Err(e) = self
                .inner
                .store
                .prune_runs(retention, Timestamp::now())
                .await
            {
                tracing::warn!(error = %e, "pruning run records failed");
            }
        }
    }
}

/// A one-off job (no schedule, no parents) that has not run yet.
fn job_is_pending_once(job: &Job) -> bool {
    job.schedule.is_empty()
        && !job.is_child()
        && !job.disabled
        && !job.is_done
        && job.metadata.last_attempted_run.is_none()
}

fn stripe_of(id: &str) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        self.workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    async fn lock_stripes(&self, ids: &[&str]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = ids.iter().map(|id| stripe_of(id)).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            guards.push(self.stripes[i].lock().await);
        }
        guards
    }

    /// When a job's next scheduled run is, from its state: (fire at, the
    /// schedule point). `catch_up`: overdue points run once now (restart,
    /// enable); otherwise the point is taken as it is.
    fn next_arm(
        &self,
        job: &Job,
        now: Timestamp,
        catch_up: bool,
    ) -> Option<(Timestamp, Timestamp)> {
        if job.disabled || job.is_child() || job.schedule.is_empty() {
            return None;
        }
        let schedule = match job.parsed_schedule() {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "stored job has an unparsable schedule; not scheduled");
                return None;
            }
        };
        let candidate = match (job.last_scheduled_at, schedule.start()) {
            (Some(last), _) => schedule.next_after(last),
            (None, Some(start)) => Some(start),
            (None, None) => schedule.next_after(job.created_at),
        }?;
        if candidate >= now || !catch_up {
            return Some((candidate, candidate));
        }
        if job.resume_at_next_scheduled_time || self.config.missed_runs == MissedRuns::Skip {
            let next = schedule.next_after(now)?;
            return Some((next, next));
        }
        let missed = schedule
            .latest_at_or_before(now)
            .unwrap_or(candidate)
            .max(candidate);
        Some((now, missed))
    }

    /// (Re)arms `id` from its current state.
    fn arm_from_state(&self, st: &mut State, id: &str, now: Timestamp, catch_up: bool) {
        let Some(job) = st.jobs.get(id).map(|s| &s.job) else {
            return;
        };
        match self.next_arm(job, now, catch_up) {
            Some((fire, point)) => {
                if let Some(j) = st.jobs.get_mut(id).map(|s| Arc::make_mut(&mut s.job)) {
                    j.next_run_at = Some(fire);
                }
                self.arm(st, id, fire, point);
            }
            None => Inner::disarm(st, id),
        }
    }

    fn arm(&self, st: &mut State, id: &str, fire: Timestamp, point: Timestamp) {
        Inner::disarm(st, id);
        let Some(slot) = st.jobs.get_mut(id) else {
            return;
        };
        slot.armed = Some((fire, point));
        let earliest = st.queue.first().map(|(t, _)| *t);
        st.queue.insert((fire, id.to_string()));
        if earliest.is_none_or(|e| fire < e) {
            self.wake.notify_one();
        }
    }

    fn disarm(st: &mut State, id: &str) {
        if let Some((fire, _)) = st.jobs.get_mut(id).and_then(|s| s.armed.take()) {
            st.queue.remove(&(fire, id.to_string()));
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let next = self.lock().queue.first().cloned();
            match next {
                None => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Some((at, id)) if at <= self.clock.now() => {
                    let permit = tokio::select! {
                        p = self.workers.clone().acquire_owned() => p,
                        _ = shutdown.changed() => continue,
                    };
                    let Ok(permit) = permit else { return };
                    if let Some((job, point)) = self.take_due(&id, at) {
                        let inner = self.clone();
                        tokio::spawn(async move {
                            inner.run_scheduled(job, point).await;
                            drop(permit);
                        });
                    }
                }
                Some((at, _)) => {
                    let sleep = self.clock.sleep_until(at);
                    tokio::select! {
                        _ = sleep => {}
                        _ = self.wake.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Pops a due entry and arms the job's following point right away (so
    /// a long run does not delay the schedule; see `overlap`).
    fn take_due(&self, id: &str, at: Timestamp) -> Option<(Job, Timestamp)> {
        let mut st = self.lock();
        let (fire, point) = st.jobs.get(id)?.armed?;
        if fire != at {
            return None;
        }
        Inner::disarm(&mut st, id);
        let job = st.jobs.get_mut(id).map(|s| Arc::make_mut(&mut s.job))?;
        if job.disabled {
            return None;
        }
        job.scheduled_runs += 1;
        job.last_scheduled_at = Some(point);
        let snapshot = job.clone();
        let now = self.clock.now();
        match self.next_arm(&snapshot, now, false) {
            Some((fire, point)) => {
                if let Some(j) = st.jobs.get_mut(id).map(|s| Arc::make_mut(&mut s.job)) {
                    j.next_run_at = Some(fire);
                }
                self.arm(&mut st, id, fire, point);
            }
            None => {
                if let Some(j) = st.jobs.get_mut(id).map(|s| Arc::make_mut(&mut s.job)) {
                    j.next_run_at = None;
                }
            }
        }
        Some((snapshot, point))
    }

    async fn run_scheduled(self: Arc<Self>, job: Job, point: Timestamp) {
        let now = self.clock.now();
        let late = now.duration_since(point);
        self.metrics.observe_lateness(late);
        if let Ok(Some(eps)) = job.epsilon_duration()
            && late > eps
        {
            let why = format!(
                "skipped: started {late:#} after its scheduled time {point}, later than epsilon {}",
                job.epsilon
            );
            self.record_skip(&job.id, point, why).await;
            return;
        }
        if job.overlap == kala_job::Overlap::Skip
            && self.lock().running.get(&job.id).copied().unwrap_or(0) > 0
        {
            self.record_skip(
                &job.id,
                point,
                "skipped: the previous run is still going (overlap: skip)".into(),
            )
            .await;
            return;
        }
        if self.config.claim_runs {
            let claim = Claim {
                job_id: job.id.clone(),
                scheduled_at: point,
                owner: self.config.instance_id.clone(),
                expires_at: now + SignedDuration::from_hours(24),
            };
            match self.store.claim(claim).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "cannot claim run; not running it");
                    return;
                }
            }
        }
        self.run_pipeline(job.id.clone(), Trigger::Schedule, Some(point), Vec::new())
            .await;
    }

    async fn record_skip(&self, id: &str, point: Timestamp, why: String) {
        self.metrics.count(Outcome::Skipped);
        let record = RunRecord {
            job_id: id.to_string(),
            ran_at: self.clock.now(),
            scheduled_at: Some(point),
            trigger: Trigger::Schedule,
            outcome: Outcome::Skipped,
            number_of_retries: 0,
            execution_duration: 0,
            exit_code: None,
            error: Some(why),
            output: String::new(),
        };
        self.persist_run(id, record, |_| {}).await;
    }

    /// One run of `id` with its retries; then its children (after a
    /// success) or its on-failure job (after a failure). `chain` holds the
    /// jobs already running in this chain, so cycles stop.
    fn run_pipeline(
        self: Arc<Self>,
        id: JobId,
        trigger: Trigger,
        point: Option<Timestamp>,
        chain: Vec<JobId>,
    ) -> BoxFut<'static, Option<RunRecord>> {
        Box::pin(async move {
            let job = {
                let mut st = self.lock();
                let job = st
                    .jobs
                    .get(&id)
                    .map(|s| s.job.clone())
                    .filter(|j| !j.disabled)?;
                *st.running.entry(id.clone()).or_default() += 1;
                job
            };
            let ran_at = self.clock.now();
            let _ = self.events.send(Event::RunStarted {
                job_id: id.clone(),
                trigger,
                at: ran_at,
                scheduled_at: point,
            });
            let timeout = job
                .timeout_duration()
                .ok()
                .flatten()
                .and_then(|d| Duration::try_from(d).ok());
            let epsilon = job.epsilon_duration().ok().flatten();
            let base_delay = job.retry_delay_duration().ok().flatten();
            let started = std::time::Instant::now();
            let mut retries_used = 0u64;
            let mut failures = 0u64;
            let mut last_error_at = None;
            let attempt = loop {
                let attempt = self.executor.run(&job, timeout).await;
                if attempt.success {
                    break attempt;
                }
                failures += 1;
                let now = self.clock.now();
                last_error_at = Some(now);
                if retries_used >= job.retries {
                    break attempt;
                }
                if let Some(eps) = epsilon
                    && now.duration_since(point.unwrap_or(ran_at)) > eps
                {
                    break attempt;
                }
                if let Some(base) = base_delay {
                    let factor = 1i32
                        .checked_shl(u32::try_from(retries_used.min(30)).unwrap_or(30))
                        .unwrap_or(i32::MAX);
                    let delay = base
                        .checked_mul(factor)
                        .unwrap_or(self.config.max_retry_delay)
                        .min(self.config.max_retry_delay);
                    if !delay.is_zero() {
                        self.clock.sleep_until(now + delay).await;
                    }
                }
                retries_used += 1;
            };
            {
                let mut st = self.lock();
                if let Some(n) = st.running.get_mut(&id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        st.running.remove(&id);
                    }
                }
            }
            let finished = self.clock.now();
            let success = attempt.success;
            let outcome = if success {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
            self.metrics.count(outcome);
            let record = RunRecord {
                job_id: id.clone(),
                ran_at,
                scheduled_at: point,
                trigger,
                outcome,
                number_of_retries: retries_used,
                execution_duration: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                exit_code: attempt.exit_code,
                error: attempt.error.clone(),
                output: attempt.output.clone(),
            };
            if let Some(e) = &attempt.error {
                tracing::info!(job = %id, name = %job.name, error = %e, "run failed");
            }
            self.persist_run(&id, record.clone(), |j| {
                let m = &mut j.metadata;
                m.last_attempted_run = Some(ran_at);
                m.error_count += failures;
                if last_error_at.is_some() {
                    m.last_error = last_error_at;
                }
                m.number_of_finished_runs += 1;
                if success {
                    m.success_count += 1;
                    m.last_success = Some(finished);
                }
            })
            .await;
            let mut chain = chain;
            chain.push(id.clone());
            if success {
                for child in job.children() {
                    if !chain.contains(child) {
                        self.clone()
                            .run_pipeline(child.clone(), Trigger::Parent, None, chain.clone())
                            .await;
                    }
                }
            } else if !job.on_failure_job.is_empty() && !chain.contains(&job.on_failure_job) {
                self.clone()
                    .run_pipeline(
                        job.on_failure_job.clone(),
                        Trigger::OnFailure,
                        None,
                        chain.clone(),
                    )
                    .await;
            }
            Some(record)
        })
    }

    /// Stores a run record together with the job's updated state, then
    /// installs the change in memory and tells subscribers. A job deleted
    /// meanwhile is not written back.
    async fn persist_run(&self, id: &str, record: RunRecord, update: impl Fn(&mut Job)) {
        let _stripe = self.lock_stripes(&[id]).await;
        let job = {
            let st = self.lock();
            let Some(cur) = st.jobs.get(id) else { return };
            let mut job = Job::clone(&cur.job);
            update(&mut job);
            job.is_done = st.jobs.get(id).is_none_or(|s| s.armed.is_none());
            job
        };
        let batch = Batch {
            put: vec![job],
            runs: vec![record.clone()],
            keep_runs: self.config.keep_runs,
            ..Batch::default()
        };
        if let Err(e) = self.store.apply(batch).await {
            self.metrics.store_error();
            tracing::error!(job = %id, error = %e, "cannot store the run: its record is lost; the job's counters stay in memory and are stored with its next write");
        }
        {
            let mut st = self.lock();
            let armed = st.jobs.get(id).is_some_and(|s| s.armed.is_some());
            if let Some(cur) = st.jobs.get_mut(id).map(|s| Arc::make_mut(&mut s.job)) {
                update(cur);
                cur.is_done = !armed;
            }
        }
        let _ = self.events.send(Event::RunFinished(record));
    }
}

#[cfg(test)]
mod tests;
