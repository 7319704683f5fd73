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
    /// [`Job::disabled_stretch`].
    pub stretch: Option<(Timestamp, Option<Timestamp>)>,
}

impl From<&Job> for SchedState {
    fn from(job: &Job) -> Self {
        SchedState {
            disabled: job.disabled,
            is_child: job.is_child(),
            resume_at_next_scheduled_time: job.resume_at_next_scheduled_time,
            last_scheduled_at: job.last_scheduled_at,
            created_at: job.created_at,
            stretch: job.disabled_stretch(),
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
            stretch: kala_job::stretch(v.disabled, v.disabled_at, v.enabled_at, v.created_at),
        }
    }
}

/// A job's next scheduled run, from its state and plan. `None`: it has no
/// schedule (one-off, child), is disabled, or its schedule is over.
///
/// Its last disabled stretch (see [`Job::disabled_stretch`]) decides
/// about the points it holds back:
/// * a point before the disable fell while the job was enabled but was
///   not run (its instance was paused, cut off, or the partition was
///   being taken over): it is owed a trace. Still disabled, the job gets
///   it as a due point the runner records `skipped` (never run: the
///   disable answered); enabled again, it is run like a taken-over point
///   (within [`TAKEOVER_WINDOW`]);
/// * points from the disable to the enable get Kala's one catch-up run
///   (the latest of them), or none with `resume_at_next_scheduled_time`
///   or missed runs skipped;
/// * later points are as usual.
pub(crate) fn next_due(
    job: impl Into<SchedState>,
    plan: &Plan,
    now: Timestamp,
    overdue: Overdue,
    missed: MissedRuns,
) -> Option<Due> {
    let job: SchedState = job.into();
    if job.is_child {
        return None;
    }
    let schedule = plan.cadence.as_ref()?;
    let mut candidate = match (job.last_scheduled_at, schedule.start()) {
        (Some(last), _) => schedule.next_after(last),
        (None, Some(start)) => Some(start),
        (None, None) => schedule.next_after(job.created_at),
    }?;
    let at = |t| Due {
        fire_at: t,
        point: t,
    };
    let owed = |c: Timestamp, from: Timestamp| c < from && now.duration_since(c) <= TAKEOVER_WINDOW;
    match job.stretch {
        Some((from, None)) => {
            // Disabled: only a point owed from before the disable.
            return owed(candidate, from).then(|| at(candidate));
        }
        Some((from, Some(until))) if candidate >= from && candidate <= until => {
            if job.resume_at_next_scheduled_time || missed == MissedRuns::Skip {
                candidate = schedule.next_after(until.max(candidate))?;
            } else {
                let point = schedule
                    .latest_at_or_before(until)
                    .unwrap_or(candidate)
                    .max(candidate);
                return Some(Due {
                    fire_at: point.max(now),
                    point,
                });
            }
        }
        Some((from, Some(_))) if owed(candidate, from) => return Some(at(candidate)),
        _ => {}
    }
    if job.disabled {
        return None;
    }
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
        // A disabled job is due only for a point owed from before its
        // disable: the runner records it skipped.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    /// A job due every second from `t(0)`, its points consumed up to
    /// `last`, with a disabled stretch.
    fn state(last: i64, stretch: (i64, Option<i64>)) -> (SchedState, Plan) {
        let mut job = Job::new("j", "true");
        job.schedule = format!("R/{}/PT1S", t(0));
        job.created_at = t(-10);
        job.last_scheduled_at = Some(t(last));
        job.disabled = stretch.1.is_none();
        job.disabled_at = Some(t(stretch.0));
        job.enabled_at = stretch.1.map(t);
        let plan = job.plan().expect("plan");
        (SchedState::from(&job), plan)
    }

    fn due(last: i64, stretch: (i64, Option<i64>), now: i64, o: Overdue) -> Option<(i64, i64)> {
        let (s, plan) = state(last, stretch);
        next_due(s, &plan, t(now), o, MissedRuns::CatchUpOnce).map(|d| {
            (
                d.fire_at.as_second() - t(0).as_second(),
                d.point.as_second() - t(0).as_second(),
            )
        })
    }

    #[test]
    fn a_disabled_job_is_due_only_for_the_points_owed_from_before_its_disable() {
        // Points 5 and 6 fell before the disable at 6.5 (at 6 s, whole
        // seconds here: disabled at 7) and were not run.
        assert_eq!(due(4, (7, None), 9, Overdue::AsIs), Some((5, 5)));
        assert_eq!(due(6, (7, None), 9, Overdue::CatchUp), None);
        // Older than the takeover window: passed over as before.
        assert_eq!(due(4, (100, None), 100, Overdue::Takeover), None);
    }

    #[test]
    fn an_enabled_job_runs_its_owed_points_then_one_catch_up_for_its_disabled_stretch() {
        for o in [Overdue::AsIs, Overdue::CatchUp, Overdue::Takeover] {
            // Owed point 5 first, whatever the mode.
            assert_eq!(due(4, (7, Some(12)), 13, o), Some((5, 5)), "{o:?}");
            // Then 7..=12 fell while disabled: one catch-up, for 12, now.
            assert_eq!(due(6, (7, Some(12)), 13, o), Some((13, 12)), "{o:?}");
            // Then the schedule goes on.
            assert_eq!(
                due(12, (7, Some(12)), 13, o).map(|d| d.1),
                Some(13),
                "{o:?}"
            );
        }
        // Enabled before the next point fell: nothing to catch up.
        assert_eq!(due(6, (6, Some(6)), 6, Overdue::CatchUp), Some((7, 7)));
    }

    #[test]
    fn resume_at_next_scheduled_time_passes_the_stretch_over() {
        let (mut s, plan) = state(6, (7, Some(12)));
        s.resume_at_next_scheduled_time = true;
        let d = next_due(s, &plan, t(12), Overdue::CatchUp, MissedRuns::CatchUpOnce).expect("due");
        assert_eq!((d.fire_at, d.point), (t(13), t(13)));
    }
}
