//! Run records written late, never lost: a run that finished while the
//! store could not be written (the instance cut off from its database,
//! the disk full) keeps its record here, in memory, bounded, and the late
//! writer stores it when the store answers again.
//!
//! Owns: [`Inner::late_loop`] and the writes; the queue is `queue.rs`.
//! Must not: decide outcomes or touch the queue of runs.
//!
//! In a cluster, the instance that took the partition over meanwhile may
//! have recorded the run `interrupted` (it found the journal entry of an
//! instance it believed dead). The record is written idempotently by run
//! id: if the journal entry is still open, as a normal record (ending
//! the entry); if it is gone and the job's records hold this run's
//! `interrupted` record, the real one is added beside it with the
//! interrupted record's counters taken back (`JobChange::Superseded`), and
//! readers see only the real one (`kala_store::settle_runs`); if they
//! already hold the real one (an earlier write whose answer was lost),
//! nothing is written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kala_job::{Outcome, RunRecord};
use kala_store::{Batch, JobChange, JobUpdate};

use crate::state::Inner;

pub(crate) use queue::LateRecord;

pub(crate) mod queue;

/// How the late writer found a run in the store.
enum Found {
    /// Its journal entry is open: nobody recorded it.
    Open,
    /// Recorded `interrupted` by the instance that took over.
    Interrupted,
    /// Its real record is stored (an earlier write went through).
    Stored,
    /// Neither: the job was deleted, or its records pruned.
    Gone,
}

impl Inner {
    /// Keeps a record the store refused, for the late writer.
    pub(crate) fn keep_late(&self, r: LateRecord) {
        if let Some(old) = self.late.push(r) {
            self.metrics.run_dropped();
            tracing::error!(job = %old.job_id, run = ?old.run_id, "too many run records wait to be written; the oldest is dropped");
        }
        self.late.wake.notify_one();
    }

    /// Writes late records while there are any, until shutdown (and once
    /// more then).
    pub async fn late_loop(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        // In a cluster, a record is written only once the store has
        // answered for a while: an instance taking over this one's
        // partitions in the belief it is dead finishes its takeover (and
        // its `interrupted` records) within a lease and a round.
        let settle = match self.cluster {
            Some(_) => {
                std::time::Duration::try_from(self.config.lease_ttl + self.config.heartbeat * 2)
                    .unwrap_or(Duration::from_secs(5))
            }
            None => Duration::ZERO,
        };
        let mut reachable_since: Option<Instant> = None;
        loop {
            if self.late.len() == 0 {
                reachable_since = None;
                tokio::select! {
                    _ = self.late.wake.notified() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            let stop = *shutdown.borrow();
            match self.store.open_runs().await {
                Ok(open) => {
                    let since = *reachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= settle || stop {
                        let open: std::collections::HashSet<String> =
                            open.into_iter().map(|o| o.run_id).collect();
                        if let Err(e) = self.write_late(&open).await {
                            reachable_since = None;
                            tracing::debug!(error = %e, "late run records still cannot be written");
                        }
                    }
                }
                Err(_) => reachable_since = None,
            }
            if stop {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Writes the waiting records, oldest first, until one fails.
    async fn write_late(
        &self,
        open: &std::collections::HashSet<String>,
    ) -> Result<(), kala_store::StoreError> {
        while let Some(late) = self.late.front() {
            let found = match &late.run_id {
                Some(r) if open.contains(r) => Found::Open,
                None => Found::Open,
                Some(r) => {
                    let runs = self.store.runs(&late.job_id, None).await?;
                    let mine: Vec<&RunRecord> = runs
                        .iter()
                        .filter(|x| x.run_id.as_deref() == Some(r.as_str()))
                        .collect();
                    if mine.iter().any(|x| x.outcome != Outcome::Interrupted) {
                        Found::Stored
                    } else if mine.is_empty() {
                        Found::Gone
                    } else {
                        Found::Interrupted
                    }
                }
            };
            let batch = match found {
                Found::Stored => None,
                Found::Gone => {
                    self.metrics.run_dropped();
                    tracing::warn!(job = %late.job_id, run = ?late.run_id, "a late run record has nowhere to go (its job was deleted or its records pruned); dropped");
                    None
                }
                Found::Open => Some(self.late_batch(&late, false)),
                Found::Interrupted => Some(self.late_batch(&late, true)),
            };
            if let Some(batch) = batch {
                self.store.apply(batch).await?;
                self.metrics.late_written();
                tracing::info!(job = %late.job_id, run = ?late.run_id, outcome = ?late.record.outcome,
                    "a run record that could not be written when its run ended is stored now");
                if !late.notices.is_empty() {
                    self.outbox.wake.notify_one();
                }
            }
            self.late.pop();
        }
        Ok(())
    }

    /// The write of a late record: with the end of its journal entry
    /// (open), or superseding the `interrupted` record another instance
    /// wrote for the same run (its counters taken back; the point was
    /// consumed by it). Alone, the job is written whole from memory (its
    /// counters there already count the run).
    fn late_batch(&self, late: &LateRecord, supersede: bool) -> Batch {
        let mut batch = Batch {
            runs: vec![late.record.clone()],
            notices: late.notices.clone(),
            keep_runs: self.config.keep_runs,
            ..Batch::default()
        };
        if self.cluster.is_none() {
            if let Some(job) = self.lock().job(&late.job_id) {
                batch.put = vec![job];
            }
            batch.end = late.run_id.iter().cloned().collect();
            return batch;
        }
        let mut delta = late.delta.clone();
        if supersede {
            delta.point = None;
            batch.update.push(JobUpdate {
                job_id: late.job_id.clone(),
                change: JobChange::Superseded(crate::journal::interrupted_delta()),
            });
        } else {
            batch.end = late.run_id.iter().cloned().collect();
        }
        batch.update.push(JobUpdate {
            job_id: late.job_id.clone(),
            change: JobChange::Ran(delta),
        });
        batch
    }
}
