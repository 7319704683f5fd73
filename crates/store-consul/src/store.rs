//! [`ConsulStore`]: kala's layout in Consul's KV store, reads, retention,
//! claims by check-and-set.
//!
//! Owns: the key layout and [`ConsulStore`]; a batch's operations, staging
//! and roll-forward are `batch`'s. Must not: speak HTTP (`client`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::{AuditEntry, Batch, Claim, JobStore, Notice, OpenRun, Result, Retention, ns_i64};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::address::ConsulOptions;
use crate::client::{Consul, Op, chunks};
use crate::codec::{decode, decode_job, encode, ns_of_key, padded_ns};

/// Hex digits: jobs are read in 16 slices by the first character of their
/// id (ids are UUIDs), so no answer holds every job at once.
const SLICES: &str = "0123456789abcdef";

/// A claim's value.
#[derive(Serialize, Deserialize)]
struct Held {
    owner: String,
    expires_at: i64,
}

pub struct ConsulStore {
    pub(crate) consul: Consul,
    /// `P/` (the prefix with its slash).
    pub(crate) p: String,
    /// Woken when a change may have been written (a blocking query on
    /// `P/changes/` in a task of its own).
    pub(crate) signal: std::sync::Arc<tokio::sync::Notify>,
    /// Readers share it; a staged batch holds it alone while it is applied,
    /// so no read in this process sees half of it.
    pub(crate) staging: RwLock<()>,
}

impl ConsulStore {
    /// Connects (failing if Consul does not answer now), then finishes a
    /// large batch a crash interrupted after its commit point and drops
    /// one interrupted before it.
    pub async fn connect(options: &ConsulOptions) -> Result<ConsulStore> {
        let consul = Consul::new(options).await?;
        consul.leader().await?;
        let p = format!("{}/", options.prefix()?);
        let signal = consul.watch(format!("{p}changes/"));
        let store = ConsulStore {
            consul,
            p,
            signal,
            staging: RwLock::new(()),
        };
        store.recover().await?;
        Ok(store)
    }

    pub(crate) fn lease_key(&self, partition: u32) -> String {
        format!("{}leases/{partition:03}", self.p)
    }

    /// The operation that announces a change of `id`: a key of its own
    /// under `P/changes/`, whose modify index (Consul's Raft index, in
    /// commit order) is the change's sequence number.
    pub(crate) fn change_op(&self, id: &str) -> Op {
        let now = Timestamp::now().as_nanosecond();
        Op::Set(
            format!(
                "{}changes/{}-{}",
                self.p,
                padded_ns(Timestamp::now()),
                uuid::Uuid::new_v4().simple()
            ),
            format!("{now}|{id}").into_bytes(),
        )
    }

    pub(crate) fn job_key(&self, id: &str) -> String {
        format!("{}jobs/{id}", self.p)
    }

    pub(crate) fn runs_prefix(&self, id: &str) -> String {
        format!("{}runs/{id}/", self.p)
    }

    pub(crate) fn claims_prefix(&self, id: &str) -> String {
        format!("{}claims/{id}/", self.p)
    }

    pub(crate) fn open_key(&self, run_id: &str) -> String {
        format!("{}open_runs/{run_id}", self.p)
    }
}

#[async_trait]
impl JobStore for ConsulStore {
    fn name(&self) -> &'static str {
        "consul"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        let _read = self.staging.read().await;
        let base = format!("{}jobs/", self.p);
        let mut jobs = Vec::new();
        for c in SLICES.chars() {
            for pair in self.consul.list(&format!("{base}{c}"), true).await? {
                jobs.push(decode_job(&pair.key, &pair.value)?);
            }
        }
        // Ids that do not start with a lowercase hex digit (not written by
        // kala or Kala, whose ids are UUIDs): found by their keys alone.
        for key in self.consul.keys(&base).await? {
            let first = key[base.len().min(key.len())..].chars().next();
            if first.is_some_and(|c| !SLICES.contains(c))
                && let Some(pair) = self.consul.get(&key).await?
            {
                jobs.push(decode_job(&pair.key, &pair.value)?);
            }
        }
        Ok(jobs)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let _read = self.staging.read().await;
        let key = self.job_key(id);
        match self.consul.get(&key).await? {
            Some(pair) => decode_job(&key, &pair.value).map(Some),
            None => Ok(None),
        }
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        self.apply_batch(batch).await
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let _read = self.staging.read().await;
        let mut pairs = self.consul.list(&self.runs_prefix(job_id), false).await?;
        pairs.sort_by(|a, b| a.key.cmp(&b.key));
        let from = limit.map_or(0, |l| pairs.len().saturating_sub(l));
        pairs[from..]
            .iter()
            .map(|p| decode(&p.key, &p.value))
            .collect()
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut doomed = Vec::new();
        let keys = self.consul.keys(&format!("{}runs/", self.p)).await?;
        let cutoff = retention
            .max_age
            .and_then(|age| now.checked_sub(age).ok())
            .map(|t| t.as_nanosecond());
        let mut by_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in keys {
            if let (Some(cutoff), Some(ns)) = (cutoff, ns_of_key(&key))
                && ns < cutoff
            {
                doomed.push(key);
                continue;
            }
            let job = key
                .rsplit_once('/')
                .map(|(j, _)| j.to_string())
                .unwrap_or_default();
            by_job.entry(job).or_default().push(key);
        }
        if let Some(keep) = retention.max_per_job {
            for (_, mut keys) in by_job {
                keys.sort();
                let extra = keys.len().saturating_sub(keep);
                doomed.extend(keys.into_iter().take(extra));
            }
        }
        let dropped = doomed.len() as u64;
        let mut ops: Vec<Op> = doomed.into_iter().map(Op::Delete).collect();
        let now_ns = ns_i64(now)?;
        for pair in self
            .consul
            .list(&format!("{}claims/", self.p), false)
            .await?
        {
            if let Ok(h) = serde_json::from_slice::<Held>(&pair.value)
                && h.expires_at <= now_ns
            {
                ops.push(Op::Delete(pair.key));
            }
        }
        for t in chunks(&ops) {
            self.consul.txn(t).await?;
        }
        Ok(dropped)
    }

    /// The job data goes; nodes, leases and the change sequence stay
    /// (a lease token must never go back), and followers hear "reload
    /// everything".
    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()> {
        let _alone = self.staging.write().await;
        let mut ops: Vec<Op> = [
            "jobs/",
            "runs/",
            "claims/",
            "open_runs/",
            "notices/",
            "pending_notices/",
            "staged/",
            "committed/",
        ]
        .iter()
        .map(|t| Op::DeleteTree(format!("{}{t}", self.p)))
        .collect();
        ops.push(self.change_op(kala_store::ALL_JOBS));
        // With the audit entries, in one transaction (up to Consul's 64
        // operations; a larger delete_all entry list is not made).
        self.audit_ops(&audit, &mut ops)?;
        self.consul.txn(&ops).await
    }

    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let _read = self.staging.read().await;
        self.audit_page(before, limit).await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        self.prune_audit_before(before).await
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        let _read = self.staging.read().await;
        self.consul
            .list(&format!("{}open_runs/", self.p), true)
            .await?
            .iter()
            .map(|p| decode(&p.key, &p.value))
            .collect()
    }

    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let _read = self.staging.read().await;
        self.pending_notices_of(limit).await
    }

    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>> {
        let _read = self.staging.read().await;
        self.notices_of(job_id).await
    }

    async fn prune_notices(&self, before: Timestamp) -> Result<u64> {
        self.prune_notices_before(before).await
    }

    /// Check-and-set on `P/claims/<id>/<occurrence>`: written only if
    /// absent, or still at the index read when it is ours or expired.
    async fn claim(&self, claim: Claim) -> Result<bool> {
        let key = format!(
            "{}{}",
            self.claims_prefix(&claim.job_id),
            padded_ns(claim.scheduled_at)
        );
        let value = encode(&Held {
            owner: claim.owner.clone(),
            expires_at: ns_i64(claim.expires_at)?,
        })?;
        let now = ns_i64(Timestamp::now())?;
        match self.consul.get(&key).await? {
            None => self.consul.cas(&key, &value, 0).await,
            Some(pair) => {
                let held: Option<Held> = serde_json::from_slice(&pair.value).ok();
                match held {
                    Some(h) if h.expires_at > now && h.owner != claim.owner => Ok(false),
                    _ => self.consul.cas(&key, &value, pair.modify_index).await,
                }
            }
        }
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    fn coordination(&self) -> Option<&dyn kala_store::Coordination> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_sort_by_time_and_give_it_back() {
        let a: Timestamp = "1960-01-01T00:00:00Z".parse().unwrap();
        let b: Timestamp = "2030-01-01T00:00:00.000000001Z".parse().unwrap();
        assert!(padded_ns(a) < padded_ns(b));
        let key = format!("kala/runs/x/{}-abc", padded_ns(b));
        assert_eq!(ns_of_key(&key), Some(b.as_nanosecond()));
    }
}
