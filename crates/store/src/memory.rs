//! An in-memory store: for tests, for `--no-persist`, and for programs that
//! embed the engine without persistence. Same semantics as the durable
//! stores, minus durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, JobId, RunRecord};

use crate::{Batch, Claim, JobStore, OpenRun, Result, Retention, StoreError, trim_oldest};

#[derive(Default)]
struct Inner {
    jobs: HashMap<JobId, Job>,
    runs: HashMap<JobId, Vec<RunRecord>>,
    claims: BTreeMap<(JobId, i128), (String, Timestamp)>,
    open: HashMap<String, OpenRun>,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        Ok(self.lock()?.jobs.values().cloned().collect())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.lock()?.jobs.get(id).cloned())
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        let mut g = self.lock()?;
        for id in &batch.delete {
            g.jobs.remove(id);
            g.runs.remove(id);
            g.claims.retain(|(j, _), _| j != id);
        }
        for job in batch.put {
            g.jobs.insert(job.id.clone(), job);
        }
        let mut touched = Vec::new();
        for run in batch.runs {
            touched.push(run.job_id.clone());
            let list = g.runs.entry(run.job_id.clone()).or_default();
            // Kept ordered by start time even when appended out of order.
            let at = list.partition_point(|r| r.ran_at <= run.ran_at);
            list.insert(at, run);
        }
        if let Some(keep) = batch.keep_runs {
            for id in touched {
                if let Some(list) = g.runs.get_mut(&id) {
                    trim_oldest(list, keep);
                }
            }
        }
        for run in batch.begin {
            g.open.insert(run.run_id.clone(), run);
        }
        for id in &batch.end {
            g.open.remove(id);
        }
        Ok(())
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let g = self.lock()?;
        let list = g.runs.get(job_id).map(Vec::as_slice).unwrap_or(&[]);
        let from = limit.map_or(0, |l| list.len().saturating_sub(l));
        Ok(list[from..].to_vec())
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let mut dropped = 0u64;
        let cutoff = retention.max_age.and_then(|age| now.checked_sub(age).ok());
        for list in g.runs.values_mut() {
            if let Some(cutoff) = cutoff {
                let old = list.partition_point(|r| r.ran_at < cutoff);
                list.drain(..old);
                dropped += old as u64;
            }
            if let Some(keep) = retention.max_per_job {
                dropped += trim_oldest(list, keep) as u64;
            }
        }
        g.runs.retain(|_, l| !l.is_empty());
        g.claims.retain(|_, (_, exp)| *exp > now);
        Ok(dropped)
    }

    async fn delete_all(&self) -> Result<()> {
        let mut g = self.lock()?;
        *g = Inner::default();
        Ok(())
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        Ok(self.lock()?.open.values().cloned().collect())
    }

    async fn claim(&self, claim: Claim) -> Result<bool> {
        let mut g = self.lock()?;
        let key = (claim.job_id, claim.scheduled_at.as_nanosecond());
        let now = Timestamp::now();
        match g.claims.get(&key) {
            Some((owner, exp)) if *exp > now && *owner != claim.owner => Ok(false),
            _ => {
                g.claims.insert(key, (claim.owner, claim.expires_at));
                Ok(true)
            }
        }
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
