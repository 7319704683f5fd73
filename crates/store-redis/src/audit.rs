//! The audit log on Redis: `P:audit` (id → entry JSON) and `P:audit:ids`
//! (a sorted set of the ids, all scored 0, so they sort as text: in time
//! order). Entries are written by the batch script with their change;
//! here are their commands, the pages and the pruning.

use jiff::Timestamp;
use kala_store::json::encode;
use kala_store::{AuditEntry, Result};

use crate::batch::Cmd;
use crate::error::map_err;
use crate::store::RedisStore;

impl RedisStore {
    /// The batch script's commands that write `audit`.
    pub(crate) fn audit_cmds(&self, audit: &[AuditEntry]) -> Result<Vec<Cmd>> {
        let mut cmds = Vec::with_capacity(audit.len() * 2);
        for e in audit {
            cmds.push(vec![
                b"HSET".to_vec(),
                self.audit_key.as_bytes().to_vec(),
                e.id.as_bytes().to_vec(),
                encode(e)?,
            ]);
            cmds.push(vec![
                b"ZADD".to_vec(),
                self.audit_ids_key.as_bytes().to_vec(),
                b"0".to_vec(),
                e.id.as_bytes().to_vec(),
            ]);
        }
        Ok(cmds)
    }

    pub(crate) async fn audit_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let mut conn = self.conn.clone();
        let max = before.map_or_else(|| "+".to_string(), |b| format!("({b}"));
        let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
            .arg(&self.audit_ids_key)
            .arg(max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let mut out: Vec<AuditEntry> = self.hash_records(&self.audit_key, &ids).await?;
        out.sort_unstable_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    pub(crate) async fn prune_audit_before(&self, before: Timestamp) -> Result<u64> {
        let cutoff = format!("({:020}", before.as_nanosecond().max(0));
        let mut conn = self.conn.clone();
        let mut dropped = 0u64;
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(&self.audit_ids_key)
                .arg("-")
                .arg(&cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            if ids.is_empty() {
                return Ok(dropped);
            }
            let (): () = redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(&self.audit_key)
                .arg(&ids)
                .ignore()
                .cmd("ZREM")
                .arg(&self.audit_ids_key)
                .arg(&ids)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            dropped += ids.len() as u64;
        }
    }
}
