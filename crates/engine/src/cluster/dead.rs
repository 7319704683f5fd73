//! The runs of instances that are gone: recorded `interrupted` by the
//! holder of their partition, under its lease (takeover and the sweep).

use std::collections::HashMap;

use kala_store::{Batch, JobChange, JobUpdate, OpenRun, partition_of};

use crate::state::Inner;

impl Inner {
    /// Records open runs of instances that are gone as interrupted, with
    /// their jobs' counters moved on in the database and in memory.
    ///
    /// Each partition's records are written in a batch fenced with this
    /// instance's lease of it (`tokens`): only the holder declares a run
    /// interrupted, so a write of this instance that waited on a stalled
    /// link or a pause while the partition changed hands again (and the
    /// run's own instance came back and wrote its real record) is
    /// refused instead of counting the run twice.
    pub(crate) async fn record_dead_runs(
        &self,
        dead: Vec<OpenRun>,
        tokens: &HashMap<u32, u64>,
    ) -> Result<(), kala_store::StoreError> {
        let mut by_partition: HashMap<u32, Vec<OpenRun>> = HashMap::new();
        for r in dead {
            by_partition
                .entry(partition_of(&r.job_id))
                .or_default()
                .push(r);
        }
        for (partition, runs) in by_partition {
            let Some(token) = tokens.get(&partition) else {
                continue;
            };
            let fence = kala_store::Fence {
                partition,
                node: self.config.node_id.clone(),
                token: *token,
                now: self.clock.now(),
            };
            match self.record_dead_runs_of(runs, fence).await {
                Err(kala_store::StoreError::Fenced(e)) => {
                    tracing::info!(partition, error = %e, "not recording a dead instance's runs: the partition changed hands");
                }
                other => other?,
            }
        }
        Ok(())
    }

    async fn record_dead_runs_of(
        &self,
        dead: Vec<OpenRun>,
        fence: kala_store::Fence,
    ) -> Result<(), kala_store::StoreError> {
        if dead.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let out = crate::journal::interrupted(&dead, None, now);
        let update: Vec<JobUpdate> = out
            .deltas
            .iter()
            .map(|(id, d)| JobUpdate {
                job_id: id.clone(),
                change: JobChange::Ran(d.clone()),
            })
            .collect();
        let notices: Vec<_> = out
            .records
            .iter()
            .flat_map(|r| self.notices_of_run(&r.job_id, kala_job::NotifyOn::Interrupted, r))
            .collect();
        self.store
            .apply(Batch {
                notices,
                runs: out.records,
                update,
                keep_runs: self.config.keep_runs,
                end: dead.iter().map(|r| r.run_id.clone()).collect(),
                fence: Some(fence),
                ..Batch::default()
            })
            .await?;
        let mut st = self.lock();
        for (id, d) in out.deltas {
            st.update(&id, |job| JobChange::Ran(d).apply(job));
        }
        for r in &dead {
            self.metrics.count(kala_job::Outcome::Interrupted);
            tracing::warn!(job = %r.job_id, run = %r.run_id, node = %r.node,
                "run of an instance that is gone recorded as interrupted");
        }
        Ok(())
    }
}
