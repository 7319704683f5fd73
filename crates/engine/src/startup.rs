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
use kala_job::{Trigger, packed};
use kala_store::JobStore;

use crate::clock::Clock;
use crate::config::{EngineConfig, EngineError};
use crate::facade::{Engine, view_is_pending_once};
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
        let sink =
            crate::audit::model::Sink::open(config.audit.log_file.as_ref()).map_err(|e| {
                EngineError::Invalid(kala_job::JobError::new(
                    "audit_log",
                    format!(
                        "{}: {e}",
                        config
                            .audit
                            .log_file
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                ))
            })?;
        let load_started = std::time::Instant::now();
        // In a cluster, changes are followed from before the load, so
        // none committed during it is missed.
        let cursor = match store.coordination() {
            Some(c) if config.cluster => c.last_change().await?,
            _ => 0,
        };
        let mut jobs = store.load_packed().await?;
        let loaded_in = load_started.elapsed();
        let engine = Engine {
            inner: Arc::new(Inner::new(store, executor, clock, config, sink)),
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
        let pending_once = engine.load(jobs)?;
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
        {
            let inner = engine.inner.clone();
            tokio::spawn(async move { inner.late_loop().await });
        }
        if engine.inner.config.notify.deliver.is_some() {
            let inner = engine.inner.clone();
            tokio::spawn(async move { inner.outbox_loop().await });
        }
        if engine.inner.config.run_ttl.is_some() || engine.inner.config.audit.keep.is_some() {
            let inner = engine.inner.clone();
            tokio::spawn(async move { inner.maintenance_loop().await });
        }
        Ok(engine)
    }

    /// Bulk load: nothing is armed yet and the timer is not running, so
    /// the queue is built in one sorted pass instead of a million
    /// O(log n) inserts. Each job stays in the packed form the store gave
    /// (only what scheduling needs is read from it, without allocating);
    /// it is decoded and packed again only when its `next_run_at`
    /// changed. Returns the one-off jobs to start.
    fn load(&self, jobs: Vec<Box<[u8]>>) -> Result<Vec<String>, EngineError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut pending_once = Vec::new();
        let mut st = inner.lock();
        st.jobs.reserve(jobs.len());
        let mut queue = Vec::with_capacity(jobs.len());
        for mut bytes in jobs {
            let view = packed::view(&bytes).map_err(|e| corrupt(&bytes, e))?;
            let due = match view.timing.plan() {
                Ok(plan) => {
                    if view_is_pending_once(&view) {
                        pending_once
                            .push(packed::decode_id(&bytes).map_err(|e| corrupt(&bytes, e))?);
                    }
                    next_due(
                        &view,
                        &plan,
                        now,
                        Overdue::CatchUp,
                        inner.config.missed_runs,
                    )
                }
                Err(e) => {
                    let id = packed::decode_id(&bytes).unwrap_or_default();
                    inner.metrics.invalid_job();
                    tracing::error!(job = %id, field = %e.field, error = %e.message,
                        "stored job does not parse: kept, never scheduled; fix or delete it");
                    st.invalid.insert(id, Arc::new(e));
                    None
                }
            };
            let fire_at = due.map(|d| d.fire_at);
            if view.next_run_at != fire_at {
                let mut job = packed::decode(&bytes).map_err(|e| corrupt(&bytes, e))?;
                job.next_run_at = fire_at;
                bytes = packed::encode(&job).into_boxed_slice();
            }
            let idx = st.jobs.put_new_packed(bytes, fire_at);
            if let Some(d) = due {
                queue.push((d.fire_at, idx));
                if d.point != d.fire_at {
                    st.caught_up.insert(idx, d.point);
                }
            }
        }
        queue.sort_unstable();
        st.queue = queue.into_iter().collect();
        Ok(pending_once)
    }
}

/// A packed job from the store that does not decode: the store's
/// checksum passed, so this is a bug or a record written by a newer
/// build; start-up stops naming it rather than run with a hole.
fn corrupt(bytes: &[u8], e: packed::DecodeError) -> EngineError {
    let id = packed::decode_id(bytes).unwrap_or_else(|_| "(unreadable id)".into());
    EngineError::Store(kala_store::StoreError::Corrupt {
        key: id,
        reason: e.to_string(),
    })
}
