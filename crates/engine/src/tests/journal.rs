//! The run journal: an entry before a run starts, its end with the record,
//! and at start-up, interrupted runs recorded instead of run again.

use super::*;
use kala_store::OpenRun;

fn open_run(run_id: &str, job_id: &str, point: Option<Timestamp>, node: &str) -> OpenRun {
    OpenRun {
        run_id: run_id.into(),
        job_id: job_id.into(),
        trigger: if point.is_some() {
            Trigger::Schedule
        } else {
            Trigger::Once
        },
        scheduled_at: point,
        started_at: point.unwrap_or_else(t0),
        node: node.into(),
        dispatched_by: None,
    }
}

#[tokio::test]
async fn a_run_is_journaled_before_it_starts_and_ended_with_its_record() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let mut h = harness_on(store.clone(), t0()).await;
    let j = h
        .engine
        .create(job("slow", "blocking", &iso("R2", 10, "PT1M")))
        .await
        .unwrap();
    h.advance(10).await;
    for _ in 0..2000 {
        if !h.calls.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let open = store.open_runs().await.unwrap();
    assert_eq!(open.len(), 1, "journaled while it runs: {open:?}");
    assert_eq!(open[0].job_id, j);
    assert_eq!(open[0].scheduled_at, Some(at(10)));
    assert_eq!(open[0].trigger, Trigger::Schedule);
    assert_eq!(open[0].node, crate::default_node_id());
    h.gate.notify_one();
    let r = h.finished().await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(
        store.open_runs().await.unwrap().is_empty(),
        "ended together with its record"
    );
}

#[tokio::test]
async fn open_runs_found_at_start_are_interrupted_and_not_run_again() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let repeating = job("every minute", "ok", &iso("R", 0, "PT1M"));
    let once = job("one-off", "ok", "");
    let node = crate::default_node_id();
    store
        .apply(Batch {
            put: vec![repeating.clone(), once.clone()],
            begin: vec![
                open_run("r1", &repeating.id, Some(at(0)), &node),
                open_run("r2", &once.id, None, &node),
                open_run("r3", "deleted-job", Some(at(0)), &node),
            ],
            ..Batch::default()
        })
        .await
        .unwrap();
    // 30 s after the point: without the journal, the point is caught up
    // and the one-off job starts again.
    let mut h = harness_on(store.clone(), at(30)).await;
    h.quiet().await;
    assert!(h.names().is_empty(), "nothing runs again: {:?}", h.names());
    assert!(store.open_runs().await.unwrap().is_empty());
    let runs = store.runs(&repeating.id, None).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Outcome::Interrupted);
    assert_eq!(runs[0].scheduled_at, Some(at(0)));
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("interrupted"),
        "{:?}",
        runs[0].error
    );
    let once_runs = store.runs(&once.id, None).await.unwrap();
    assert_eq!(once_runs.len(), 1);
    assert_eq!(once_runs[0].trigger, Trigger::Once);
    let stored = h.engine.get(&repeating.id).unwrap();
    assert_eq!(stored.last_scheduled_at, Some(at(0)));
    assert_eq!(stored.metadata.error_count, 1);
    assert_eq!(h.engine.metrics().snapshot().runs_interrupted, 3);
    // The schedule goes on from the next point.
    h.advance(30).await;
    let r = h.finished().await;
    assert_eq!(r.scheduled_at, Some(at(60)));
    assert_eq!(r.outcome, Outcome::Succeeded);
}

#[tokio::test]
async fn with_claims_only_this_nodes_open_runs_are_resolved() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let j = job("every hour", "ok", &iso("R", 3600, "PT1H"));
    store
        .apply(Batch {
            put: vec![j.clone()],
            begin: vec![
                open_run("mine", &j.id, Some(at(0)), "node-a"),
                open_run("theirs", &j.id, Some(at(0)), "node-b"),
            ],
            ..Batch::default()
        })
        .await
        .unwrap();
    let config = EngineConfig {
        claim_runs: true,
        node_id: "node-a".into(),
        ..EngineConfig::default()
    };
    let h = harness_with(store.clone(), at(30), config).await;
    let left = store.open_runs().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].run_id, "theirs",
        "another node's run is its own to resolve"
    );
    assert_eq!(store.runs(&j.id, None).await.unwrap().len(), 1);
    drop(h);
}

/// A memory store whose journal writes fail (the database went away).
struct NoJournal(MemoryStore);

#[async_trait::async_trait]
impl JobStore for NoJournal {
    fn name(&self) -> &'static str {
        "no-journal"
    }
    async fn load_all(&self) -> kala_store::Result<Vec<Job>> {
        self.0.load_all().await
    }
    async fn get(&self, id: &str) -> kala_store::Result<Option<Job>> {
        self.0.get(id).await
    }
    async fn apply(&self, batch: Batch) -> kala_store::Result<()> {
        if !batch.begin.is_empty() {
            return Err(kala_store::StoreError::Unavailable("gone".into()));
        }
        self.0.apply(batch).await
    }
    async fn runs(&self, id: &str, limit: Option<usize>) -> kala_store::Result<Vec<RunRecord>> {
        self.0.runs(id, limit).await
    }
    async fn prune_runs(
        &self,
        r: kala_store::Retention,
        now: Timestamp,
    ) -> kala_store::Result<u64> {
        self.0.prune_runs(r, now).await
    }
    async fn delete_all(&self, audit: Vec<kala_store::AuditEntry>) -> kala_store::Result<()> {
        self.0.delete_all(audit).await
    }
    async fn audit(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> kala_store::Result<Vec<kala_store::AuditEntry>> {
        self.0.audit(before, limit).await
    }
    async fn prune_audit(&self, before: Timestamp) -> kala_store::Result<u64> {
        self.0.prune_audit(before).await
    }
    async fn open_runs(&self) -> kala_store::Result<Vec<OpenRun>> {
        self.0.open_runs().await
    }
    async fn claim(&self, c: kala_store::Claim) -> kala_store::Result<bool> {
        self.0.claim(c).await
    }
    async fn pending_notices(&self, limit: usize) -> kala_store::Result<Vec<kala_store::Notice>> {
        self.0.pending_notices(limit).await
    }
    async fn notices(&self, job_id: &str) -> kala_store::Result<Vec<kala_store::Notice>> {
        self.0.notices(job_id).await
    }
    async fn prune_notices(&self, before: Timestamp) -> kala_store::Result<u64> {
        self.0.prune_notices(before).await
    }
    async fn close(&self) -> kala_store::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn without_a_journal_a_run_goes_on_unless_the_journal_is_required() {
    let store: Arc<dyn JobStore> = Arc::new(NoJournal(MemoryStore::new()));
    let mut h = harness_on(store.clone(), t0()).await;
    h.engine
        .create(job("runs anyway", "ok", &iso("R1", 10, "PT1M")))
        .await
        .unwrap();
    h.advance(10).await;
    assert_eq!(h.finished().await.outcome, Outcome::Succeeded);
    let m = h.engine.metrics().snapshot();
    assert_eq!((m.runs_unjournaled, m.runs_not_started), (1, 0));

    let config = EngineConfig {
        require_journal: true,
        ..EngineConfig::default()
    };
    let store: Arc<dyn JobStore> = Arc::new(NoJournal(MemoryStore::new()));
    let mut h = harness_with(store, t0(), config).await;
    h.engine
        .create(job("never starts", "ok", &iso("R1", 10, "PT1M")))
        .await
        .unwrap();
    h.advance(10).await;
    h.quiet().await;
    assert!(h.names().is_empty());
    let m = h.engine.metrics().snapshot();
    assert_eq!((m.runs_unjournaled, m.runs_not_started), (0, 1));
}
