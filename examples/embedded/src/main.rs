//! Embedding kala's scheduler in a Rust service.
//!
//! Builds an engine on the embedded store, registers an in-process async
//! handler as a job kind, schedules it every second three times (`R2`),
//! chains a dependent shell job after it, and watches the runs through the
//! event stream. Run it with `cargo run -p embedded`; `cargo test` runs it
//! too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kala::store::JobStore;
use kala::store::redb::RedbStore;
use kala::{Engine, Event, Job, JobType};

/// Runs the demo in `dir`; returns how many runs it saw finish.
async fn demo(dir: &std::path::Path) -> anyhow::Result<usize> {
    let store = Arc::new(RedbStore::open_dir(dir)?);
    let engine = Engine::builder().store(store.clone()).build().await?;

    // A third kind of job: an async function of this program.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    engine.register_handler("report", move |job: Job| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(format!("{} ran in-process ({n})", job.name)) }
    });

    let mut events = engine.subscribe();
    let mut report = Job::new("nightly report", "report");
    report.job_type = JobType::InProcess;
    // From half a second from now, every second, three times (R2: two
    // repeats after the first run).
    let start = kala::Timestamp::now() + kala::SignedDuration::from_millis(500);
    report.schedule = format!("R2/{start}/PT1S");
    let report_id = engine.create(report).await?;

    // A dependent local command: runs after each successful report.
    let mut notify = Job::new("notify", "echo report done");
    notify.parent_jobs = Some(vec![report_id.clone()]);
    engine.create(notify).await?;

    let mut finished = 0;
    while finished < 6 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await?? {
            Event::RunStarted {
                job_id, trigger, ..
            } => println!("started  {job_id} ({trigger:?})"),
            Event::RunFinished(run) => {
                finished += 1;
                println!(
                    "finished {} {:?}: {}",
                    run.job_id,
                    run.outcome,
                    run.output.trim()
                );
            }
        }
    }
    let job = engine
        .get(&report_id)
        .ok_or_else(|| anyhow::anyhow!("job vanished"))?;
    println!(
        "{}: {} successful runs, done: {}",
        job.name, job.metadata.success_count, job.is_done
    );
    engine.shutdown(Duration::from_secs(5)).await;
    store.close().await?;
    Ok(finished)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("kala-embedded-{}", std::process::id()));
    let n = demo(&dir).await?;
    println!("{n} runs observed; data in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_runs_three_reports_and_three_notifications() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::demo(dir.path()).await.unwrap(), 6);
    }
}
