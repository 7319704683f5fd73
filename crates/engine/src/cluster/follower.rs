//! The change follower: jobs other instances created, changed or deleted
//! (see the parent module).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kala_job::{Job, JobId};
use kala_store::ALL_JOBS;

use crate::facade::job_is_pending_once;
use crate::state::Inner;
use crate::timer::Overdue;

impl Inner {
    /// Follows the other instances' changes until shutdown: woken by the
    /// database's notification where it has one, and polls every
    /// [`EngineConfig::change_poll`](crate::EngineConfig::change_poll) regardless.
    pub async fn follow_loop(self: Arc<Self>, mut cursor: u64) {
        let Some(coord) = self.store.coordination() else {
            return;
        };
        let signal = coord.change_signal();
        let mut shutdown = self.shutdown.subscribe();
        // Changes seen beyond a gap in the sequence: re-read from the gap
        // until it fills or is old enough to be a rollback.
        let mut gap: Option<(u64, std::time::Instant)> = None;
        // Reconciliation: every minute the changes of the last few minutes
        // are read again (idempotent), so that a change whose transaction
        // committed later than the gap wait, or anything missed by a
        // failed read, is not missed for ever.
        let mut marks: std::collections::VecDeque<(std::time::Instant, u64)> = Default::default();
        let mut last_rewind = std::time::Instant::now();
        let mut last_read = std::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            marks.push_back((std::time::Instant::now(), cursor));
            while marks.front().is_some_and(|(t, _)| t.elapsed() > REWIND) {
                marks.pop_front();
            }
            let rewind = last_rewind.elapsed() >= REWIND_EVERY;
            if rewind {
                last_rewind = std::time::Instant::now();
            }
            let from = match (rewind, marks.front()) {
                (true, Some((_, old))) => (*old).min(gap.map_or(cursor, |(g, _)| g)),
                _ => gap.map_or(cursor, |(g, _)| g),
            };
            let read = coord.changes(from, 10_000).await;
            if read.is_ok() {
                // Cut off for longer than changes are kept: some may be
                // gone, so everything is read again.
                if last_read.elapsed() > CUT_OFF {
                    tracing::warn!(
                        "the change log was out of reach for a long time; reloading every job"
                    );
                    if let Err(e) = self.apply_changes(vec![ALL_JOBS.to_string()]).await {
                        tracing::warn!(error = %e, "reloading after a long cut-off failed; trying again");
                        tokio::time::sleep(self.config.change_poll).await;
                        continue;
                    }
                }
                last_read = std::time::Instant::now();
            }
            match read {
                Ok(changes) if !changes.is_empty() => {
                    let mut expect = from + 1;
                    let mut first_gap = None;
                    for (seq, _) in &changes {
                        if *seq != expect && first_gap.is_none() && !coord.commit_ordered() {
                            first_gap = Some(expect - 1);
                        }
                        expect = seq + 1;
                    }
                    let last = changes.last().map_or(cursor, |c| c.0).max(cursor);
                    gap = match (first_gap, gap) {
                        (Some(g), Some((_, since))) if since.elapsed() < GAP_WAIT => {
                            Some((g, since))
                        }
                        (Some(g), None) => Some((g, std::time::Instant::now())),
                        _ => None,
                    };
                    cursor = last;
                    let ids: Vec<JobId> = changes.into_iter().map(|(_, id)| id).collect();
                    if let Err(e) = self.apply_changes(ids).await {
                        tracing::warn!(error = %e, "cannot read changed jobs; retrying");
                        gap = Some((from, gap.map_or_else(std::time::Instant::now, |g| g.1)));
                    }
                }
                Ok(_) => {
                    if gap.is_some_and(|(_, since)| since.elapsed() >= GAP_WAIT) {
                        gap = None;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read changes"),
            }
            let poll = self.config.change_poll;
            let wait = async {
                match &signal {
                    Some(s) => {
                        let _ = tokio::time::timeout(poll, s.notified()).await;
                    }
                    None => tokio::time::sleep(poll).await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Re-reads changed jobs and installs them (created, changed) or
    /// forgets them (deleted).
    async fn apply_changes(
        self: &Arc<Self>,
        mut ids: Vec<JobId>,
    ) -> Result<(), kala_store::StoreError> {
        ids.sort_unstable();
        ids.dedup();
        // The jobs' stripes are held from the read to the install, as a
        // write of this instance holds them from its store write to its
        // memory: a change read before a local write is never installed
        // after it (an enable answered, then undone in memory by the
        // follower's older read of the disable).
        let all = ids.iter().any(|id| id == ALL_JOBS);
        let stripes = if all {
            self.lock_all_stripes().await
        } else {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            self.lock_stripes(&refs).await
        };
        let fresh: Vec<Job> = if all {
            let all = self.store.load_all().await?;
            let keep: HashSet<&str> = all.iter().map(|j| j.id.as_str()).collect();
            let gone: Vec<String> = {
                let st = self.lock();
                st.jobs
                    .ids()
                    .map(|(id, _)| id)
                    .filter(|id| !keep.contains(id.as_str()))
                    .collect()
            };
            let mut st = self.lock();
            for id in gone {
                st.remove(&id);
            }
            drop(st);
            all
        } else {
            let Some(coord) = self.store.coordination() else {
                return Ok(());
            };
            let fresh = coord.get_many(&ids).await?;
            let present: HashSet<&str> = fresh.iter().map(|j| j.id.as_str()).collect();
            let mut st = self.lock();
            for id in ids.iter().filter(|id| !present.contains(id.as_str())) {
                st.remove(id);
            }
            drop(st);
            fresh
        };
        self.metrics.changes_applied(fresh.len());
        let now = self.clock.now();
        let mut once = Vec::new();
        {
            let mut st = self.lock();
            for job in fresh {
                let id = job.id.clone();
                let owned = self.fence_for(&id).is_ok();
                let overdue = match st.job(&id) {
                    // Enabled elsewhere: the disabled stretch gets its
                    // one catch-up in `next_due`; a point after it that
                    // is already due here (this clock ahead of the
                    // enabling instance's, or this follower late) fell
                    // while the job was enabled, and runs.
                    Some(cur) if cur.disabled && !job.disabled => Overdue::Takeover,
                    _ => Overdue::AsIs,
                };
                install(&mut st, job);
                if owned {
                    self.rearm(&mut st, &id, now, overdue);
                    if st
                        .job(&id)
                        .is_some_and(|j| job_is_pending_once(&j) && !st.is_running(&id))
                    {
                        once.push(id);
                    }
                } else {
                    st.disarm(&id);
                }
            }
        }
        drop(stripes);
        for id in once {
            self.clone().spawn_once(id);
        }
        // Runs another instance dispatched here announce their jobs.
        if !all && self.may_be_dispatched_here(&ids) {
            self.pick_up(Some(&ids)).await;
        }
        Ok(())
    }
}

/// How long a gap in the change sequence is re-read before it counts as
/// a rolled-back transaction.
const GAP_WAIT: Duration = Duration::from_secs(5);

/// A follower that could not read the change log for this long reloads
/// every job (changes are kept an hour; this leaves a wide margin).
const CUT_OFF: Duration = Duration::from_secs(600);

/// Reconciliation: how far back the follower re-reads changes, and how
/// often.
const REWIND: Duration = Duration::from_secs(300);
const REWIND_EVERY: Duration = Duration::from_secs(60);

/// Puts a job read from the database into memory: a new one gets a slot,
/// a known one its new content (the schedule point this instance may have
/// consumed and not yet written is kept).
fn install(st: &mut crate::state::State, mut job: Job) {
    match st.job(&job.id) {
        Some(cur) => {
            if let Some(mine) = cur.last_scheduled_at
                && job.last_scheduled_at.is_none_or(|l| l < mine)
            {
                job.last_scheduled_at = Some(mine);
                job.scheduled_runs = job.scheduled_runs.max(cur.scheduled_runs);
            }
            job.next_run_at = cur.next_run_at;
            let same_timing = cur.schedule == job.schedule
                && cur.epsilon == job.epsilon
                && cur.time_zone == job.time_zone
                && cur.timeout == job.timeout
                && cur.retry_delay == job.retry_delay;
            if !same_timing {
                match job.plan() {
                    Ok(_) => {
                        st.invalid.remove(&job.id);
                    }
                    Err(e) => {
                        st.invalid.insert(job.id.clone(), Arc::new(e));
                    }
                }
            }
            st.jobs.put(&job);
        }
        None => {
            if let Err(e) = job.plan() {
                tracing::error!(job = %job.id, error = %e.message, "a job another instance stored does not parse: kept, never scheduled");
                st.invalid.insert(job.id.clone(), Arc::new(e));
            }
            st.insert(job, None);
        }
    }
}
