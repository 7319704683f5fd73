//! The notification outbox on Consul: `P/notices/<job>/<id>` holds each
//! notice; a pending one is also copied under `P/pending_notices/<job>/<id>`
//! so that the deliverer lists them in one read.

use jiff::Timestamp;
use kala_store::{Notice, Result, oldest_first, soonest};

use crate::client::{Op, chunks};
use crate::codec::{decode, encode};
use crate::store::ConsulStore;

impl ConsulStore {
    fn notice_key(&self, job: &str, id: &str) -> String {
        format!("{}notices/{job}/{id}", self.p)
    }

    fn pending_key(&self, job: &str, id: &str) -> String {
        format!("{}pending_notices/{job}/{id}", self.p)
    }

    /// The operations that store `n`.
    pub(crate) fn notice_ops(&self, n: &Notice, ops: &mut Vec<Op>) -> Result<()> {
        let value = encode(n)?;
        if n.is_pending() {
            ops.push(Op::Set(self.pending_key(&n.job_id, &n.id), value.clone()));
        } else {
            ops.push(Op::Delete(self.pending_key(&n.job_id, &n.id)));
        }
        ops.push(Op::Set(self.notice_key(&n.job_id, &n.id), value));
        Ok(())
    }

    /// The operations that delete a job's notices.
    pub(crate) fn drop_notices_ops(&self, job: &str, ops: &mut Vec<Op>) {
        ops.push(Op::DeleteTree(format!("{}notices/{job}/", self.p)));
        ops.push(Op::DeleteTree(format!("{}pending_notices/{job}/", self.p)));
    }

    async fn list_notices(&self, prefix: &str) -> Result<Vec<Notice>> {
        self.consul
            .list(prefix, true)
            .await?
            .iter()
            .map(|p| decode(&p.key, &p.value))
            .collect()
    }

    pub(crate) async fn pending_notices_of(&self, limit: usize) -> Result<Vec<Notice>> {
        let all = self
            .list_notices(&format!("{}pending_notices/", self.p))
            .await?;
        Ok(soonest(all, limit))
    }

    pub(crate) async fn notices_of(&self, job: &str) -> Result<Vec<Notice>> {
        let mut all = self
            .list_notices(&format!("{}notices/{job}/", self.p))
            .await?;
        oldest_first(&mut all);
        Ok(all)
    }

    pub(crate) async fn prune_notices_before(&self, before: Timestamp) -> Result<u64> {
        let all = self.list_notices(&format!("{}notices/", self.p)).await?;
        let ops: Vec<Op> = all
            .iter()
            .filter(|n| !n.is_pending() && n.done_at.is_some_and(|d| d < before))
            .map(|n| Op::Delete(self.notice_key(&n.job_id, &n.id)))
            .collect();
        for t in chunks(&ops) {
            self.consul.txn(t).await?;
        }
        Ok(ops.len() as u64)
    }
}
