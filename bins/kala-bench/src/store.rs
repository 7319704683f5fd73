//! `store`: durable saves/s on the embedded store, bulk load, file size.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use jiff::{SignedDuration, Timestamp};
use kala_job::Job;
use kala_store::{Batch, JobStore};
use kala_store_redb::RedbStore;

use crate::report::{Measure, measure};

/// Stores `n` far-future repeating jobs in batches of 10,000.
pub async fn fill(store: &dyn JobStore, n: usize) -> anyhow::Result<()> {
    let mut k = 0;
    while k < n {
        let end = (k + 10_000).min(n);
        store
            .apply(Batch {
                put: (k..end).map(far_future_job).collect(),
                ..Batch::default()
            })
            .await?;
        k = end;
    }
    Ok(())
}

/// A job as the server stores it when created over HTTP: its first run
/// a year ahead, shown as `next_run_at`.
pub fn far_future_job(k: usize) -> Job {
    let mut j = Job::new(format!("bench job {k}"), "true");
    let start = Timestamp::now() + SignedDuration::from_hours(24 * 365);
    j.schedule = format!("R/{start}/PT1H");
    j.next_run_at = Some(start);
    j
}

// ---------- store ----------

pub async fn bench_store(
    saves: usize,
    writers: &[usize],
    bulk: &[usize],
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    let mut out = Vec::new();
    for &w in writers {
        let mut samples = Vec::new();
        for _ in 0..repeat {
            let dir = tempfile::tempdir()?;
            let store = Arc::new(RedbStore::open_dir(dir.path())?);
            let per = saves.div_ceil(w);
            let started = Instant::now();
            let mut tasks = Vec::new();
            for t in 0..w {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for k in 0..per {
                        store.apply(Batch::put(far_future_job(t * per + k))).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            samples.push((per * w) as f64 / started.elapsed().as_secs_f64());
            store.close().await?;
        }
        eprintln!("store: {w} writers done");
        out.push(measure(
            format!("durable saves/s, {w} writer(s)"),
            "saves/s",
            samples,
        ));
    }
    for &n in bulk {
        let mut load = Vec::new();
        let mut insert = Vec::new();
        let mut size = Vec::new();
        for _ in 0..repeat {
            let dir = tempfile::tempdir()?;
            let store = RedbStore::open_dir(dir.path())?;
            let started = Instant::now();
            fill(&store, n).await?;
            insert.push(started.elapsed().as_secs_f64());
            store.close().await?;
            drop(store);
            let file = dir.path().join(kala_store_redb::FILE_NAME);
            size.push(std::fs::metadata(&file)?.len() as f64 / n as f64);
            let started = Instant::now();
            let store = RedbStore::open_dir(dir.path())?;
            let jobs = store.load_all().await?;
            load.push(started.elapsed().as_secs_f64());
            if jobs.len() != n {
                bail!("bulk load returned {} of {n} jobs", jobs.len());
            }
        }
        eprintln!("store: bulk {n} done");
        out.push(measure(
            format!("bulk insert {n} jobs (batches of 10k)"),
            "s",
            insert,
        ));
        out.push(measure(format!("open + load_all {n} jobs"), "s", load));
        out.push(measure(format!("file size per job at {n}"), "bytes", size));
    }
    Ok(out)
}
