//! The reading half of [`Engine`]: one job, every job (whole, by id, a
//! page at a time), run records, Kala's app stats, counts, and what the
//! store holds now in a cluster. Nothing here writes.

use std::sync::Arc;

use kala_job::wire::AppStats;
use kala_job::{Job, RunRecord};

use super::Engine;
use crate::config::EngineError;
use crate::jobs::{IdKey, Idx, JobRef};

impl Engine {
    /// The job as it is now (a shared snapshot: later changes make a new
    /// copy and leave this one as it was).
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.inner.lock().job(id).map(Arc::new)
    }

    /// Every job (a snapshot; each job is decoded from its compact form
    /// in memory, ~1 KB each: walk a large set with [`Engine::ids`] and
    /// [`Engine::get_many`] instead).
    pub fn list(&self) -> Vec<Arc<Job>> {
        self.inner.lock().jobs.iter().map(Arc::new).collect()
    }

    /// Every job's id, in id order: a snapshot of ~32 bytes per job, to
    /// walk every job a piece at a time with [`Engine::get_many`].
    pub fn ids(&self) -> Vec<JobRef> {
        let mut refs: Vec<JobRef> = self.inner.lock().jobs.refs().collect();
        refs.sort_unstable();
        refs
    }

    /// The jobs of `ids` that still exist, in that order.
    pub fn get_many(&self, ids: &[JobRef]) -> Vec<Arc<Job>> {
        let st = self.inner.lock();
        ids.iter()
            .filter_map(|r| st.jobs.get_ref(r).map(Arc::new))
            .collect()
    }

    /// Up to `limit` jobs with ids after `after`, in id order.
    pub fn list_page(&self, after: Option<&str>, limit: usize) -> Vec<Arc<Job>> {
        let after = after.map(IdKey::of);
        let st = self.inner.lock();
        let mut keys: Vec<(IdKey, Idx)> = st
            .jobs
            .keys()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .collect();
        if limit < keys.len() {
            keys.select_nth_unstable(limit);
            keys.truncate(limit);
        }
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|(_, idx)| st.jobs.get_at(idx).map(Arc::new))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The job's run records, oldest first (`limit`: only the newest).
    pub async fn runs(
        &self,
        id: &str,
        limit: Option<usize>,
    ) -> Result<Vec<RunRecord>, EngineError> {
        if !self.inner.lock().jobs.contains(id) {
            return Err(EngineError::NotFound(id.to_string()));
        }
        let mut runs = self.inner.store.runs(id, limit).await?;
        kala_store::settle_runs(&mut runs);
        Ok(runs)
    }

    /// Kala's app-level stats. `next_run_at` is the earliest pending run of
    /// an enabled job (never the zero time while one exists).
    pub fn app_stats(&self) -> AppStats {
        let st = self.inner.lock();
        let mut s = AppStats {
            created: Some(self.inner.clock.now()),
            next_run_at: st.queue.first().map(|(at, _)| *at),
            ..AppStats::default()
        };
        for (disabled, m) in st.jobs.slots().filter_map(|s| s.counters()) {
            s.jobs += 1;
            if disabled {
                s.disabled_jobs += 1;
            } else {
                s.active_jobs += 1;
            }
            s.error_count += m.error_count;
            s.success_count += m.success_count;
            if m.last_attempted_run > s.last_attempted_run {
                s.last_attempted_run = m.last_attempted_run;
            }
        }
        s
    }

    /// Jobs waiting in the timer queue.
    pub fn scheduled_count(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Runs executing now.
    pub fn running_count(&self) -> usize {
        self.inner.config.max_concurrent_runs.max(1) - self.inner.workers.available_permits()
    }

    /// Run records waiting in memory to be written (the store refused
    /// them when their runs ended; see `late`).
    pub fn late_records(&self) -> usize {
        self.inner.late.len()
    }

    /// The cluster as this instance sees it; `None` when it is alone.
    pub async fn cluster_status(&self) -> Result<Option<crate::ClusterStatus>, EngineError> {
        Ok(self.inner.cluster_status().await?)
    }

    /// This instance's tags (`EngineConfig::tags`).
    pub fn node_tags(&self) -> &std::collections::BTreeMap<String, String> {
        &self.inner.config.tags
    }

    /// This instance's name (`EngineConfig::node_id`).
    pub fn node_name(&self) -> &str {
        &self.inner.config.node_id
    }

    /// Partitions whose lease this instance holds (and has taken over);
    /// `None` when it is alone.
    pub fn partitions_held(&self) -> Option<usize> {
        self.inner
            .cluster
            .as_ref()
            .map(|c| c.held_partitions().len())
    }

    /// Whether this engine is one instance of a cluster.
    pub fn is_clustered(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// `jobs` as the store holds them now, in a cluster (counters of runs
    /// other instances did); alone, unchanged. Jobs deleted meanwhile are
    /// left out.
    pub async fn fresh(&self, jobs: Vec<Arc<Job>>) -> Result<Vec<Arc<Job>>, EngineError> {
        let Some(coord) = self
            .inner
            .store
            .coordination()
            .filter(|_| self.is_clustered())
        else {
            return Ok(jobs);
        };
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let mut stored: std::collections::HashMap<String, Job> = coord
            .get_many(&ids)
            .await?
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect();
        Ok(jobs
            .into_iter()
            .filter_map(|mem| {
                let mut job = stored.remove(&mem.id)?;
                job.next_run_at = job.next_run_at.or(mem.next_run_at);
                Some(Arc::new(job))
            })
            .collect())
    }

    /// The job as the store holds it now, in a cluster (another instance
    /// may have run it since this memory last heard); alone, the same as
    /// [`Engine::get`].
    pub async fn fetch(&self, id: &str) -> Result<Option<Arc<Job>>, EngineError> {
        let Some(mem) = self.get(id) else {
            return Ok(None);
        };
        if self.inner.cluster.is_none() {
            return Ok(Some(mem));
        }
        match self.inner.store.get(id).await? {
            Some(mut job) => {
                job.next_run_at = job.next_run_at.or(mem.next_run_at);
                Ok(Some(Arc::new(job)))
            }
            None => Ok(None),
        }
    }
}
