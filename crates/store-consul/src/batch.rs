//! Batches on Consul: one transaction when a batch fits one (guarded by
//! check-and-set where it changes jobs in place or carries a lease's
//! fence), staged in chunks and rolled forward after a crash when it does
//! not.
//!
//! Owns: the operations of a batch, staging and recovery. Must not: speak
//! HTTP (`client`).

use std::collections::BTreeMap;

use kala_store::{Batch, Result, StoreError};
use serde::{Deserialize, Serialize};

use crate::client::{Op, VALUE_MAX_BYTES, chunks};
use crate::codec::{decode, decode_job, encode, lease_of, padded_ns};
use crate::store::ConsulStore;

/// Staged chunk values, at most (well under Consul's value limit).
const STAGE_CHUNK_BYTES: usize = 200 * 1024;

/// An operation as kept in a staged chunk.
#[derive(Serialize, Deserialize)]
enum Staged {
    #[serde(rename = "s")]
    Set(String, String),
    #[serde(rename = "d")]
    Delete(String),
    #[serde(rename = "t")]
    DeleteTree(String),
}

impl Staged {
    /// Checks are never staged (a guarded batch is one transaction).
    fn from_op(op: &Op) -> Option<Staged> {
        match op {
            Op::Set(k, v) | Op::Cas(k, v, _) => Some(Staged::Set(
                k.clone(),
                String::from_utf8_lossy(v).into_owned(),
            )),
            Op::Delete(k) => Some(Staged::Delete(k.clone())),
            Op::DeleteTree(k) => Some(Staged::DeleteTree(k.clone())),
            Op::CheckIndex(..) | Op::CheckNotExists(_) => None,
        }
    }

    fn into_op(self) -> Op {
        match self {
            Staged::Set(k, v) => Op::Set(k, v.into_bytes()),
            Staged::Delete(k) => Op::Delete(k),
            Staged::DeleteTree(k) => Op::DeleteTree(k),
        }
    }
}

impl ConsulStore {
    /// The operations of `batch`, in order: deletes, puts, runs (with the
    /// trimming `keep_runs` asks for), journal entries begun, then ended.
    async fn ops(&self, batch: &Batch) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        for id in &batch.delete {
            ops.push(Op::Delete(self.job_key(id)));
            ops.push(Op::DeleteTree(self.runs_prefix(id)));
            ops.push(Op::DeleteTree(self.claims_prefix(id)));
            self.drop_notices_ops(id, &mut ops);
        }
        for n in &batch.notices {
            self.notice_ops(n, &mut ops)?;
        }
        self.audit_ops(&batch.audit, &mut ops)?;
        for job in &batch.put {
            ops.push(Op::Set(self.job_key(&job.id), encode(job)?));
        }
        let mut added: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for run in &batch.runs {
            let key = format!(
                "{}{}-{}",
                self.runs_prefix(&run.job_id),
                padded_ns(run.ran_at),
                uuid::Uuid::new_v4().simple()
            );
            added
                .entry(run.job_id.as_str())
                .or_default()
                .push(key.clone());
            ops.push(Op::Set(key, encode(run)?));
        }
        if let Some(keep) = batch.keep_runs {
            for (id, new) in added {
                let mut keys = self.consul.keys(&self.runs_prefix(id)).await?;
                keys.extend(new);
                keys.sort();
                keys.dedup();
                let extra = keys.len().saturating_sub(keep);
                ops.extend(keys.into_iter().take(extra).map(Op::Delete));
            }
        }
        for open in &batch.begin {
            ops.push(Op::Set(self.open_key(&open.run_id), encode(open)?));
        }
        for run_id in &batch.end {
            ops.push(Op::Delete(self.open_key(run_id)));
        }
        for op in &ops {
            if let Op::Set(k, v) = op
                && v.len() > VALUE_MAX_BYTES
            {
                return Err(StoreError::Backend(format!(
                    "{k}: {} bytes is more than Consul stores in one value ({VALUE_MAX_BYTES})",
                    v.len()
                )));
            }
        }
        Ok(ops)
    }

    /// A batch larger than one transaction: its operations are written
    /// under `P/staged/<batch>/`, then one key `P/committed/<batch>` makes
    /// it count (the commit point), then they are applied and the staging
    /// removed. A crash before the commit point leaves nothing visible; a
    /// crash after it is finished at the next connect.
    async fn apply_staged(&self, ops: Vec<Op>) -> Result<()> {
        let _alone = self.staging.write().await;
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let mut staged = Vec::new();
        let mut chunk: Vec<Staged> = Vec::new();
        let mut bytes = 0;
        for op in &ops {
            if !chunk.is_empty() && bytes + op.size() > STAGE_CHUNK_BYTES {
                staged.push(std::mem::take(&mut chunk));
                bytes = 0;
            }
            bytes += op.size();
            chunk.extend(Staged::from_op(op));
        }
        if !chunk.is_empty() {
            staged.push(chunk);
        }
        let mut writes = Vec::new();
        for (i, c) in staged.iter().enumerate() {
            writes.push(Op::Set(
                format!("{}staged/{batch}/{i:06}", self.p),
                encode(c)?,
            ));
        }
        for t in chunks(&writes) {
            self.consul.txn(t).await?;
        }
        self.consul
            .txn(&[Op::Set(
                format!("{}committed/{batch}", self.p),
                staged.len().to_string().into_bytes(),
            )])
            .await?;
        // Committed: from here on the batch happened. A failure below is
        // finished by the next connect (or the next staged write).
        if let Err(e) = self.finish(&batch, ops).await {
            tracing::error!(batch = %batch, error = %e, "a committed batch is not fully applied yet; it is finished at the next start");
            return Err(e);
        }
        Ok(())
    }

    async fn finish(&self, batch: &str, ops: Vec<Op>) -> Result<()> {
        for t in chunks(&ops) {
            self.consul.txn(t).await?;
        }
        self.consul
            .txn(&[
                Op::DeleteTree(format!("{}staged/{batch}/", self.p)),
                Op::Delete(format!("{}committed/{batch}", self.p)),
            ])
            .await
    }

    /// Finishes committed batches; drops staging that never committed.
    pub(crate) async fn recover(&self) -> Result<()> {
        let _alone = self.staging.write().await;
        let committed = self
            .consul
            .list(&format!("{}committed/", self.p), true)
            .await?;
        for c in &committed {
            let Some(batch) = c.key.rsplit('/').next() else {
                continue;
            };
            let mut ops = Vec::new();
            for pair in self
                .consul
                .list(&format!("{}staged/{batch}/", self.p), true)
                .await?
            {
                let chunk: Vec<Staged> = decode(&pair.key, &pair.value)?;
                ops.extend(chunk.into_iter().map(Staged::into_op));
            }
            tracing::warn!(batch = %batch, operations = ops.len(), "finishing a batch a crash interrupted after its commit point");
            self.finish(batch, ops).await?;
        }
        let done: Vec<&str> = committed
            .iter()
            .filter_map(|c| c.key.rsplit('/').next())
            .collect();
        for key in self.consul.keys(&format!("{}staged/", self.p)).await? {
            let batch = key
                .trim_start_matches(&format!("{}staged/", self.p))
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            if !batch.is_empty() && !done.contains(&batch.as_str()) {
                tracing::warn!(batch = %batch, "dropping a batch a crash interrupted before its commit point");
                self.consul
                    .txn(&[Op::DeleteTree(format!("{}staged/{batch}/", self.p))])
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies `batch`: one transaction, or staged when larger than one.
    pub(crate) async fn apply_batch(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let announce: Vec<Op> = batch
            .changed_ids()
            .iter()
            .map(|id| self.change_op(id))
            .collect();
        if batch.fence.is_none() && batch.update.is_empty() {
            let mut ops = self.ops(&batch).await?;
            ops.extend(announce);
            let parts = chunks(&ops);
            if parts.len() <= 1 {
                let _read = self.staging.read().await;
                return self.consul.txn(&ops).await;
            }
            return self.apply_staged(ops).await;
        }
        // Guarded: the lease's fence and each job changed in place are
        // checked in the transaction that writes; a job changed meanwhile
        // is read again.
        for _ in 0..20 {
            let mut ops = Vec::new();
            if let Some(f) = &batch.fence {
                let key = self.lease_key(f.partition);
                let lease = self.consul.get(&key).await?;
                let held = lease.as_ref().and_then(|p| lease_of(f.partition, &p.value));
                match (&lease, held) {
                    (Some(pair), Some(l))
                        if l.owner == f.node && l.token == f.token && l.expires_at > f.now =>
                    {
                        ops.push(Op::CheckIndex(key, pair.modify_index));
                    }
                    _ => {
                        return Err(StoreError::Fenced(format!(
                            "{} no longer holds the lease of partition {} with token {}",
                            f.node, f.partition, f.token
                        )));
                    }
                }
            }
            for id in batch.updated_in_place() {
                let key = self.job_key(id);
                match self.consul.get(&key).await? {
                    None => ops.push(Op::CheckNotExists(key)),
                    Some(pair) => {
                        let mut job = decode_job(&key, &pair.value)?;
                        batch.apply_updates(&mut job);
                        ops.push(Op::Cas(key, encode(&job)?, pair.modify_index));
                    }
                }
            }
            // The rest as an unguarded batch would be, its puts updated.
            let rest = Batch {
                put: batch.puts_updated(),
                update: Vec::new(),
                ..batch.clone()
            };
            ops.extend(self.ops(&rest).await?);
            ops.extend(announce.iter().cloned());
            if chunks(&ops).len() > 1 {
                return Err(StoreError::Backend(format!(
                    "consul: a guarded batch of {} operations does not fit one transaction",
                    ops.len()
                )));
            }
            let _read = self.staging.read().await;
            if self.consul.txn_checked(&ops).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend(
            "consul: a job kept changing under a batch (20 tries)".into(),
        ))
    }
}
