//! Batches on Redis: a [`Batch`] becomes one Lua script call whose guards
//! (a lease's fence, the stored bytes of each job changed in place) and
//! writes are one atomic step; run members sort by a fixed-width prefix.
//!
//! Owns: the batch script and the encoding of a batch into its commands.
//! Must not: read or scan anything but the jobs a batch changes in place.

use std::sync::atomic::Ordering;

use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::{decode, encode};
use kala_store::{Batch, Result, StoreError};

use crate::error::map_err;
use crate::keys::{NS_OFFSET, padded_ns};
use crate::store::RedisStore;

/// One command of a batch, as its arguments.
pub(crate) type Cmd = Vec<Vec<u8>>;

fn cmd(args: &[&[u8]]) -> Cmd {
    args.iter().map(|a| a.to_vec()).collect()
}

impl RedisStore {
    /// A run as its sorted-set score (µs) and member (sort prefix, then JSON).
    pub(crate) fn member(&self, run: &RunRecord) -> Result<(f64, Vec<u8>)> {
        let ns = run.ran_at.as_nanosecond();
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let mut m = format!("{:031}:{nonce:016x}:", ns + NS_OFFSET).into_bytes();
        serde_json::to_writer(&mut m, run).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(((ns.div_euclid(1_000)) as f64, m))
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
        for job in &batch.puts_updated() {
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
            batch.apply_updates(&mut job);
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
        cmds.extend(self.audit_cmds(&batch.audit)?);
        let now = Timestamp::now().as_nanosecond().to_string();
        for id in batch.changed_ids() {
            cmds.push(self.change_cmd(&now, &id));
        }
        Ok((guards, cmds))
    }

    /// The script's pseudo-command that appends a change of `id`.
    pub(crate) fn change_cmd(&self, now_ns: &str, id: &str) -> Cmd {
        cmd(&[
            b"KALA_CHANGE",
            self.seq_key.as_bytes(),
            self.changes_key.as_bytes(),
            self.channel.as_bytes(),
            now_ns.as_bytes(),
            id.as_bytes(),
        ])
    }

    /// Applies `batch` atomically: jobs changed in place are read, changed
    /// here and written back only if nobody wrote them meanwhile (their
    /// stored bytes are a guard); a lost race is tried again.
    pub(crate) async fn apply_batch(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Jobs changed in place are read, changed here and written back
        // only if nobody wrote them meanwhile (their stored bytes are a
        // guard); a lost race is tried again.
        for _ in 0..20 {
            let mut current: Vec<(String, Option<Vec<u8>>)> = Vec::new();
            let ids = batch.updated_in_place();
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
}
