//! [`Coordination`] on Redis: nodes in the hash `P:nodes` (name → JSON),
//! leases in `P:leases` (partition → `token|expiry ns, 31 digits|owner`,
//! kept by one Lua script per round), changes in the sorted set
//! `P:changes` (score = sequence from `INCR P:changeseq`, member =
//! `seq|time ns|job id`, appended by the batch script) with a wake-up
//! published on `P:changed`.
//!
//! Owns: the cluster commands and the subscriber task. Must not: decide
//! who owns what (the engine does).

use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId};
use kala_store::json::{decode, encode};
use kala_store::{Coordination, Lease, LeaseRequest, NodeInfo, Result, StoreError};
use redis::AsyncCommands;
use tokio::sync::Notify;

use crate::error::map_err;
use crate::keys::padded_ns;
use crate::store::RedisStore;

/// Frees every lease `ARGV[1]` holds. KEYS[1] leases.
const LEAVE_LUA: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
local zero = string.rep('0', 31)
for k = 1, #all, 2 do
  local t, e, o = string.match(all[k + 1], '^(%d+)|(%d+)|(.*)$')
  if o == ARGV[1] then redis.call('HSET', KEYS[1], all[k], t .. '|' .. zero .. '|' .. o) end
end
return 1
"#;

fn ts_of_padded(s: &str) -> Timestamp {
    s.parse::<i128>()
        .ok()
        .and_then(|ns| Timestamp::from_nanosecond(ns - 1_000_000_000_000_000_000_000_000_000).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn leases_of(pairs: Vec<(String, String)>) -> Result<Vec<Lease>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (p, v) in pairs {
        let mut it = v.splitn(3, '|');
        let (Some(t), Some(e), Some(o)) = (it.next(), it.next(), it.next()) else {
            return Err(StoreError::Corrupt {
                key: format!("leases/{p}"),
                reason: "not token|expiry|owner".into(),
            });
        };
        out.push(Lease {
            partition: p.parse().unwrap_or(u32::MAX),
            owner: o.to_string(),
            token: t.parse().unwrap_or(0),
            expires_at: ts_of_padded(e),
        });
    }
    out.sort_by_key(|l| l.partition);
    Ok(out)
}

#[async_trait]
impl Coordination for RedisStore {
    async fn heartbeat(&self, node: &NodeInfo) -> Result<Vec<NodeInfo>> {
        let mut conn = self.conn.clone();
        let () = conn
            .hset(&self.nodes_key, &node.name, encode(node)?)
            .await
            .map_err(map_err)?;
        let all: Vec<(String, Vec<u8>)> = conn.hgetall(&self.nodes_key).await.map_err(map_err)?;
        let forget = node.heartbeat_at - SignedDuration::from_hours(1);
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (name, bytes) in all {
            let n: NodeInfo = decode(&name, &bytes)?;
            if n.expires_at < forget {
                gone.push(name);
            } else {
                out.push(n);
            }
        }
        if !gone.is_empty() {
            let () = conn.hdel(&self.nodes_key, &gone).await.map_err(map_err)?;
        }
        Ok(out)
    }

    async fn leave(&self, node: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let () = conn.hdel(&self.nodes_key, node).await.map_err(map_err)?;
        let _: i64 = redis::Script::new(LEAVE_LUA)
            .key(&self.leases_key)
            .arg(node)
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn lease(&self, req: LeaseRequest) -> Result<Vec<Lease>> {
        let mut conn = self.conn.clone();
        let mut inv = self.lease_script.key(&self.leases_key);
        inv.arg(&req.node)
            .arg(padded_ns(req.now))
            .arg(padded_ns(req.now + req.ttl))
            .arg(req.take.len());
        for p in &req.take {
            inv.arg(p);
        }
        for p in req.release.iter().filter(|p| !req.take.contains(p)) {
            inv.arg(p);
        }
        let pairs: Vec<(String, String)> = inv.invoke_async(&mut conn).await.map_err(map_err)?;
        leases_of(pairs)
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        let mut conn = self.conn.clone();
        let pairs: Vec<(String, String)> = conn.hgetall(&self.leases_key).await.map_err(map_err)?;
        leases_of(pairs)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<(u64, JobId)>> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.changes_key)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        members
            .iter()
            .map(|m| {
                let mut it = m.splitn(3, '|');
                match (it.next().and_then(|s| s.parse().ok()), it.next(), it.next()) {
                    (Some(seq), Some(_), Some(id)) => Ok((seq, id.to_string())),
                    _ => Err(StoreError::Corrupt {
                        key: self.changes_key.clone(),
                        reason: format!("change {m:?} is not seq|time|id"),
                    }),
                }
            })
            .collect()
    }

    async fn last_change(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        let seq: Option<u64> = conn.get(&self.seq_key).await.map_err(map_err)?;
        Ok(seq.unwrap_or(0))
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<()> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = conn
            .zrange(&self.changes_key, 0, -1)
            .await
            .map_err(map_err)?;
        let cutoff = before.as_nanosecond();
        let old: Vec<&String> = members
            .iter()
            .filter(|m| {
                m.split('|')
                    .nth(1)
                    .and_then(|t| t.parse::<i128>().ok())
                    .is_some_and(|t| t < cutoff)
            })
            .collect();
        for chunk in old.chunks(1000) {
            let () = conn.zrem(&self.changes_key, chunk).await.map_err(map_err)?;
        }
        Ok(())
    }

    async fn get_many(&self, ids: &[JobId]) -> Result<Vec<Job>> {
        self.hash_records(&self.jobs_key, ids).await
    }

    fn change_signal(&self) -> Option<Arc<Notify>> {
        self.signal.clone()
    }

    /// `INCR` inside the batch's script: numbers in commit order.
    fn commit_ordered(&self) -> bool {
        true
    }
}
