//! The facade: [`Engine`], the handle callers hold (the API, embedders,
//! tests), with every operation on jobs.
//!
//! Owns: create, read, list, delete, enable/disable, run now, stats and
//! shutdown — each validates, writes the store first, then changes memory
//! and the queue. The reads are in `read.rs`.
//! Must not: compute schedules (`timer::next_due`), run attempts
//! (`runner`) or format anything for the wire (that is `kala-api`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kala_executor::HandlerResult;
use kala_job::graph::{plan_create, plan_delete};
use kala_job::{Job, JobError, JobId, RunRecord, Trigger};
use kala_store::{Batch, JobChange, JobStore, JobUpdate};
use tokio::sync::broadcast;

use crate::audit::model::Actor;
use crate::clock::Clock;
use crate::config::{EngineError, Event};
use crate::metrics::Metrics;
use crate::state::{Inner, STRIPES};
use crate::timer::{Overdue, next_due};

mod read;

/// The scheduler. Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// A one-off job (no schedule, no parents) that has not run yet.
pub(crate) fn job_is_pending_once(job: &Job) -> bool {
    job.schedule.is_empty()
        && !job.is_child()
        && !job.disabled
        && !job.is_done
        && job.metadata.last_attempted_run.is_none()
}

/// [`job_is_pending_once`] of a packed job.
pub(crate) fn view_is_pending_once(v: &kala_job::packed::View<'_>) -> bool {
    v.timing.schedule.is_empty()
        && !v.is_child
        && !v.disabled
        && !v.is_done
        && v.metadata.last_attempted_run.is_none()
}

impl Engine {
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
    /// (and without parents) runs once, now, in the background. Audited
    /// as made by [`Actor::engine`].
    pub async fn create(&self, job: Job) -> Result<JobId, EngineError> {
        self.create_as(job, &Actor::engine()).await
    }

    /// [`Engine::create`] by `actor` (in the audit log).
    pub async fn create_as(&self, mut job: Job, actor: &Actor) -> Result<JobId, EngineError> {
        self.check_running()?;
        let inner = &self.inner;
        let now = inner.clock.now();
        let plan = job.validate(Some(now))?;
        inner.check_notify(&job)?;
        inner.check_publish(&job)?;
        inner.check_run_on(&job)?;
        kala_executor::template::check_job(&job)
            .map_err(|(field, message)| JobError::new(field, message))?;
        job.created_at = now;
        let id = job.id.clone();
        let needs_graph = job.is_child() || !job.on_failure_job.is_empty();
        let _graph = if needs_graph {
            Some(inner.graph.lock().await)
        } else {
            None
        };
        let linked = {
            let st = inner.lock();
            plan_create(job, |pid| st.job(pid))?
        };
        // The first run, so that the stored job shows it.
        let due = next_due(
            &linked.job,
            &plan,
            now,
            Overdue::AsIs,
            inner.config.missed_runs,
        );
        let mut job = linked.job;
        job.next_run_at = due.map(|d| d.fire_at);
        let mut ids: Vec<&str> = linked
            .updated_parents
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        ids.push(&id);
        let _stripes = inner.lock_stripes(&ids).await;
        let audit: Vec<_> = inner
            .audit_entry(actor, "create", Some(&job), || {
                crate::audit::model::diff(None, Some(&job))
            })
            .into_iter()
            .collect();
        let batch = if inner.cluster.is_some() {
            // Parents change in the database, not from this memory.
            Batch {
                put: vec![job.clone()],
                audit,
                update: linked
                    .updated_parents
                    .iter()
                    .map(|p| JobUpdate {
                        job_id: p.id.clone(),
                        change: JobChange::AddChild(id.clone()),
                    })
                    .collect(),
                ..Batch::default()
            }
        } else {
            let mut put = linked.updated_parents.clone();
            put.push(job.clone());
            Batch {
                put,
                audit,
                ..Batch::default()
            }
        };
        inner.apply_audited(batch).await?;
        let run_now = job_is_pending_once(&job);
        {
            let mut st = inner.lock();
            for p in &linked.updated_parents {
                st.update(&p.id, |cur| cur.dependent_jobs = p.dependent_jobs.clone());
            }
            if st.insert(job, due) {
                inner.wake.notify_one();
            }
        }
        if run_now {
            self.spawn_run(id.clone(), Trigger::Once);
        }
        Ok(id)
    }

    /// Deletes a job: unlinks it from its parents and deletes each child
    /// left without a parent, in one atomic write.
    pub async fn delete(&self, id: &str) -> Result<(), EngineError> {
        self.delete_as(id, &Actor::engine()).await
    }

    /// [`Engine::delete`] by `actor`: an audit entry for the job and for
    /// each child deleted with it.
    pub async fn delete_as(&self, id: &str, actor: &Actor) -> Result<(), EngineError> {
        let inner = &self.inner;
        let _graph = inner.graph.lock().await;
        let (plan, audit) = {
            let st = inner.lock();
            let plan = plan_delete(id, |x| st.job(x))
                .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            let audit: Vec<_> = plan
                .deleted
                .iter()
                .filter_map(|d| st.job(d))
                .filter_map(|j| {
                    let with = (j.id != id).then_some(id);
                    let diff = || crate::audit::model::deleted(&j, with);
                    inner.audit_entry(actor, "delete", Some(&j), diff)
                })
                .collect();
            (plan, audit)
        };
        let ids: Vec<&str> = plan
            .deleted
            .iter()
            .map(String::as_str)
            .chain(plan.updated.iter().map(|j| j.id.as_str()))
            .collect();
        let _stripes = inner.lock_stripes(&ids).await;
        let batch = if inner.cluster.is_some() {
            Batch {
                delete: plan.deleted.clone(),
                update: plan
                    .updated
                    .iter()
                    .map(|j| JobUpdate {
                        job_id: j.id.clone(),
                        change: JobChange::Unlink(plan.deleted.clone()),
                    })
                    .collect(),
                audit,
                ..Batch::default()
            }
        } else {
            Batch {
                put: plan.updated.clone(),
                delete: plan.deleted.clone(),
                audit,
                ..Batch::default()
            }
        };
        inner.apply_audited(batch).await?;
        let mut st = inner.lock();
        for d in &plan.deleted {
            st.remove(d);
        }
        for u in &plan.updated {
            st.update(&u.id, |cur| {
                cur.dependent_jobs = u.dependent_jobs.clone();
                cur.parent_jobs = u.parent_jobs.clone();
            });
        }
        Ok(())
    }

    /// Deletes every job and run record.
    pub async fn delete_all(&self) -> Result<(), EngineError> {
        self.delete_all_as(&Actor::engine()).await
    }

    /// [`Engine::delete_all`] by `actor` (one audit entry with the number
    /// of jobs; the audit log itself stays).
    pub async fn delete_all_as(&self, actor: &Actor) -> Result<(), EngineError> {
        let inner = &self.inner;
        let _graph = inner.graph.lock().await;
        let mut guards = Vec::with_capacity(STRIPES);
        for s in &inner.stripes {
            guards.push(s.lock().await);
        }
        let jobs = inner.lock().jobs.len();
        let audit: Vec<_> = inner
            .audit_entry(actor, "delete_all", None, || {
                kala_store::AuditDiff::from_value(&serde_json::json!({ "jobs": jobs }))
            })
            .into_iter()
            .collect();
        inner.store.delete_all(audit.clone()).await?;
        inner.audit_sink.write(&audit);
        let mut st = inner.lock();
        st.jobs.clear();
        st.queue.clear();
        st.invalid.clear();
        st.caught_up.clear();
        Ok(())
    }

    /// Disables a job: its pending run is cancelled; nothing else happens.
    pub async fn disable(&self, id: &str) -> Result<(), EngineError> {
        self.set_disabled(id, true, &Actor::engine()).await
    }

    /// [`Engine::disable`] by `actor`.
    pub async fn disable_as(&self, id: &str, actor: &Actor) -> Result<(), EngineError> {
        self.set_disabled(id, true, actor).await
    }

    /// [`Engine::enable`] by `actor`.
    pub async fn enable_as(&self, id: &str, actor: &Actor) -> Result<(), EngineError> {
        self.set_disabled(id, false, actor).await
    }

    /// Enables a job: it is scheduled again (an overdue run is caught up
    /// once, or skipped with `resume_at_next_scheduled_time`); a one-off
    /// that never ran runs now.
    pub async fn enable(&self, id: &str) -> Result<(), EngineError> {
        self.set_disabled(id, false, &Actor::engine()).await
    }

    async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let _stripe = inner.lock_stripes(&[id]).await;
        let mut job = inner
            .lock()
            .job(id)
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        // Alone, memory is the store's state. In a cluster it may not yet
        // have heard of another instance's change (the follower is a few
        // milliseconds behind): the change is written whatever memory
        // says (it is idempotent), so an enable right after a disable
        // through another instance is never lost.
        if job.disabled == disabled && inner.cluster.is_none() {
            return Ok(());
        }
        let now = inner.clock.now();
        // The stored job keeps the disabled stretch: every instance (the
        // owner, or one taking its partition over) then knows which
        // points fell while it was disabled (Kala: one catch-up run at
        // the enable) and which before (each owed a run or a record).
        let change = JobChange::Disabled { disabled, at: now };
        let before = job.clone();
        change.apply(&mut job);
        let action = if disabled { "disable" } else { "enable" };
        let audit: Vec<_> = inner
            .audit_entry(actor, action, Some(&job), || {
                crate::audit::model::diff(Some(&before), Some(&job))
            })
            .into_iter()
            .collect();
        let batch = if inner.cluster.is_some() {
            Batch {
                update: vec![JobUpdate {
                    job_id: id.to_string(),
                    change: change.clone(),
                }],
                audit,
                ..Batch::default()
            }
        } else {
            Batch {
                put: vec![job],
                audit,
                ..Batch::default()
            }
        };
        inner.apply_audited(batch).await?;
        let run_once = {
            let mut st = inner.lock();
            let Some(once) = st.update(id, |cur| {
                change.apply(cur);
                !disabled && job_is_pending_once(cur)
            }) else {
                return Err(EngineError::NotFound(id.to_string()));
            };
            // Disabled, it is due only for a point owed from before.
            inner.rearm(&mut st, id, now, Overdue::CatchUp);
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
        self.run_now_as(id, &Actor::engine()).await
    }

    /// [`Engine::run_now`] by `actor`: the start is audited before the run.
    pub async fn run_now_as(
        &self,
        id: &str,
        actor: &Actor,
    ) -> Result<Option<RunRecord>, EngineError> {
        self.check_running()?;
        let job = self
            .inner
            .lock()
            .job(id)
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if let Some(e) = self.inner.audit_entry(actor, "start", Some(&job), || {
            kala_store::AuditDiff::from_value(&serde_json::json!({ "disabled": job.disabled }))
        }) {
            self.inner
                .apply_audited(Batch {
                    audit: vec![e],
                    ..Batch::default()
                })
                .await?;
        }
        if job.disabled {
            return Ok(None);
        }
        let _permit = self.inner.permit().await?;
        Ok(self
            .inner
            .clone()
            .run_pipeline(id.to_string(), Trigger::Manual, None, Vec::new())
            .await)
    }

    /// Stops the timer and waits up to `grace` for running jobs to finish.
    /// Returns whether they all finished. Runs still waiting for a worker
    /// are dropped; the engine accepts no new work afterwards.
    ///
    /// In a cluster, the partitions are handed over at once (the others
    /// take them at their next round); runs in flight stay this
    /// instance's until they end, then it leaves.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.shutdown.send_replace(true);
        self.inner.wake.notify_one();
        let timer = self.inner.timer.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = timer {
            let _ = t.await;
        }
        // The cluster's loops stop first (a round in the middle of a
        // store call is cut off), so that the hand-over runs alone; no
        // store call of the shutdown may hold it up for long.
        let tasks: Vec<_> = self
            .inner
            .cluster_tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        const STORE_STEP: Duration = Duration::from_secs(5);
        if tokio::time::timeout(STORE_STEP, self.inner.hand_over())
            .await
            .is_err()
        {
            tracing::warn!(
                "handing the partitions over took too long; the others take them when the leases run out"
            );
        }
        let all = u32::try_from(self.inner.config.max_concurrent_runs.max(1)).unwrap_or(u32::MAX);
        let done = tokio::time::timeout(grace, self.inner.workers.acquire_many(all)).await;
        self.inner.workers.close();
        if matches!(done, Ok(Ok(_)))
            && tokio::time::timeout(STORE_STEP, self.inner.leave_cluster())
                .await
                .is_err()
        {
            tracing::warn!(
                "leaving the cluster took too long; the others see this instance gone when its heartbeat runs out"
            );
        }
        matches!(done, Ok(Ok(_)))
    }

    fn check_running(&self) -> Result<(), EngineError> {
        if self.inner.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(())
    }

    pub(crate) fn spawn_run(&self, id: JobId, trigger: Trigger) {
        if trigger == Trigger::Once {
            // Another instance may hold the job's partition (it runs it
            // when it hears of the job); the one run is started once.
            if self.inner.fence_for(&id).is_ok() {
                self.inner.clone().spawn_once(id);
            }
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let Ok(_permit) = inner.permit().await else {
                return;
            };
            inner.run_pipeline(id, trigger, None, Vec::new()).await;
        });
    }
}
