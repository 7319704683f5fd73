//! The audit log on Consul: `P/audit/<id>` holds each entry (ids sort in
//! time order, as Consul lists keys). Entries are set in their batch's
//! transaction and never changed.

use jiff::Timestamp;
use kala_store::{AuditEntry, Result};

use crate::client::{Op, chunks};
use crate::codec::{decode, encode};
use crate::store::ConsulStore;

impl ConsulStore {
    fn audit_prefix(&self) -> String {
        format!("{}audit/", self.p)
    }

    /// The operations that store `audit`.
    pub(crate) fn audit_ops(&self, audit: &[AuditEntry], ops: &mut Vec<Op>) -> Result<()> {
        for e in audit {
            ops.push(Op::Set(
                format!("{}{}", self.audit_prefix(), e.id),
                encode(e)?,
            ));
        }
        Ok(())
    }

    /// The ids of every entry, oldest first.
    async fn audit_ids(&self) -> Result<Vec<String>> {
        let prefix = self.audit_prefix();
        let mut ids: Vec<String> = self
            .consul
            .keys(&prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    pub(crate) async fn audit_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let ids = self.audit_ids().await?;
        let mut out = Vec::new();
        for id in ids
            .iter()
            .rev()
            .filter(|id| before.is_none_or(|b| id.as_str() < b))
            .take(limit)
        {
            let key = format!("{}{id}", self.audit_prefix());
            if let Some(p) = self.consul.get(&key).await? {
                out.push(decode(&p.key, &p.value)?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn prune_audit_before(&self, before: Timestamp) -> Result<u64> {
        let cutoff = format!("{:020}", before.as_nanosecond().max(0));
        let ops: Vec<Op> = self
            .audit_ids()
            .await?
            .into_iter()
            .filter(|id| id.as_str() < cutoff.as_str())
            .map(|id| Op::Delete(format!("{}{id}", self.audit_prefix())))
            .collect();
        for t in chunks(&ops) {
            self.consul.txn(t).await?;
        }
        Ok(ops.len() as u64)
    }
}
