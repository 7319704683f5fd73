//! Right before a journaled cluster run starts, the database says whether
//! another instance deleted or disabled the job; an answer a stalled link
//! held back is not trusted.

use std::sync::atomic::Ordering;

use super::cluster::{Ran, instance, tick};
use super::pausing::PausingStore;
use super::*;

/// Issue 29: the stored job was read right before the start, but the
/// answer came back 0.7 s late (a stalled link), after another
/// instance's delete had answered: the run must not start on that old
/// answer. The job is read again and the run is recorded not started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_does_not_start_a_run_of_a_job_deleted_meanwhile() {
    let inner = Arc::new(MemoryStore::shared());
    let clock = Arc::new(FakeClock::new(t0()));
    let ran: Ran = Arc::default();
    let held = Arc::new(PausingStore::new(inner.clone(), clock.clone()));
    let a = instance(held.clone(), clock.clone(), "a", ran.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a
        .create(job("deleted meanwhile", "ok", &iso("R0", 2, "PT1H")))
        .await
        .unwrap();
    held.stale_read.store(true, Ordering::SeqCst);
    tick(&clock, 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !held.stale_read.load(Ordering::SeqCst),
        "the job was read before the start"
    );
    let executions: Vec<_> = ran.lock().unwrap().clone();
    assert!(
        executions.is_empty(),
        "the run started on an answer older than the delete: {executions:?}"
    );
    assert!(
        inner.get(&id).await.unwrap().is_none(),
        "the job is deleted"
    );
    assert!(
        inner.open_runs().await.unwrap().is_empty(),
        "the journal entry ended"
    );
    a.shutdown(Duration::from_secs(1)).await;
}
