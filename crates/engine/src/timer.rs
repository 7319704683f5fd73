//! The timer: when each job runs next, the ordered queue, and the one task
//! that sleeps until the earliest entry.
//!
//! Owns: [`next_due`] (the only computation of a job's next run), arming
//! and disarming through [`State::arm`], and the timer loop, which hands
//! each due entry to the runner with a worker permit.
//! Must not: execute jobs or write to the store; a due entry becomes a
//! spawned `runner` task and the loop goes straight back to the queue.

use std::sync::Arc;

use jiff::Timestamp;
use kala_job::{Job, Plan};

use crate::jobs::Idx;

use crate::config::MissedRuns;
use crate::state::{Due, Inner, State};

/// Whether a point already in the past fires (`CatchUp`: restart and
/// enable) or is taken as it is (`AsIs`: create, and the point after a
/// firing, so a late timer does not lose points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overdue {
    AsIs,
    CatchUp,
    /// A partition taken over from another instance: points missed in
    /// the last [`TAKEOVER_WINDOW`] are each run (late; the runner skips
    /// those later than the job's epsilon, with a record), older ones
    /// follow the missed-runs policy like `CatchUp`.
    Takeover,
}

/// How far back a takeover runs every missed point (see
/// [`Overdue::Takeover`]).
pub(crate) const TAKEOVER_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// What a job's next run depends on besides its plan: read from a
/// [`Job`] or, at start-up, straight from a packed one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchedState {
    pub disabled: bool,
    pub is_child: bool,
    pub resume_at_next_scheduled_time: bool,
    pub last_scheduled_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl From<&Job> for SchedState {
    fn from(job: &Job) -> Self {
        SchedState {
            disabled: job.disabled,
            is_child: job.is_child(),
            resume_at_next_scheduled_time: job.resume_at_next_scheduled_time,
            last_scheduled_at: job.last_scheduled_at,
            created_at: job.created_at,
        }
    }
}

impl From<&kala_job::packed::View<'_>> for SchedState {
    fn from(v: &kala_job::packed::View<'_>) -> Self {
        SchedState {
            disabled: v.disabled,
            is_child: v.is_child,
            resume_at_next_scheduled_time: v.resume_at_next_scheduled_time,
            last_scheduled_at: v.last_scheduled_at,
            created_at: v.created_at,
        }
    }
}

/// A job's next scheduled run, from its state and plan. `None`: it has no
/// schedule (one-off, child), is disabled, or its schedule is over.
pub(crate) fn next_due(
    job: impl Into<SchedState>,
    plan: &Plan,
    now: Timestamp,
    overdue: Overdue,
    missed: MissedRuns,
) -> Option<Due> {
    let job: SchedState = job.into();
    if job.disabled || job.is_child {
        return None;
    }
    let schedule = plan.cadence.as_ref()?;
    let candidate = match (job.last_scheduled_at, schedule.start()) {
        (Some(last), _) => schedule.next_after(last),
        (None, Some(start)) => Some(start),
        (None, None) => schedule.next_after(job.created_at),
    }?;
    let at = |t| Due {
        fire_at: t,
        point: t,
    };
    if candidate >= now
        || overdue == Overdue::AsIs
        || (overdue == Overdue::Takeover && now.duration_since(candidate) <= TAKEOVER_WINDOW)
    {
        return Some(at(candidate));
    }
    if job.resume_at_next_scheduled_time || missed == MissedRuns::Skip {
        return schedule.next_after(now).map(at);
    }
    let point = schedule
        .latest_at_or_before(now)
        .unwrap_or(candidate)
        .max(candidate);
    Some(Due {
        fire_at: now,
        point,
    })
}

impl Inner {
    /// `id`'s next run from its current state.
    pub fn due_of(&self, st: &State, id: &str, now: Timestamp, overdue: Overdue) -> Option<Due> {
        let job = st.job(id)?;
        self.due_of_job(&job, now, overdue)
    }

    /// `job`'s next run (its plan parsed here: memory keeps only the
    /// packed job). A job whose timing does not parse has none.
    pub fn due_of_job(&self, job: &Job, now: Timestamp, overdue: Overdue) -> Option<Due> {
        let plan = job.plan().ok()?;
        next_due(job, &plan, now, overdue, self.config.missed_runs)
    }

    /// (Re)arms `id` from its current state and wakes the timer if the
    /// queue's head moved earlier.
    pub fn rearm(&self, st: &mut State, id: &str, now: Timestamp, overdue: Overdue) {
        let due = self.due_of(st, id, now, overdue);
        if st.arm(id, due) {
            self.wake.notify_one();
        }
    }

    pub async fn timer_loop(self: Arc<Self>) {
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
                Some((at, idx)) if at <= self.clock.now() => {
                    let permit = tokio::select! {
                        p = self.workers.clone().acquire_owned() => p,
                        _ = shutdown.changed() => continue,
                    };
                    let Ok(permit) = permit else { return };
                    if let Some((job, plan, point)) = self.take_due(idx, at) {
                        let inner = self.clone();
                        tokio::spawn(async move {
                            inner.run_scheduled(job, &plan, point).await;
                            drop(permit);
                        });
                    }
                }
                Some((at, _)) => {
                    let sleep = self.clock.sleep_until_precise(at);
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
    /// The entry is named by its slab index and fire time; if the job
    /// there changed meanwhile, the entry is gone and nothing happens.
    /// One decode, one plan, one pack: this runs under the state lock for
    /// every scheduled run.
    fn take_due(&self, idx: Idx, at: Timestamp) -> Option<(Arc<Job>, Plan, Timestamp)> {
        let mut st = self.lock();
        let due = st.due_at(idx)?;
        if due.fire_at != at {
            return None;
        }
        let mut job = st.jobs.get_at(idx)?;
        st.disarm_at(idx);
        if self.fence_for(&job.id).is_err() {
            // Another instance owns the job now; its owner arms it.
            return None;
        }
        if job.disabled {
            return None;
        }
        job.scheduled_runs += 1;
        job.last_scheduled_at = Some(due.point);
        let plan = job.plan().unwrap_or_default();
        let now = self.clock.now();
        let next = next_due(&job, &plan, now, Overdue::AsIs, self.config.missed_runs);
        job.next_run_at = next.map(|d| d.fire_at);
        if st.rearm_at(idx, &job, next) {
            self.wake.notify_one();
        }
        Some((Arc::new(job), due.point)).map(|(job, point)| (job, plan, point))
    }
}
