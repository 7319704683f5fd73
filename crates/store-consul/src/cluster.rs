//! [`Coordination`] on Consul's KV store: `P/nodes/<name>` (heartbeat
//! JSON), `P/leases/<partition>` (`token|expiry ns|owner`, changed only by
//! check-and-set in one transaction per round), `P/changes/<time>-<uuid>`
//! (`time ns|job id`, written in the batch's transaction; its modify
//! index — Consul's Raft index, in commit order — is the sequence
//! number) watched with a blocking query.
//!
//! Owns: the cluster reads and writes (the watcher task is the
//! client's `Consul::watch`). Must not: decide
//! who owns what (the engine does).

use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId};
use kala_store::{Coordination, JobStore, Lease, LeaseRequest, NodeInfo, PARTITIONS, Result};
use tokio::sync::Notify;

use crate::client::{Op, chunks};
use crate::codec::{decode, encode, lease_of, lease_value};
use crate::store::ConsulStore;

impl ConsulStore {
    /// Every lease with its key's modify index.
    async fn lease_pairs(&self) -> Result<Vec<(Lease, u64)>> {
        let prefix = format!("{}leases/", self.p);
        let mut out = Vec::new();
        for pair in self.consul.list(&prefix, true).await? {
            let Some(part) = pair.key[prefix.len().min(pair.key.len())..]
                .parse::<u32>()
                .ok()
            else {
                continue;
            };
            if let Some(l) = lease_of(part, &pair.value) {
                out.push((l, pair.modify_index));
            }
        }
        out.sort_by_key(|(l, _)| l.partition);
        Ok(out)
    }
}

#[async_trait]
impl Coordination for ConsulStore {
    async fn heartbeat(&self, node: &NodeInfo) -> Result<Vec<NodeInfo>> {
        let prefix = format!("{}nodes/", self.p);
        self.consul
            .txn(&[Op::Set(format!("{prefix}{}", node.name), encode(node)?)])
            .await?;
        let forget = node.heartbeat_at - SignedDuration::from_hours(1);
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for pair in self.consul.list(&prefix, true).await? {
            let n: NodeInfo = decode(&pair.key, &pair.value)?;
            if n.expires_at < forget {
                gone.push(Op::Delete(pair.key));
            } else {
                out.push(n);
            }
        }
        for t in chunks(&gone) {
            self.consul.txn(t).await?;
        }
        Ok(out)
    }

    async fn leave(&self, node: &str) -> Result<()> {
        let mut ops = vec![Op::Delete(format!("{}nodes/{node}", self.p))];
        for (l, index) in self.lease_pairs().await? {
            if l.owner == node {
                ops.push(Op::Cas(
                    self.lease_key(l.partition),
                    lease_value(l.token, Timestamp::UNIX_EPOCH, node),
                    index,
                ));
            }
        }
        // A lease renewed meanwhile by this node is freed at the next try
        // or runs out by itself.
        for t in chunks(&ops) {
            self.consul.txn_checked(t).await?;
        }
        Ok(())
    }

    async fn lease(&self, req: LeaseRequest) -> Result<Vec<Lease>> {
        let until = req.now + req.ttl;
        let current = self.lease_pairs().await?;
        let mut after: Vec<Lease> = current.iter().map(|(l, _)| l.clone()).collect();
        let mut ops = Vec::new();
        for &p in &req.take {
            if p >= PARTITIONS {
                continue;
            }
            match current.iter().position(|(l, _)| l.partition == p) {
                None => {
                    ops.push(Op::Cas(
                        self.lease_key(p),
                        lease_value(1, until, &req.node),
                        0,
                    ));
                    after.push(Lease {
                        partition: p,
                        owner: req.node.clone(),
                        token: 1,
                        expires_at: until,
                    });
                }
                Some(i) => {
                    let (l, index) = &current[i];
                    if !l.takeable(&req) {
                        continue;
                    }
                    let token = if l.owner == req.node {
                        l.token
                    } else {
                        l.token + 1
                    };
                    ops.push(Op::Cas(
                        self.lease_key(p),
                        lease_value(token, until, &req.node),
                        *index,
                    ));
                    after[i] = Lease {
                        partition: p,
                        owner: req.node.clone(),
                        token,
                        expires_at: until,
                    };
                }
            }
        }
        for &p in req.release.iter().filter(|p| !req.take.contains(p)) {
            if let Some(i) = current
                .iter()
                .position(|(l, _)| l.partition == p && l.owner == req.node)
            {
                let (l, index) = &current[i];
                ops.push(Op::Cas(
                    self.lease_key(p),
                    lease_value(l.token, Timestamp::UNIX_EPOCH, &req.node),
                    *index,
                ));
                after[i].expires_at = Timestamp::UNIX_EPOCH;
            }
        }
        // All or nothing per transaction; on a lost race the leases are
        // what the database holds, and the next round tries again.
        for t in chunks(&ops) {
            if !self.consul.txn_checked(t).await? {
                return self.leases().await;
            }
        }
        after.sort_by_key(|l| l.partition);
        Ok(after)
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self
            .lease_pairs()
            .await?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }

    /// Sequence numbers: the change key's modify index × 2^16 plus its
    /// rank among the keys of the same transaction (at most 64), so every
    /// change has its own number, in commit order.
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<(u64, JobId)>> {
        let mut pairs = self
            .consul
            .list(&format!("{}changes/", self.p), true)
            .await?;
        pairs.sort_by(|a, b| (a.modify_index, &a.key).cmp(&(b.modify_index, &b.key)));
        let mut out = Vec::new();
        let mut rank = 0u64;
        let mut last_index = None;
        for pair in pairs {
            rank = if last_index == Some(pair.modify_index) {
                rank + 1
            } else {
                0
            };
            last_index = Some(pair.modify_index);
            let seq = (pair.modify_index << 16) + rank;
            if seq <= after {
                continue;
            }
            let text = String::from_utf8_lossy(&pair.value);
            if let Some((_, id)) = text.split_once('|') {
                out.push((seq, id.to_string()));
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn last_change(&self) -> Result<u64> {
        Ok(self.changes(0, usize::MAX).await?.last().map_or(0, |c| c.0))
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<()> {
        let cutoff = before.as_nanosecond();
        let mut ops = Vec::new();
        for pair in self
            .consul
            .list(&format!("{}changes/", self.p), false)
            .await?
        {
            let text = String::from_utf8_lossy(&pair.value);
            let at = text
                .split_once('|')
                .and_then(|(t, _)| t.parse::<i128>().ok());
            if at.is_some_and(|t| t < cutoff) {
                ops.push(Op::Delete(pair.key));
            }
        }
        for t in chunks(&ops) {
            self.consul.txn(t).await?;
        }
        Ok(())
    }

    async fn get_many(&self, ids: &[JobId]) -> Result<Vec<Job>> {
        if ids.len() > 64 {
            let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            return Ok(self
                .load_all()
                .await?
                .into_iter()
                .filter(|j| wanted.contains(j.id.as_str()))
                .collect());
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = self.get(id).await? {
                out.push(job);
            }
        }
        Ok(out)
    }

    fn change_signal(&self) -> Option<Arc<Notify>> {
        Some(self.signal.clone())
    }

    /// Raft indexes: a consistent read sees every write up to its index.
    fn commit_ordered(&self) -> bool {
        true
    }
}
