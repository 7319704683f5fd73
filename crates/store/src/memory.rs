//! An in-memory store: for tests, for `--no-persist`, and for programs that
//! embed the engine without persistence. Same semantics as the durable
//! stores, minus durability. With [`MemoryStore::shared`] it also
//! implements [`Coordination`], so that several engines in one process
//! (tests of the cluster logic with a fake clock) can share it as
//! instances share a database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, JobId, RunRecord};

use crate::{
    AuditEntry, Batch, Claim, Coordination, JobStore, Lease, LeaseRequest, NodeInfo, Notice,
    OpenRun, Result, Retention, StoreError, oldest_first, soonest, trim_oldest,
};

#[derive(Default)]
struct Inner {
    /// Packed (`kala_job::packed`): a fraction of a `Job`'s memory.
    jobs: HashMap<JobId, Box<[u8]>>,
    runs: HashMap<JobId, Vec<RunRecord>>,
    claims: BTreeMap<(JobId, i128), (String, Timestamp)>,
    open: HashMap<String, OpenRun>,
    notices: HashMap<String, Notice>,
    /// By id (time order).
    audit: BTreeMap<String, AuditEntry>,
    nodes: BTreeMap<String, NodeInfo>,
    leases: BTreeMap<u32, Lease>,
    /// (sequence, job id, when).
    changes: Vec<(u64, JobId, Timestamp)>,
    seq: u64,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    shared: bool,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A memory store that offers [`Coordination`]: several engines in
    /// one process form a cluster on it.
    pub fn shared() -> MemoryStore {
        MemoryStore {
            shared: true,
            ..MemoryStore::default()
        }
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
        self.lock()?
            .jobs
            .iter()
            .map(|(id, b)| unpack(id, b))
            .collect()
    }

    async fn load_packed(&self) -> Result<Vec<Box<[u8]>>> {
        Ok(self.lock()?.jobs.values().cloned().collect())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        self.lock()?.jobs.get(id).map(|b| unpack(id, b)).transpose()
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        let mut g = self.lock()?;
        if !self.shared && !batch.update.is_empty() {
            return Err(StoreError::Backend(
                "job updates need a shared store (MemoryStore::shared)".into(),
            ));
        }
        if let Some(f) = &batch.fence {
            let held = g
                .leases
                .get(&f.partition)
                .is_some_and(|l| l.owner == f.node && l.token == f.token && l.expires_at > f.now);
            if !held {
                return Err(StoreError::Fenced(format!(
                    "{} no longer holds the lease of partition {} (token {})",
                    f.node, f.partition, f.token
                )));
            }
        }
        let changed = batch.changed_ids();
        for id in &batch.delete {
            g.jobs.remove(id);
            g.runs.remove(id);
            g.claims.retain(|(j, _), _| j != id);
            g.notices.retain(|_, n| n.job_id != *id);
        }
        for n in batch.notices {
            g.notices.insert(n.id.clone(), n);
        }
        for e in batch.audit {
            g.audit.insert(e.id.clone(), e);
        }
        for job in batch.put {
            let packed = kala_job::packed::encode(&job).into_boxed_slice();
            g.jobs.insert(job.id, packed);
        }
        for u in &batch.update {
            if let Some(b) = g.jobs.get_mut(&u.job_id) {
                let mut job = unpack(&u.job_id, b)?;
                u.change.apply(&mut job);
                *b = kala_job::packed::encode(&job).into_boxed_slice();
            }
        }
        if self.shared {
            let now = Timestamp::now();
            for id in changed {
                g.seq += 1;
                let seq = g.seq;
                g.changes.push((seq, id, now));
            }
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

    /// Membership and leases stay (they are not job data, and a lease
    /// token must never go back); followers hear `*`: reload everything.
    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()> {
        let mut g = self.lock()?;
        for e in audit {
            g.audit.insert(e.id.clone(), e);
        }
        g.jobs.clear();
        g.runs.clear();
        g.claims.clear();
        g.open.clear();
        g.notices.clear();
        if self.shared {
            g.seq += 1;
            let seq = g.seq;
            g.changes
                .push((seq, crate::ALL_JOBS.into(), Timestamp::now()));
        }
        Ok(())
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        Ok(self.lock()?.open.values().cloned().collect())
    }

    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let g = self.lock()?;
        let pending = g.notices.values().filter(|n| n.is_pending()).cloned();
        Ok(soonest(pending.collect(), limit))
    }

    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>> {
        let g = self.lock()?;
        let mut out: Vec<Notice> = g
            .notices
            .values()
            .filter(|n| n.job_id == job_id)
            .cloned()
            .collect();
        oldest_first(&mut out);
        Ok(out)
    }

    async fn prune_notices(&self, before: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let n = g.notices.len();
        g.notices
            .retain(|_, n| n.is_pending() || n.done_at.is_none_or(|d| d >= before));
        Ok((n - g.notices.len()) as u64)
    }

    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let g = self.lock()?;
        use std::ops::Bound;
        let end = before.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(g.audit
            .range::<str, _>((Bound::Unbounded, end))
            .rev()
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        let mut g = self.lock()?;
        let n = g.audit.len();
        g.audit.retain(|_, e| e.at >= before);
        Ok((n - g.audit.len()) as u64)
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

    fn coordination(&self) -> Option<&dyn Coordination> {
        if self.shared { Some(self) } else { None }
    }
}

#[async_trait]
impl Coordination for MemoryStore {
    async fn heartbeat(&self, node: &NodeInfo) -> Result<Vec<NodeInfo>> {
        let mut g = self.lock()?;
        g.nodes.insert(node.name.clone(), node.clone());
        let forget = node.heartbeat_at - jiff::SignedDuration::from_hours(1);
        g.nodes.retain(|_, n| n.expires_at > forget);
        Ok(g.nodes.values().cloned().collect())
    }

    async fn leave(&self, node: &str) -> Result<()> {
        let mut g = self.lock()?;
        g.nodes.remove(node);
        for l in g.leases.values_mut().filter(|l| l.owner == node) {
            l.expires_at = Timestamp::UNIX_EPOCH;
        }
        Ok(())
    }

    async fn lease(&self, req: LeaseRequest) -> Result<Vec<Lease>> {
        let mut g = self.lock()?;
        let until = req.now + req.ttl;
        for &p in &req.take {
            match g.leases.get_mut(&p) {
                Some(l) if l.takeable(&req) => {
                    if l.owner != req.node {
                        l.owner = req.node.clone();
                        l.token += 1;
                    }
                    l.expires_at = until;
                }
                Some(_) => {}
                None => {
                    g.leases.insert(
                        p,
                        Lease {
                            partition: p,
                            owner: req.node.clone(),
                            token: 1,
                            expires_at: until,
                        },
                    );
                }
            }
        }
        for p in &req.release {
            if let Some(l) = g.leases.get_mut(p).filter(|l| l.owner == req.node) {
                l.expires_at = Timestamp::UNIX_EPOCH;
            }
        }
        Ok(g.leases.values().cloned().collect())
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self.lock()?.leases.values().cloned().collect())
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<(u64, JobId)>> {
        let g = self.lock()?;
        Ok(g.changes
            .iter()
            .filter(|(s, _, _)| *s > after)
            .take(limit)
            .map(|(s, id, _)| (*s, id.clone()))
            .collect())
    }

    async fn last_change(&self) -> Result<u64> {
        Ok(self.lock()?.seq)
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<()> {
        self.lock()?.changes.retain(|(_, _, at)| *at >= before);
        Ok(())
    }

    fn commit_ordered(&self) -> bool {
        true
    }

    async fn get_many(&self, ids: &[JobId]) -> Result<Vec<Job>> {
        let g = self.lock()?;
        ids.iter()
            .filter_map(|id| g.jobs.get(id).map(|b| unpack(id, b)))
            .collect()
    }
}

/// A job this store packed. Its own bytes in memory: an error here is a
/// bug, reported rather than panicked on.
fn unpack(id: &str, bytes: &[u8]) -> Result<Job> {
    kala_job::packed::decode(bytes).map_err(|e| StoreError::Corrupt {
        key: id.to_string(),
        reason: e.to_string(),
    })
}
