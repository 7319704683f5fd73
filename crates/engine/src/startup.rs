//! Recovery at start-up: every stored job is loaded, its plan parsed once,
//! its next run computed (missed runs caught up or skipped), the queue
//! built in one sorted pass, and one-off jobs that never ran are started.
//! Before scheduling, runs the last process left unfinished are recorded
//! as interrupted (`journal`).
//!
//! Owns: [`Engine::start`].
//! Must not: be called twice on one store by two live engines (the
//! embedded store's file lock refuses a second process).

use std::sync::Arc;

use kala_executor::Executor;
use kala_job::{Job, Trigger};
use kala_store::JobStore;

use crate::clock::Clock;
use crate::config::{EngineConfig, EngineError};
use crate::facade::{Engine, job_is_pending_once};
use crate::state::Inner;
use crate::timer::{Overdue, next_due};

impl Engine {
    /// Loads every job from `store`, schedules them (missed runs per
    /// `config.missed_runs`), and starts the timer.
    ///
    /// A stored job whose timing does not parse is logged (with its id
    /// and the field), counted in [`crate::MetricsSnapshot::invalid_jobs`],
    /// kept (it can be read and deleted) and never scheduled; each run
    /// asked of it fails with the reason.
    pub async fn start(
        store: Arc<dyn JobStore>,
        executor: Executor,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let load_started = std::time::Instant::now();
        // In a cluster, changes are followed from before the load, so
        // none committed during it is missed.
        let cursor = match store.coordination() {
            Some(c) if config.cluster => c.last_change().await?,
            _ => 0,
        };
        let mut jobs = store.load_all().await?;
        let loaded_in = load_started.elapsed();
        let engine = Engine {
            inner: Arc::new(Inner::new(store, executor, clock, config)),
        };
        let inner = &engine.inner;
        let recovered = crate::journal::recover(
            &inner.store,
            &mut jobs,
            &inner.config,
            inner.cluster.is_some(),
            &inner.metrics,
            inner.clock.now(),
        )
        .await?;
        if recovered.interrupted > 0 {
            tracing::warn!(
                runs = recovered.interrupted,
                killed = recovered.killed.len(),
                "runs interrupted by the last stop were recorded as interrupted; their points are not run again"
            );
        }
        let arm_started = std::time::Instant::now();
        let count = jobs.len();
        let pending_once = engine.load(jobs);
        tracing::info!(
            jobs = count,
            load_ms = loaded_in.as_millis() as u64,
            schedule_ms = arm_started.elapsed().as_millis() as u64,
            "engine started"
        );
        if engine.inner.cluster.is_some() {
            // One-off jobs start when their partition is taken, here for
            // what is free now, later for the rest.
            engine.inner.clone().membership_round().await;
            let inner = engine.inner.clone();
            let membership = tokio::spawn(async move { inner.membership_loop().await });
            let inner = engine.inner.clone();
            let follower = tokio::spawn(async move { inner.follow_loop(cursor).await });
            if let Ok(mut t) = engine.inner.cluster_tasks.lock() {
                t.extend([membership, follower]);
            }
        } else {
            for id in pending_once {
                engine.spawn_run(id, Trigger::Once);
            }
        }
        let timer = engine.inner.clone();
        let handle = tokio::spawn(async move { timer.timer_loop().await });
        if let Ok(mut t) = engine.inner.timer.lock() {
            *t = Some(handle);
        }
        if engine.inner.config.notify.deliver.is_some() {
            let inner = engine.inner.clone();
            tokio::spawn(async move { inner.outbox_loop().await });
        }
        if engine.inner.config.run_ttl.is_some() {
            let inner = engine.inner.clone();
            tokio::spawn(async move { inner.maintenance_loop().await });
        }
        Ok(engine)
    }

    /// Bulk load: nothing is armed yet and the timer is not running, so
    /// the queue is built in one sorted pass instead of a million
    /// O(log n) inserts. Returns the one-off jobs to start.
    fn load(&self, jobs: Vec<Job>) -> Vec<String> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut pending_once = Vec::new();
        let mut st = inner.lock();
        st.jobs.reserve(jobs.len());
        let mut queue = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let due = match job.plan() {
                Ok(plan) => {
                    if job_is_pending_once(&job) {
                        pending_once.push(job.id.clone());
                    }
                    next_due(&job, &plan, now, Overdue::CatchUp, inner.config.missed_runs)
                }
                Err(e) => {
                    inner.metrics.invalid_job();
                    tracing::error!(job = %job.id, name = %job.name, field = %e.field, error = %e.message,
                        "stored job does not parse: kept, never scheduled; fix or delete it");
                    st.invalid.insert(job.id.clone(), Arc::new(e));
                    None
                }
            };
            job.next_run_at = due.map(|d| d.fire_at);
            let idx = st.jobs.put(&job);
            if let Some(d) = due {
                if let Some(slot) = st.jobs.at_mut(idx) {
                    slot.fire_at = Some(d.fire_at);
                }
                queue.push((d.fire_at, idx));
                if d.point != d.fire_at {
                    st.caught_up.insert(idx, d.point);
                }
            }
        }
        queue.sort_unstable();
        st.queue = queue.into_iter().collect();
        pending_once
    }
}
