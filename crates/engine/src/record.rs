//! Run recording: a finished (or skipped) run becomes a run record and the
//! job's updated counters, written together in one store batch.
//!
//! Owns: [`Inner::persist_run`], [`Inner::record_skip`], the records of
//! runs that did not start ([`Inner::abandon_run`], with the check
//! [`Inner::stopped_elsewhere`]), and the
//! `RunFinished` event (sent after the write).
//! Must not: decide outcomes; it stores what the runner decided. Writes
//! take the job's stripe so an older snapshot never overwrites a newer one.

use jiff::Timestamp;
use kala_job::{NotifyOn, Outcome, RunRecord, Trigger};
use kala_store::{Batch, Fence, JobChange, JobUpdate, RunDelta};

use crate::config::Event;
use crate::state::Inner;

/// Whether a journaled run may start ([`Inner::clear_to_start`]).
pub(crate) enum Clear {
    Go,
    /// The lease could not be proven here any more: not started.
    LeaseLost,
    /// Deleted or disabled through another instance (why).
    Stopped(String),
}

/// An answer about the stored job older than this (a slow or stalled
/// link held it back) may predate a delete that has answered since: the
/// job is read again.
const FRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// What a journaled run's record is written under: the instance's
/// silence count ([`Inner::liveness_mark`]) and the lease (fence) it was
/// journaled with.
pub(crate) struct Proof {
    pub mark: Option<u64>,
    pub fence: Option<Fence>,
}

impl Inner {
    /// The record of a run that did not happen, and why (counted).
    pub(crate) fn skipped_record(
        &self,
        id: &str,
        trigger: Trigger,
        point: Option<Timestamp>,
        ran_at: Timestamp,
        run_id: String,
        why: String,
    ) -> RunRecord {
        self.metrics.count(Outcome::Skipped);
        RunRecord {
            job_id: id.to_string(),
            ran_at,
            scheduled_at: point,
            trigger,
            outcome: Outcome::Skipped,
            number_of_retries: 0,
            execution_duration: 0,
            exit_code: None,
            error: Some(why),
            output: String::new(),
            run_id: Some(run_id),
            node: Some(self.config.node_id.clone()),
        }
    }

    /// Right before a journaled cluster run's process starts: the lease
    /// still holds here (monotonic clock), and the database says the job
    /// is neither deleted nor disabled. The stored job is read last, and
    /// read again when its answer took longer than [`FRESH`] (an answer
    /// held back by a stalled link may be older than a delete that other
    /// instance has already answered); after three slow answers the run
    /// goes on under its lease. A pause of this process after the check
    /// can still start it late: no check closes that window.
    pub(crate) async fn clear_to_start(&self, id: &str, token: u64) -> Clear {
        for _ in 0..3 {
            if !self.reprove_lease(id, token).await {
                return Clear::LeaseLost;
            }
            let asked = std::time::Instant::now();
            let why = self.stopped_elsewhere(id).await;
            if let Some(why) = why {
                return Clear::Stopped(why);
            }
            // A fresh answer, and the lease still held here after it (a
            // hand-over during the read ends it at once).
            if asked.elapsed() < FRESH && self.lease_proven(id, token) {
                return Clear::Go;
            }
            tracing::debug!(job = %id, "the stored job's answer was slow; asking again before the start");
        }
        if self.reprove_lease(id, token).await {
            Clear::Go
        } else {
            Clear::LeaseLost
        }
    }

    /// Why a run of `id` must not start because another instance deleted
    /// or disabled the job (the stored job says); `None` to go on (also
    /// when the store cannot answer: the journal entry is written and the
    /// lease holds).
    pub(crate) async fn stopped_elsewhere(&self, id: &str) -> Option<String> {
        match self.store.get(id).await {
            Ok(None) => Some(
                "the job was deleted through another instance while its run was being set up"
                    .into(),
            ),
            Ok(Some(j)) if j.disabled => Some(
                "the job was disabled through another instance while its run was being set up"
                    .into(),
            ),
            Ok(Some(_)) => None,
            Err(e) => {
                tracing::debug!(job = %id, error = %e, "cannot read the job before its run; it runs");
                None
            }
        }
    }

    /// A journaled run whose lease could not be proven before its
    /// process started: nothing is started, and the run is recorded
    /// `skipped` ("not started") through the late writer, which checks
    /// whether the instance that took the partition over recorded it
    /// `interrupted` meanwhile.
    pub(crate) async fn abandon_run(
        &self,
        id: &str,
        run_id: &str,
        trigger: Trigger,
        point: Option<Timestamp>,
        ran_at: Timestamp,
    ) {
        {
            let mut st = self.lock();
            st.running_end(id);
            if trigger == Trigger::Once {
                st.once_started.remove(id);
            }
        }
        if let Some(c) = &self.cluster {
            c.dropped().insert(kala_store::partition_of(id));
        }
        self.metrics.fenced();
        tracing::warn!(job = %id, run = %run_id, "not started: the lease could not be proven before the process started");
        let why = format!(
            "not started: {} could not prove the lease of the job's partition right before the process would start (paused or cut off since the run was journaled)",
            self.config.node_id
        );
        let record = self.skipped_record(id, trigger, point, ran_at, run_id.to_string(), why);
        // The late writer's way: the journal entry ends with this record
        // if it is still open; if the instance that took the partition
        // over recorded the run `interrupted`, this record supersedes it
        // (the run did not happen: no failure counted).
        self.keep_late(crate::late::LateRecord {
            job_id: id.to_string(),
            record,
            run_id: Some(run_id.to_string()),
            delta: RunDelta {
                point,
                ..RunDelta::default()
            },
            notices: Vec::new(),
        });
    }

    pub async fn record_skip(&self, id: &str, point: Timestamp, why: String) {
        self.record_skipped(id, Trigger::Schedule, Some(point), why)
            .await;
    }

    /// A run of `id` (`trigger`, `point`) that did not happen, recorded
    /// with why (and its point consumed).
    pub(crate) async fn record_skipped(
        &self,
        id: &str,
        trigger: Trigger,
        point: Option<Timestamp>,
        why: String,
    ) {
        let record = self.skipped_record(
            id,
            trigger,
            point,
            self.clock.now(),
            uuid::Uuid::new_v4().to_string(),
            why,
        );
        let delta = RunDelta {
            point,
            ..RunDelta::default()
        };
        self.persist_run(id, record, None, delta, None).await;
    }

    /// Stores a run record together with what it changes in its job (one
    /// atomic write with the end of its journal entry, `run_id`), then
    /// installs the change in memory and tells subscribers. Alone, the
    /// job is written whole from memory; in a cluster, the change is a
    /// delta the database applies to the stored job, so runs of one job
    /// on several instances all count. A job deleted meanwhile is not
    /// written back; its journal entry still ends.
    ///
    /// `proof` (how the run was journaled): if this instance went silent
    /// since, the record is handed to the late writer, which checks
    /// whether another instance recorded the run `interrupted`
    /// meanwhile, instead of being written beside that. The record is
    /// also written under the journal's lease: a write that waited on a
    /// stalled link until the partition changed hands is refused
    /// (`Fenced`) and goes the late writer's way too; a lease that merely
    /// ran out with no one taking it does not refuse it.
    pub async fn persist_run(
        &self,
        id: &str,
        record: RunRecord,
        run_id: Option<String>,
        delta: RunDelta,
        proof: Option<Proof>,
    ) {
        let (mark, fence) = proof.map_or((None, None), |p| (p.mark, p.fence));
        // Refused only if the partition changed hands, not because the
        // lease ran out meanwhile with no one taking it (Fence::for_record).
        let fence = fence.map(Fence::for_record);
        let _stripe = self.lock_stripes(&[id]).await;
        let end: Vec<String> = run_id.into_iter().collect();
        // Memory consumed the point when the timer fired (take_due).
        let in_memory = JobChange::Ran(RunDelta {
            point: None,
            ..delta.clone()
        });
        let job = {
            let st = self.lock();
            st.jobs.slot(id).and_then(|cur| {
                let mut job = cur.job()?;
                in_memory.apply(&mut job);
                job.is_done = cur.fire_at.is_none();
                Some(job)
            })
        };
        let Some(job) = job else {
            if !end.is_empty() {
                let batch = Batch {
                    end,
                    ..Batch::default()
                };
                if let Err(e) = self.store.apply(batch).await {
                    self.metrics.store_error();
                    tracing::error!(job = %id, error = %e, "cannot end the run of a deleted job in the journal: it is reported as interrupted at the next start");
                }
            }
            return;
        };
        let notices = crate::outbox::make_notices(
            &self.config.notify,
            &self.config.node_id,
            &job,
            NotifyOn::of(record.outcome),
            &record,
            self.clock.now(),
        );
        let wake = !notices.is_empty();
        let late = crate::late::LateRecord {
            job_id: id.to_string(),
            record: record.clone(),
            run_id: end.first().cloned(),
            delta: delta.clone(),
            notices: notices.clone(),
        };
        let batch = if self.cluster.is_some() {
            // Only the holder of the job's partition keeps its schedule:
            // another instance's record (a dispatched or manual run) does
            // not write what its memory, which does not arm the job, says
            // of the next run.
            let holder = self
                .cluster
                .as_ref()
                .is_some_and(|c| c.held().contains_key(&kala_store::partition_of(id)));
            Batch {
                update: vec![JobUpdate {
                    job_id: id.to_string(),
                    change: JobChange::Ran(RunDelta {
                        next_run_at: holder.then_some(job.next_run_at),
                        is_done: holder.then_some(job.is_done),
                        ..delta
                    }),
                }],
                ..Batch::default()
            }
        } else {
            Batch::put(job)
        };
        let batch = Batch {
            notices,
            runs: vec![record.clone()],
            keep_runs: self.config.keep_runs,
            end,
            fence,
            ..batch
        };
        if late.run_id.is_some() && mark.is_some_and(|m| self.silent_since(m)) {
            tracing::warn!(job = %id, run = ?late.run_id, "this instance went silent during the run (paused or cut off): its record is written by the late writer, which checks for an interrupted record of it first");
            self.keep_late(late);
        } else if let Err(e) = self.store.apply(batch).await {
            if matches!(e, kala_store::StoreError::Fenced(_)) {
                self.metrics.fenced();
            } else {
                self.metrics.store_error();
            }
            tracing::warn!(job = %id, run = ?late.run_id, error = %e, "cannot store the run now: its record waits in memory and is written when the store answers");
            self.keep_late(late);
        }
        if wake {
            self.outbox.wake.notify_one();
        }
        {
            let mut st = self.lock();
            let armed = st.jobs.slot(id).is_some_and(|s| s.fire_at.is_some());
            st.update(id, |cur| {
                in_memory.apply(cur);
                cur.is_done = !armed;
            });
        }
        let _ = self.events.send(Event::RunFinished(record));
    }
}
