//! The runner: one run of a job, from "it is due" to its record.
//!
//! Owns: the checks before a scheduled run (epsilon, overlap, the claim),
//! the attempts with their retries, the run record, and the chain that
//! follows (children or the on-failure job).
//! Must not: touch the queue (the timer armed the next point before this
//! started) or write the store directly (`record` does, under the job's
//! stripe).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kala_executor::{Attempt, RunContext};
use kala_job::{Job, JobId, Outcome, Overlap, Plan, RunRecord, Trigger};
use kala_store::{Batch, Claim, OpenRun, RunDelta};

use crate::chain::follow_ups;
use crate::config::Event;
use crate::retry::{Failed, next_retry};
use crate::state::Inner;

/// Gives back a schedule point the timer consumed but that did not run
/// (its fenced journal entry was refused): `last_scheduled_at` goes back
/// to the point before it, unless a later point was consumed meanwhile.
fn unconsume(st: &mut crate::state::State, id: &str, point: Timestamp, plan: &Plan) {
    st.update(id, |job| {
        if job.last_scheduled_at != Some(point) {
            return;
        }
        let before = point
            .checked_sub(SignedDuration::from_nanos(1))
            .ok()
            .and_then(|t| plan.cadence.as_ref()?.latest_at_or_before(t));
        job.last_scheduled_at = before;
        job.scheduled_runs = job.scheduled_runs.saturating_sub(1);
    });
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Inner {
    /// A scheduled run: skipped when it starts later than the job's
    /// epsilon or while the previous run goes on (`overlap: skip`), not
    /// run when another instance claimed the point.
    pub async fn run_scheduled(self: Arc<Self>, job: Arc<Job>, plan: &Plan, point: Timestamp) {
        let now = self.clock.now();
        if job.disabled {
            // A point owed from before the job's disable (see
            // `timer::next_due`): the disable has answered, so it is not
            // run, but it is not passed over in silence either.
            self.record_skip(
                &job.id,
                point,
                format!("skipped: the job was disabled before its point {point} could run (its instance was paused, cut off or being replaced)"),
            )
            .await;
            return;
        }
        let late = now.duration_since(point);
        self.metrics.observe_lateness(late);
        if let Some(eps) = plan.epsilon()
            && late > eps
        {
            let why = format!(
                "skipped: started {late:#} after its scheduled time {point}, later than epsilon {}",
                job.epsilon
            );
            self.record_skip(&job.id, point, why).await;
            return;
        }
        if job.overlap == Overlap::Skip && self.lock().is_running(&job.id) {
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
        // `run_on`: dispatched to the chosen instances (and/or run here),
        // or skipped with the reason when none matches.
        if !self.run_placed(&job, Trigger::Schedule, Some(point)).await {
            return;
        }
        self.run_pipeline(job.id.clone(), Trigger::Schedule, Some(point), Vec::new())
            .await;
    }

    /// Whether the lease of `id`'s partition holds (see
    /// [`Inner::lease_proven`]), waiting up to two membership rounds for a
    /// renewal when it just ran out here: a lease still this instance's
    /// with the same token was never anyone else's, so the run may start,
    /// late.
    pub(crate) async fn reprove_lease(&self, id: &str, token: u64) -> bool {
        if self.lease_proven(id, token) {
            return true;
        }
        let wait = std::time::Duration::try_from(self.config.heartbeat * 2)
            .unwrap_or(std::time::Duration::from_secs(2));
        let until = std::time::Instant::now() + wait;
        while std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if self.lease_proven(id, token) {
                tracing::info!(job = %id, "the lease was renewed after it ran out here; the run starts late");
                return true;
            }
        }
        false
    }

    /// One attempt on a task of its own, so that a panic anywhere in it (a
    /// handler, a library) ends as a failed attempt, and the run still
    /// records and releases the job's running count.
    async fn attempt(
        &self,
        job: &Arc<Job>,
        timeout: Option<std::time::Duration>,
        ctx: RunContext,
    ) -> Attempt {
        let started = std::time::Instant::now();
        let (executor, owned) = (self.executor.clone(), job.clone());
        match tokio::spawn(async move { executor.run_as(&owned, timeout, Some(&ctx)).await }).await
        {
            Ok(attempt) => attempt,
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                    Err(e) => e.to_string(),
                };
                tracing::error!(job = %job.id, panic = %why, "a run panicked; recorded as failed");
                Attempt::failed(format!("the run panicked: {why}"), started)
            }
        }
    }

    /// One run of `id` with its retries; then its children (after a
    /// success) or its on-failure job (after a failure). `chain` holds the
    /// jobs already run in this chain, so cycles stop.
    pub fn run_pipeline(
        self: Arc<Self>,
        id: JobId,
        trigger: Trigger,
        point: Option<Timestamp>,
        chain: Vec<JobId>,
    ) -> BoxFut<'static, Option<RunRecord>> {
        self.run_pipeline_with(id, trigger, point, chain, None)
    }

    /// [`Inner::run_pipeline`]; `handed`: a run the holder of the job's
    /// partition journaled for this instance (`run_on`), started under
    /// its entry instead of a new one (see `placement`).
    pub(crate) fn run_pipeline_with(
        self: Arc<Self>,
        id: JobId,
        trigger: Trigger,
        point: Option<Timestamp>,
        chain: Vec<JobId>,
        handed: Option<OpenRun>,
    ) -> BoxFut<'static, Option<RunRecord>> {
        Box::pin(async move {
            let (job, plan) = {
                let mut st = self.lock();
                let Some(job) = st.job(&id).filter(|j| !j.disabled || handed.is_some()) else {
                    // Disabled (or deleted) before it started: a one-off
                    // starts again when it is enabled.
                    st.once_started.remove(&id);
                    return None;
                };
                let invalid = st.invalid.get(&id).cloned();
                st.running_start(&id);
                drop(st);
                let plan = match invalid {
                    Some(e) => Err(e),
                    None => job.plan().map(Arc::new).map_err(Arc::new),
                };
                (Arc::new(job), plan)
            };
            let ran_at = self.clock.now();
            let dispatched = handed.is_some();
            // The journal entry is durable before anything of the run
            // starts; the batch with the record ends it. A handed run's
            // entry was written by the holder of the job's partition.
            let run_id = handed
                .as_ref()
                .map(|o| o.run_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let open = OpenRun {
                run_id: run_id.clone(),
                job_id: id.clone(),
                trigger,
                scheduled_at: point,
                started_at: ran_at,
                node: self.config.node_id.clone(),
                dispatched_by: None,
            };
            // In a cluster, a scheduled or one-off run proves in the same
            // write that this instance still holds the job's partition:
            // no proof, no run (its owner runs it).
            let fence = match trigger {
                _ if dispatched => None,
                Trigger::Schedule | Trigger::Once => match self.fence_for(&id) {
                    Ok(f) => f,
                    Err(()) => {
                        let mut st = self.lock();
                        st.running_end(&id);
                        if trigger == Trigger::Once {
                            st.once_started.remove(&id);
                        }
                        drop(st);
                        self.metrics.fenced();
                        tracing::info!(job = %id, "not started: this instance no longer holds the job's partition");
                        return None;
                    }
                },
                _ => None,
            };
            let fenced = fence.is_some();
            let token = fence.as_ref().map(|f| f.token);
            let proof = crate::record::Proof {
                mark: self.liveness_mark(),
                fence: fence.clone(),
            };
            let journaled = if dispatched {
                drop(open);
                Ok(())
            } else {
                self.store
                    .apply(Batch {
                        begin: vec![open],
                        fence,
                        ..Batch::default()
                    })
                    .await
            };
            if let Err(e) = &journaled
                && (fenced
                    || self.cluster.is_some() && matches!(e, kala_store::StoreError::Fenced(_)))
            {
                {
                    let mut st = self.lock();
                    st.running_end(&id);
                    if let (Some(p), Ok(plan)) = (point, &plan) {
                        // The point did not run: give it back, so that
                        // whoever holds the partition next (this instance
                        // when its lease comes back) runs or skips it.
                        unconsume(&mut st, &id, p, plan);
                    }
                    if trigger == Trigger::Once {
                        st.once_started.remove(&id);
                    }
                }
                // The database refused the lease (it changed hands, or
                // expired there): if this instance still holds it by the
                // next round, it arms the job again for the point.
                if let Some(c) = &self.cluster {
                    c.dropped().insert(kala_store::partition_of(&id));
                }
                self.metrics.fenced();
                tracing::warn!(job = %id, error = %e, "not started: the lease of the job's partition could not be proven");
                return None;
            }
            if let Err(e) = journaled {
                self.metrics.store_error();
                if self.config.require_journal {
                    self.lock().running_end(&id);
                    self.metrics.not_started();
                    tracing::error!(job = %id, error = %e, "cannot journal the run, so it does not start (require_journal)");
                    return None;
                }
                // The store cannot write: the run goes on from memory, as
                // every run did before the journal; a crash during it is
                // not seen at the next start.
                self.metrics.unjournaled();
                tracing::warn!(job = %id, error = %e, "cannot journal the run; it runs anyway (a crash during it will not be recorded)");
            }
            // The journal proved the lease in the database; the process
            // starts only if it still holds here, on the monotonic clock,
            // after whatever happened since (a pause, a slow write), and,
            // in a cluster, only if the database says just before that no
            // other instance deleted or disabled the job meanwhile.
            let stopped = match token {
                None if dispatched => self.stopped_elsewhere(&id).await,
                None => None,
                Some(token) => match self.clear_to_start(&id, token).await {
                    crate::record::Clear::Go => None,
                    crate::record::Clear::LeaseLost => {
                        self.abandon_run(&id, &run_id, trigger, point, ran_at).await;
                        return None;
                    }
                    crate::record::Clear::Stopped(why) => Some(why),
                },
            };
            if let Some(why) = stopped {
                {
                    let mut st = self.lock();
                    st.running_end(&id);
                    if trigger == Trigger::Once {
                        st.once_started.remove(&id);
                    }
                }
                tracing::info!(job = %id, run = %run_id, "not started: {why}");
                let record = self.skipped_record(
                    &id,
                    trigger,
                    point,
                    ran_at,
                    run_id.clone(),
                    format!("not started: {why}"),
                );
                let delta = RunDelta {
                    point,
                    ..RunDelta::default()
                };
                self.persist_run(&id, record, Some(run_id), delta, Some(proof))
                    .await;
                return None;
            }
            let _ = self.events.send(Event::RunStarted {
                job_id: id.clone(),
                trigger,
                at: ran_at,
                scheduled_at: point,
            });
            let started = std::time::Instant::now();
            let mut retries_used = 0u64;
            let mut failures = 0u64;
            let mut last_error_at = None;
            let attempt = match &plan {
                Err(e) => {
                    failures = 1;
                    last_error_at = Some(ran_at);
                    Attempt::failed(
                        format!("the stored job is invalid: {e}"),
                        std::time::Instant::now(),
                    )
                }
                Ok(plan) => loop {
                    let ctx = RunContext {
                        job_id: id.clone(),
                        job_name: job.name.clone(),
                        run_id: run_id.clone(),
                        scheduled_at: point,
                        attempt: retries_used + 1,
                        node: self.config.node_id.clone(),
                    };
                    let attempt = self.attempt(&job, plan.timeout(), ctx).await;
                    if attempt.success {
                        break attempt;
                    }
                    failures += 1;
                    let now = self.clock.now();
                    last_error_at = Some(now);
                    let retry = next_retry(Failed {
                        retries_used,
                        retries_allowed: job.retries,
                        epsilon: plan.epsilon(),
                        since: point.unwrap_or(ran_at),
                        now,
                        base_delay: plan.retry_delay(),
                        max_delay: self.config.max_retry_delay,
                        min_delay: self.config.min_retry_delay,
                    });
                    let Some(delay) = retry else { break attempt };
                    let so_far = RunRecord {
                        job_id: id.clone(),
                        ran_at,
                        scheduled_at: point,
                        trigger,
                        outcome: Outcome::Failed,
                        number_of_retries: retries_used,
                        execution_duration: u64::try_from(started.elapsed().as_nanos())
                            .unwrap_or(u64::MAX),
                        exit_code: attempt.exit_code,
                        error: attempt.error.clone(),
                        output: attempt.output.clone(),
                        run_id: Some(run_id.clone()),
                        node: Some(self.config.node_id.clone()),
                    };
                    self.notify_retry(&id, &so_far).await;
                    if !delay.is_zero() {
                        self.clock.sleep_until(now + delay).await;
                    }
                    retries_used += 1;
                },
            };
            self.lock().running_end(&id);
            let finished = self.clock.now();
            let success = attempt.success;
            let outcome = if success {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
            self.metrics.count(outcome);
            tracing::info!(
                job = %id,
                name = %job.name,
                run = %run_id,
                node = %self.config.node_id,
                trigger = ?trigger,
                scheduled_at = ?point,
                outcome = ?outcome,
                retries = retries_used,
                exit_code = ?attempt.exit_code,
                error = attempt.error.as_deref().unwrap_or(""),
                "run finished"
            );
            let record = RunRecord {
                job_id: id.clone(),
                ran_at,
                scheduled_at: point,
                trigger,
                outcome,
                number_of_retries: retries_used,
                execution_duration: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                exit_code: attempt.exit_code,
                error: attempt.error,
                output: attempt.output,
                run_id: Some(run_id.clone()),
                node: Some(self.config.node_id.clone()),
            };
            let delta = RunDelta {
                point,
                attempted_at: Some(ran_at),
                successes: u64::from(success),
                errors: failures,
                finished: 1,
                last_success: success.then_some(finished),
                last_error: last_error_at,
                ..RunDelta::default()
            };
            self.persist_run(&id, record.clone(), Some(run_id), delta, Some(proof))
                .await;
            let mut chain = chain;
            chain.push(id.clone());
            for (next, trigger) in follow_ups(&job, success, &chain) {
                self.clone()
                    .run_pipeline(next, trigger, None, chain.clone())
                    .await;
            }
            Some(record)
        })
    }
}
