//! [`RedisStore`]: the `JobStore` on Redis — the key layout, reads and
//! scans, run history in sorted sets, pruning, claims in Lua.
//!
//! Owns: every command but a batch's (`batch`). Must not: parse addresses
//! (`address`).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::decode;
use kala_store::{
    AuditEntry, Batch, Claim, JobStore, Notice, OpenRun, Result, Retention, StoreError,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::address::RedisOptions;
use crate::error::map_err;
use crate::keys::padded_ns;
use crate::scripts::{BATCH_LUA, LEASE_LUA};

pub struct RedisStore {
    pub(crate) conn: ConnectionManager,
    pub(crate) jobs_key: String,
    pub(crate) runjobs_key: String,
    pub(crate) claims_key: String,
    pub(crate) open_key: String,
    pub(crate) runs_prefix: String,
    /// Notices: id → JSON.
    pub(crate) notices_key: String,
    /// Ids of the notices still to deliver, scored by their next attempt
    /// (ms).
    pub(crate) pending_key: String,
    /// Ids of the done notices, scored by when they were done (ms).
    pub(crate) done_key: String,
    /// Ids of the jobs that have notices.
    pub(crate) notice_jobs_key: String,
    /// Prefix of each job's set of notice ids.
    pub(crate) job_notices_prefix: String,
    /// The audit log: id → entry JSON, and the ids in time order.
    pub(crate) audit_key: String,
    pub(crate) audit_ids_key: String,
    pub(crate) nodes_key: String,
    pub(crate) leases_key: String,
    pub(crate) changes_key: String,
    pub(crate) seq_key: String,
    pub(crate) channel: String,
    pub(crate) claim_script: Script,
    pub(crate) batch_script: Script,
    pub(crate) lease_script: Script,
    pub(crate) nonce: AtomicU64,
    pub(crate) signal: Option<std::sync::Arc<tokio::sync::Notify>>,
}

/// Length of the sort prefix of a run member: 31 digits, ':', 16 hex, ':'.
const MEMBER_PREFIX: usize = 31 + 1 + 16 + 1;

const CLAIM_LUA: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local exp = string.sub(v, 1, 31)
  local owner = string.sub(v, 33)
  if owner ~= ARGV[3] and exp > ARGV[4] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return 1
"#;

impl RedisStore {
    /// Connects (failing if Redis cannot be reached now) and returns the
    /// store. Later outages are survived: see the crate docs.
    pub async fn connect(options: &RedisOptions) -> Result<RedisStore> {
        let url = options.url()?;
        let client = redis::Client::open(url.as_str())
            .map_err(|e| StoreError::Backend(format!("redis address: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let target = client.get_connection_info().addr().to_string();
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("redis at {target}: {m}"))
                }
                StoreError::Backend(m) => StoreError::Backend(format!("redis at {target}: {m}")),
                other => other,
            })?;
        let p = if options.prefix.is_empty() {
            "kala"
        } else {
            options.prefix.as_str()
        };
        Ok(RedisStore {
            conn,
            jobs_key: format!("{p}:jobs"),
            runjobs_key: format!("{p}:runjobs"),
            claims_key: format!("{p}:claims"),
            open_key: format!("{p}:open_runs"),
            runs_prefix: format!("{p}:runs:"),
            notices_key: format!("{p}:notices"),
            pending_key: format!("{p}:notices:pending"),
            done_key: format!("{p}:notices:done"),
            notice_jobs_key: format!("{p}:notices:jobs"),
            job_notices_prefix: format!("{p}:notices:job:"),
            audit_key: format!("{p}:audit"),
            audit_ids_key: format!("{p}:audit:ids"),
            nodes_key: format!("{p}:nodes"),
            leases_key: format!("{p}:leases"),
            changes_key: format!("{p}:changes"),
            seq_key: format!("{p}:changeseq"),
            channel: format!("{p}:changed"),
            claim_script: Script::new(CLAIM_LUA),
            batch_script: Script::new(BATCH_LUA),
            lease_script: Script::new(LEASE_LUA),
            nonce: AtomicU64::new(Timestamp::now().as_nanosecond() as u64),
            signal: crate::changes::listen(&client, format!("{p}:changed")).await,
        })
    }

    pub(crate) fn runs_key(&self, id: &str) -> String {
        format!("{}{id}", self.runs_prefix)
    }

    /// Walks `key` with `SSCAN`/`HSCAN` (never `KEYS`), handing each batch
    /// to `each`. A scan may return an element more than once.
    async fn scan<T: redis::FromRedisValue>(
        &self,
        command: &str,
        key: &str,
        mut each: impl FnMut(Vec<T>) -> Result<()>,
    ) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<T>) = redis::cmd(command)
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(2000)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            each(batch)?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn run_job_ids(&self) -> Result<Vec<String>> {
        let mut ids = HashSet::new();
        self.scan("SSCAN", &self.runjobs_key, |batch: Vec<String>| {
            ids.extend(batch);
            Ok(())
        })
        .await?;
        Ok(ids.into_iter().collect())
    }
}

#[async_trait]
impl JobStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        self.scan("HSCAN", &self.jobs_key, |pairs: Vec<(String, Vec<u8>)>| {
            for (id, bytes) in pairs {
                if seen.insert(id.clone()) {
                    jobs.push(decode(&id, &bytes)?);
                }
            }
            Ok(())
        })
        .await?;
        Ok(jobs)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = conn.hget(&self.jobs_key, id).await.map_err(map_err)?;
        bytes.map(|b| decode(id, &b)).transpose()
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        self.apply_batch(batch).await
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let mut conn = self.conn.clone();
        let key = self.runs_key(job_id);
        let start = limit.map_or(0, |l| -(l as isize));
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let members: Vec<Vec<u8>> = conn.zrange(&key, start, -1).await.map_err(map_err)?;
        members
            .iter()
            .map(|m| {
                let json = m.get(MEMBER_PREFIX..).ok_or_else(|| StoreError::Corrupt {
                    key: key.clone(),
                    reason: "run member shorter than its sort prefix".into(),
                })?;
                decode(&key, json)
            })
            .collect()
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut dropped = 0u64;
        let cutoff_us = retention
            .max_age
            .and_then(|age| now.checked_sub(age).ok())
            .map(|c| c.as_nanosecond().div_euclid(1_000) as f64);
        let ids = self.run_job_ids().await?;
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let key = self.runs_key(id);
                if let Some(c) = cutoff_us {
                    pipe.zrembyscore(&key, "-inf", format!("({c}"));
                }
                if let Some(keep) = retention.max_per_job {
                    pipe.zremrangebyrank(&key, 0, -(keep as isize) - 1);
                }
                pipe.zcard(&key);
            }
            let replies: Vec<u64> = pipe.query_async(&mut conn).await.map_err(map_err)?;
            let per =
                usize::from(cutoff_us.is_some()) + usize::from(retention.max_per_job.is_some()) + 1;
            let mut empty = Vec::new();
            for (id, r) in chunk.iter().zip(replies.chunks(per)) {
                let (removed, card) = r.split_at(per - 1);
                dropped += removed.iter().sum::<u64>();
                if card.first() == Some(&0) {
                    empty.push(id.as_str());
                }
            }
            if !empty.is_empty() {
                let () = conn
                    .srem(&self.runjobs_key, &empty)
                    .await
                    .map_err(map_err)?;
            }
        }
        // Expired claims.
        let now_key = padded_ns(now);
        let mut expired = Vec::new();
        self.scan("HSCAN", &self.claims_key, |pairs: Vec<(String, String)>| {
            expired.extend(
                pairs
                    .into_iter()
                    .filter(|(_, v)| v.get(..31).is_some_and(|exp| exp <= now_key.as_str()))
                    .map(|(k, _)| k),
            );
            Ok(())
        })
        .await?;
        for chunk in expired.chunks(1000) {
            let () = conn.hdel(&self.claims_key, chunk).await.map_err(map_err)?;
        }
        Ok(dropped)
    }

    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()> {
        let ids = self.run_job_ids().await?;
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(1000) {
            let keys: Vec<String> = chunk.iter().map(|id| self.runs_key(id)).collect();
            let () = conn.unlink(&keys).await.map_err(map_err)?;
        }
        let jobs: Vec<String> = conn
            .smembers(&self.notice_jobs_key)
            .await
            .map_err(map_err)?;
        for chunk in jobs.chunks(1000) {
            let keys: Vec<String> = chunk.iter().map(|id| self.job_notices_key(id)).collect();
            let () = conn.unlink(&keys).await.map_err(map_err)?;
        }
        let () = conn
            .unlink(&[
                &self.jobs_key,
                &self.runjobs_key,
                &self.claims_key,
                &self.open_key,
                &self.notices_key,
                &self.pending_key,
                &self.done_key,
                &self.notice_jobs_key,
            ])
            .await
            .map_err(map_err)?;
        // Nodes and leases stay; followers hear "reload everything".
        let now = Timestamp::now().as_nanosecond().to_string();
        // The audit entries go with the change, in the last step.
        let mut cmds = self.audit_cmds(&audit)?;
        cmds.push(self.change_cmd(&now, kala_store::ALL_JOBS));
        let mut inv = self.batch_script.prepare_invoke();
        inv.arg("0").arg(cmds.len().to_string());
        for c in &cmds {
            inv.arg(c.len().to_string());
            for a in c {
                inv.arg(a);
            }
        }
        let _: redis::Value = inv.invoke_async(&mut conn).await.map_err(map_err)?;
        Ok(())
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        self.scan("HSCAN", &self.open_key, |pairs: Vec<(String, Vec<u8>)>| {
            for (id, bytes) in pairs {
                if seen.insert(id.clone()) {
                    out.push(decode(&id, &bytes)?);
                }
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        self.pending_notices_of(limit).await
    }

    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>> {
        self.notices_of(job_id).await
    }

    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_page(before, limit).await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        self.prune_audit_before(before).await
    }

    async fn prune_notices(&self, before: Timestamp) -> Result<u64> {
        self.prune_notices_before(before).await
    }

    async fn claim(&self, claim: Claim) -> Result<bool> {
        let mut conn = self.conn.clone();
        let field = format!("{}|{}", claim.job_id, claim.scheduled_at.as_nanosecond());
        let won: i64 = self
            .claim_script
            .key(&self.claims_key)
            .arg(field)
            .arg(padded_ns(claim.expires_at))
            .arg(&claim.owner)
            .arg(padded_ns(Timestamp::now()))
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(won == 1)
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
    fn sort_keys_are_fixed_width_and_ordered() {
        let a = padded_ns(Timestamp::UNIX_EPOCH);
        let b = padded_ns(Timestamp::MAX);
        let c = padded_ns(Timestamp::MIN);
        assert_eq!(a.len(), 31);
        assert_eq!(b.len(), 31);
        assert_eq!(c.len(), 31);
        assert!(c < a && a < b);
    }
}
