//! `a`'s view of a shared store, for the cluster tests of faults: it can
//! pause `a` right after a journal write, cut it off, or hold back an
//! answer about a job as a stalled link would.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, RunRecord};
use kala_store::{Batch, JobStore, MemoryStore};

use crate::FakeClock;

/// `a`'s view of the shared store, which can "pause" `a` right after it
/// journals a run: `a`'s own membership calls wait (the process is
/// stopped), the clock jumps past the lease, and the journal write
/// returns only once `b` has taken the partition over.
pub(super) struct PausingStore {
    inner: Arc<MemoryStore>,
    clock: Arc<FakeClock>,
    pub(super) armed: std::sync::atomic::AtomicBool,
    pub(super) paused: std::sync::atomic::AtomicBool,
    /// Cut off from the database: every call fails.
    pub(super) cut: std::sync::atomic::AtomicBool,
    /// The next read of a job with an open journal entry is answered
    /// late, as a stalled link holds an answer back: the store answers,
    /// then the job is deleted (another instance's delete, answered), and
    /// only then does the old answer reach `a`.
    pub(super) stale_read: std::sync::atomic::AtomicBool,
}

impl PausingStore {
    pub(super) fn new(inner: Arc<MemoryStore>, clock: Arc<FakeClock>) -> PausingStore {
        PausingStore {
            inner,
            clock,
            armed: false.into(),
            paused: false.into(),
            cut: false.into(),
            stale_read: false.into(),
        }
    }

    async fn while_paused(&self) -> kala_store::Result<()> {
        while self.paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.reachable()
    }

    fn reachable(&self) -> kala_store::Result<()> {
        match self.cut.load(Ordering::SeqCst) {
            true => Err(kala_store::StoreError::Unavailable("cut off".into())),
            false => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl JobStore for PausingStore {
    fn name(&self) -> &'static str {
        "pausing"
    }
    async fn load_all(&self) -> kala_store::Result<Vec<Job>> {
        self.inner.load_all().await
    }
    async fn get(&self, id: &str) -> kala_store::Result<Option<Job>> {
        let answer = self.inner.get(id).await?;
        let journaled = self.inner.open_runs().await?.iter().any(|o| o.job_id == id);
        if journaled && self.stale_read.swap(false, Ordering::SeqCst) {
            self.inner
                .apply(Batch {
                    delete: vec![id.to_string()],
                    ..Batch::default()
                })
                .await?;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        Ok(answer)
    }
    async fn apply(&self, batch: Batch) -> kala_store::Result<()> {
        self.reachable()?;
        let journal = batch.begin.first().cloned();
        self.inner.apply(batch).await?;
        if let Some(open) = journal
            && self.armed.swap(false, Ordering::SeqCst)
        {
            self.paused.store(true, Ordering::SeqCst);
            self.clock.advance(SignedDuration::from_secs(6));
            let part = kala_store::partition_of(&open.job_id);
            let coord = self.inner.coordination().expect("shared");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let leases = coord.leases().await?;
                let taken = leases.iter().any(|l| l.partition == part && l.owner == "b");
                let recorded = !self
                    .inner
                    .open_runs()
                    .await?
                    .iter()
                    .any(|o| o.run_id == open.run_id);
                if taken && recorded {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "b did not take the partition over"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.paused.store(false, Ordering::SeqCst);
        }
        Ok(())
    }
    async fn runs(&self, job_id: &str, limit: Option<usize>) -> kala_store::Result<Vec<RunRecord>> {
        self.reachable()?;
        self.inner.runs(job_id, limit).await
    }
    async fn prune_runs(
        &self,
        retention: kala_store::Retention,
        now: Timestamp,
    ) -> kala_store::Result<u64> {
        self.inner.prune_runs(retention, now).await
    }
    async fn delete_all(&self, audit: Vec<kala_store::AuditEntry>) -> kala_store::Result<()> {
        self.inner.delete_all(audit).await
    }
    async fn audit(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> kala_store::Result<Vec<kala_store::AuditEntry>> {
        self.inner.audit(before, limit).await
    }
    async fn prune_audit(&self, before: Timestamp) -> kala_store::Result<u64> {
        self.inner.prune_audit(before).await
    }
    async fn open_runs(&self) -> kala_store::Result<Vec<kala_store::OpenRun>> {
        self.reachable()?;
        self.inner.open_runs().await
    }
    async fn pending_notices(&self, limit: usize) -> kala_store::Result<Vec<kala_store::Notice>> {
        self.inner.pending_notices(limit).await
    }
    async fn notices(&self, job_id: &str) -> kala_store::Result<Vec<kala_store::Notice>> {
        self.inner.notices(job_id).await
    }
    async fn prune_notices(&self, before: Timestamp) -> kala_store::Result<u64> {
        self.inner.prune_notices(before).await
    }
    async fn claim(&self, claim: kala_store::Claim) -> kala_store::Result<bool> {
        self.inner.claim(claim).await
    }
    async fn close(&self) -> kala_store::Result<()> {
        Ok(())
    }
    fn coordination(&self) -> Option<&dyn kala_store::Coordination> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl kala_store::Coordination for PausingStore {
    async fn heartbeat(
        &self,
        node: &kala_store::NodeInfo,
    ) -> kala_store::Result<Vec<kala_store::NodeInfo>> {
        self.while_paused().await?;
        self.inner
            .coordination()
            .expect("shared")
            .heartbeat(node)
            .await
    }
    async fn leave(&self, node: &str) -> kala_store::Result<()> {
        self.inner.coordination().expect("shared").leave(node).await
    }
    async fn lease(
        &self,
        req: kala_store::LeaseRequest,
    ) -> kala_store::Result<Vec<kala_store::Lease>> {
        self.while_paused().await?;
        self.inner.coordination().expect("shared").lease(req).await
    }
    async fn leases(&self) -> kala_store::Result<Vec<kala_store::Lease>> {
        self.while_paused().await?;
        self.inner.coordination().expect("shared").leases().await
    }
    async fn changes(&self, after: u64, limit: usize) -> kala_store::Result<Vec<(u64, String)>> {
        self.inner
            .coordination()
            .expect("shared")
            .changes(after, limit)
            .await
    }
    async fn last_change(&self) -> kala_store::Result<u64> {
        self.inner
            .coordination()
            .expect("shared")
            .last_change()
            .await
    }
    async fn prune_changes(&self, before: Timestamp) -> kala_store::Result<()> {
        self.inner
            .coordination()
            .expect("shared")
            .prune_changes(before)
            .await
    }
    async fn get_many(&self, ids: &[String]) -> kala_store::Result<Vec<Job>> {
        self.inner
            .coordination()
            .expect("shared")
            .get_many(ids)
            .await
    }
}
