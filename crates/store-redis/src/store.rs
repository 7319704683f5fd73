//! [`RedisStore`]: the `JobStore` on Redis — the key layout, batches as
//! `MULTI/EXEC`, run history in sorted sets, claims in Lua.
//!
//! Owns: every command. Must not: parse addresses (`address`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::{decode, encode};
use kala_store::{Batch, Claim, JobStore, Notice, OpenRun, Result, Retention, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::address::RedisOptions;
use crate::error::map_err;

/// Shifts nanosecond timestamps so that every realistic one is positive
/// and fits 31 decimal digits; fixed-width keys then sort as numbers.
const NS_OFFSET: i128 = 1_000_000_000_000_000_000_000_000_000;

pub struct RedisStore {
    pub(crate) conn: ConnectionManager,
    pub(crate) jobs_key: String,
    runjobs_key: String,
    claims_key: String,
    open_key: String,
    runs_prefix: String,
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
    pub(crate) nodes_key: String,
    pub(crate) leases_key: String,
    pub(crate) changes_key: String,
    pub(crate) seq_key: String,
    pub(crate) channel: String,
    claim_script: Script,
    batch_script: Script,
    pub(crate) lease_script: Script,
    nonce: AtomicU64,
    pub(crate) signal: Option<std::sync::Arc<tokio::sync::Notify>>,
}

pub(crate) fn padded_ns(t: Timestamp) -> String {
    format!("{:031}", t.as_nanosecond() + NS_OFFSET)
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

/// A whole batch in one script, so that its guards (a lease's fence, the
/// stored bytes of each job it changes) and its writes are one atomic
/// step. ARGV: the number of guards, each guard (`fence` leases-key
/// partition node token now | `cas` key field expected), then the number
/// of commands, each as its argument count and arguments. `KALA_CHANGE`
/// seq-key changes-key channel now id appends a change (sequence from
/// `INCR`, so changes are gap-free and in commit order) and publishes a
/// wake-up. `KALA_DROP_NOTICES` job-set hash pending done jobs job
/// deletes a job's notices. Returns 1, or {0, kind, guard index} when a guard failed and
/// nothing was written.
const BATCH_LUA: &str = r#"
local i = 1
local nguards = tonumber(ARGV[i]); i = i + 1
for g = 1, nguards do
  local kind = ARGV[i]
  if kind == 'fence' then
    local v = redis.call('HGET', ARGV[i+1], ARGV[i+2])
    local ok = false
    if v then
      local t, e, o = string.match(v, '^(%d+)|(%d+)|(.*)$')
      ok = (o == ARGV[i+3]) and (t == ARGV[i+4]) and (e > ARGV[i+5])
    end
    if not ok then return {0, 'fence', g} end
    i = i + 6
  else
    local v = redis.call('HGET', ARGV[i+1], ARGV[i+2])
    if (v or '') ~= ARGV[i+3] then return {0, 'cas', g} end
    i = i + 4
  end
end
local ncmds = tonumber(ARGV[i]); i = i + 1
local published = {}
for c = 1, ncmds do
  local argc = tonumber(ARGV[i]); i = i + 1
  if ARGV[i] == 'KALA_CHANGE' then
    local seq = redis.call('INCR', ARGV[i+1])
    redis.call('ZADD', ARGV[i+2], seq, seq .. '|' .. ARGV[i+4] .. '|' .. ARGV[i+5])
    published[ARGV[i+3]] = true
  elseif ARGV[i] == 'KALA_DROP_NOTICES' then
    local ids = redis.call('SMEMBERS', ARGV[i+1])
    for _, id in ipairs(ids) do
      redis.call('HDEL', ARGV[i+2], id)
      redis.call('ZREM', ARGV[i+3], id)
      redis.call('ZREM', ARGV[i+4], id)
    end
    redis.call('DEL', ARGV[i+1])
    redis.call('SREM', ARGV[i+5], ARGV[i+6])
  else
    redis.call(unpack(ARGV, i, i + argc - 1))
  end
  i = i + argc
end
for ch, _ in pairs(published) do redis.call('PUBLISH', ch, '') end
return 1
"#;

/// One command of a batch, as its arguments.
type Cmd = Vec<Vec<u8>>;

fn cmd(args: &[&[u8]]) -> Cmd {
    args.iter().map(|a| a.to_vec()).collect()
}

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
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(map_err)?;
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
            nodes_key: format!("{p}:nodes"),
            leases_key: format!("{p}:leases"),
            changes_key: format!("{p}:changes"),
            seq_key: format!("{p}:changeseq"),
            channel: format!("{p}:changed"),
            claim_script: Script::new(CLAIM_LUA),
            batch_script: Script::new(BATCH_LUA),
            lease_script: Script::new(crate::cluster::LEASE_LUA),
            nonce: AtomicU64::new(Timestamp::now().as_nanosecond() as u64),
            signal: crate::cluster::listen(&client, format!("{p}:changed")).await,
        })
    }

    fn runs_key(&self, id: &str) -> String {
        format!("{}{id}", self.runs_prefix)
    }

    fn member(&self, run: &RunRecord) -> Result<(f64, Vec<u8>)> {
        let ns = run.ran_at.as_nanosecond();
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let mut m = format!("{:031}:{nonce:016x}:", ns + NS_OFFSET).into_bytes();
        serde_json::to_writer(&mut m, run).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(((ns.div_euclid(1_000)) as f64, m))
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

    /// A batch as the script's guards and commands. `current`: the stored
    /// bytes of the jobs it changes in place (read just before).
    fn encode_batch(
        &self,
        batch: &Batch,
        current: &[(String, Option<Vec<u8>>)],
    ) -> Result<(Vec<Cmd>, Vec<Cmd>)> {
        let mut guards: Vec<Cmd> = Vec::new();
        let mut cmds: Vec<Cmd> = Vec::new();
        if let Some(f) = &batch.fence {
            guards.push(cmd(&[
                b"fence",
                self.leases_key.as_bytes(),
                f.partition.to_string().as_bytes(),
                f.node.as_bytes(),
                f.token.to_string().as_bytes(),
                padded_ns(f.now).as_bytes(),
            ]));
        }
        for id in &batch.delete {
            cmds.push(cmd(&[b"HDEL", self.jobs_key.as_bytes(), id.as_bytes()]));
            cmds.push(cmd(&[b"DEL", self.runs_key(id).as_bytes()]));
            cmds.push(cmd(&[b"SREM", self.runjobs_key.as_bytes(), id.as_bytes()]));
            cmds.push(cmd(&[
                b"KALA_DROP_NOTICES",
                self.job_notices_key(id).as_bytes(),
                self.notices_key.as_bytes(),
                self.pending_key.as_bytes(),
                self.done_key.as_bytes(),
                self.notice_jobs_key.as_bytes(),
                id.as_bytes(),
            ]));
        }
        for n in &batch.notices {
            let id = n.id.as_bytes();
            cmds.push(cmd(&[
                b"HSET",
                self.notices_key.as_bytes(),
                id,
                &encode(n)?,
            ]));
            cmds.push(cmd(&[
                b"SADD",
                self.job_notices_key(&n.job_id).as_bytes(),
                id,
            ]));
            cmds.push(cmd(&[
                b"SADD",
                self.notice_jobs_key.as_bytes(),
                n.job_id.as_bytes(),
            ]));
            if n.is_pending() {
                let due = n.next_attempt_at.as_millisecond().to_string();
                cmds.push(cmd(&[
                    b"ZADD",
                    self.pending_key.as_bytes(),
                    due.as_bytes(),
                    id,
                ]));
                cmds.push(cmd(&[b"ZREM", self.done_key.as_bytes(), id]));
            } else {
                let ms = n
                    .done_at
                    .unwrap_or(n.created_at)
                    .as_millisecond()
                    .to_string();
                cmds.push(cmd(&[b"ZREM", self.pending_key.as_bytes(), id]));
                cmds.push(cmd(&[b"ZADD", self.done_key.as_bytes(), ms.as_bytes(), id]));
            }
        }
        let mut puts: Vec<Job> = batch.put.clone();
        for u in &batch.update {
            if let Some(j) = puts.iter_mut().rev().find(|j| j.id == u.job_id) {
                u.change.apply(j);
            }
        }
        for job in &puts {
            cmds.push(cmd(&[
                b"HSET",
                self.jobs_key.as_bytes(),
                job.id.as_bytes(),
                &encode(job)?,
            ]));
        }
        for (id, bytes) in current {
            guards.push(cmd(&[
                b"cas",
                self.jobs_key.as_bytes(),
                id.as_bytes(),
                bytes.as_deref().unwrap_or(b""),
            ]));
            let Some(bytes) = bytes else { continue };
            let mut job: Job = decode(id, bytes)?;
            for u in batch.update.iter().filter(|u| &u.job_id == id) {
                u.change.apply(&mut job);
            }
            cmds.push(cmd(&[
                b"HSET",
                self.jobs_key.as_bytes(),
                id.as_bytes(),
                &encode(&job)?,
            ]));
        }
        let mut touched = Vec::new();
        for run in &batch.runs {
            let (score, member) = self.member(run)?;
            let key = self.runs_key(&run.job_id);
            cmds.push(cmd(&[
                b"ZADD",
                key.as_bytes(),
                score.to_string().as_bytes(),
                &member,
            ]));
            cmds.push(cmd(&[
                b"SADD",
                self.runjobs_key.as_bytes(),
                run.job_id.as_bytes(),
            ]));
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        if let Some(keep) = batch.keep_runs {
            let stop = (-(keep as i64) - 1).to_string();
            for key in &touched {
                cmds.push(cmd(&[
                    b"ZREMRANGEBYRANK",
                    key.as_bytes(),
                    b"0",
                    stop.as_bytes(),
                ]));
            }
        }
        for open in &batch.begin {
            cmds.push(cmd(&[
                b"HSET",
                self.open_key.as_bytes(),
                open.run_id.as_bytes(),
                &encode(open)?,
            ]));
        }
        for id in &batch.end {
            cmds.push(cmd(&[b"HDEL", self.open_key.as_bytes(), id.as_bytes()]));
        }
        let now = Timestamp::now().as_nanosecond().to_string();
        for id in batch.changed_ids() {
            cmds.push(self.change_cmd(&now, &id));
        }
        Ok((guards, cmds))
    }

    /// The script's pseudo-command that appends a change of `id`.
    fn change_cmd(&self, now_ns: &str, id: &str) -> Cmd {
        cmd(&[
            b"KALA_CHANGE",
            self.seq_key.as_bytes(),
            self.changes_key.as_bytes(),
            self.channel.as_bytes(),
            now_ns.as_bytes(),
            id.as_bytes(),
        ])
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
        if batch.is_empty() {
            return Ok(());
        }
        // Jobs changed in place are read, changed here and written back
        // only if nobody wrote them meanwhile (their stored bytes are a
        // guard); a lost race is tried again.
        for _ in 0..20 {
            let mut current: Vec<(String, Option<Vec<u8>>)> = Vec::new();
            let put_ids: HashSet<&str> = batch.put.iter().map(|j| j.id.as_str()).collect();
            let mut ids: Vec<&str> = batch
                .update
                .iter()
                .map(|u| u.job_id.as_str())
                .filter(|id| !put_ids.contains(id))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if !ids.is_empty() {
                let mut conn = self.conn.clone();
                let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                    .arg(&self.jobs_key)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_err)?;
                current = ids.iter().map(|s| s.to_string()).zip(values).collect();
            }
            let (guards, cmds) = self.encode_batch(&batch, &current)?;
            let mut args: Vec<Vec<u8>> = Vec::new();
            args.push(guards.len().to_string().into_bytes());
            for g in &guards {
                args.extend(g.iter().cloned());
            }
            args.push(cmds.len().to_string().into_bytes());
            for c in &cmds {
                args.push(c.len().to_string().into_bytes());
                args.extend(c.iter().cloned());
            }
            let mut conn = self.conn.clone();
            let mut inv = self.batch_script.prepare_invoke();
            for a in &args {
                inv.arg(a);
            }
            let reply: redis::Value = inv.invoke_async(&mut conn).await.map_err(map_err)?;
            match reply {
                redis::Value::Int(1) => return Ok(()),
                redis::Value::Array(v) => {
                    let kind = match v.get(1) {
                        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).to_string(),
                        _ => String::new(),
                    };
                    if kind == "fence" {
                        let f = batch.fence.as_ref();
                        return Err(StoreError::Fenced(format!(
                            "{} no longer holds the lease of partition {} with token {}",
                            f.map_or("", |f| f.node.as_str()),
                            f.map_or(0, |f| f.partition),
                            f.map_or(0, |f| f.token)
                        )));
                    }
                    // A job changed under us: read it again.
                }
                other => {
                    return Err(StoreError::Backend(format!(
                        "redis: unexpected reply to a batch: {other:?}"
                    )));
                }
            }
        }
        Err(StoreError::Backend(
            "redis: a job kept changing under a batch (20 tries)".into(),
        ))
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

    async fn delete_all(&self) -> Result<()> {
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
        let change = self.change_cmd(&now, kala_store::ALL_JOBS);
        let mut inv = self.batch_script.prepare_invoke();
        inv.arg("0").arg("1").arg(change.len().to_string());
        for a in &change {
            inv.arg(a);
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
