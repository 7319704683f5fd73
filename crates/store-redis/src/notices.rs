//! The notification outbox on Redis: `P:notices` (id → notice JSON),
//! `P:notices:pending` (a sorted set of the ids still to deliver, scored
//! by their next attempt in ms), `P:notices:done` (the done ones, scored
//! by when they were done), `P:notices:job:<id>` (each job's ids) and
//! `P:notices:jobs` (the jobs that have some). The writes are commands of
//! the batch script (`store`); here are the reads and the pruning.

use jiff::Timestamp;
use kala_store::json::decode;
use kala_store::{Notice, Result, oldest_first, soonest};
use redis::AsyncCommands;

use crate::error::map_err;
use crate::store::RedisStore;

impl RedisStore {
    pub(crate) fn job_notices_key(&self, id: &str) -> String {
        format!("{}{id}", self.job_notices_prefix)
    }

    /// The records stored in the hash `key` under `ids` (missing ones
    /// skipped), read 1,000 at a time: jobs, notices.
    pub(crate) async fn hash_records<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        ids: &[String],
    ) -> Result<Vec<T>> {
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(key)
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            for (id, v) in chunk.iter().zip(values) {
                if let Some(bytes) = v {
                    out.push(decode(id, &bytes)?);
                }
            }
        }
        Ok(out)
    }

    async fn notices_by_id(&self, ids: &[String]) -> Result<Vec<Notice>> {
        self.hash_records(&self.notices_key, ids).await
    }

    pub(crate) async fn pending_notices_of(&self, limit: usize) -> Result<Vec<Notice>> {
        let mut conn = self.conn.clone();
        let stop = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let ids: Vec<String> = conn
            .zrange(&self.pending_key, 0, stop)
            .await
            .map_err(map_err)?;
        let all = self.notices_by_id(&ids).await?;
        Ok(soonest(all, limit))
    }

    pub(crate) async fn notices_of(&self, job_id: &str) -> Result<Vec<Notice>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .smembers(self.job_notices_key(job_id))
            .await
            .map_err(map_err)?;
        let mut all = self.notices_by_id(&ids).await?;
        oldest_first(&mut all);
        Ok(all)
    }

    pub(crate) async fn prune_notices_before(&self, before: Timestamp) -> Result<u64> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.done_key)
            .arg("-inf")
            .arg(format!("({}", before.as_millisecond()))
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let done = self.notices_by_id(&ids).await?;
        for chunk in done.chunks(500) {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for n in chunk {
                pipe.hdel(&self.notices_key, &n.id)
                    .zrem(&self.done_key, &n.id)
                    .srem(self.job_notices_key(&n.job_id), &n.id);
            }
            let () = pipe.query_async(&mut conn).await.map_err(map_err)?;
        }
        Ok(done.len() as u64)
    }
}
