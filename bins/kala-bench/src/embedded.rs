//! `embedded`: kala's engine against tokio-cron-scheduler (the most used
//! Rust scheduling library), in this process, one at a time: memory per
//! idle job, idle CPU with those jobs, and lateness with `rate` jobs due
//! at every whole second (the same pattern for both: a cron `* * * * * *`
//! for tokio-cron-scheduler, `R/<whole second>/PT1S` for kala). Each job
//! runs a no-op in-process handler that records when it started;
//! lateness is that time minus the whole second it was due at.
//! Run each scheduler in a process of its own (`--scheduler`), so that
//! one's freed memory does not count for the other.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use kala_engine::{Engine, EngineConfig, SystemClock};
use kala_executor::Executor;
use kala_job::{Job, JobType};
use kala_store::JobStore;
use kala_store_redb::RedbStore;

use crate::report::{Measure, measure, percentile};

type Starts = Arc<Mutex<Vec<Timestamp>>>;

/// Resident memory of this process in bytes (`/proc/self/statm`).
fn rss() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096)
}

/// CPU time (user + system) of this process in seconds.
fn cpu() -> anyhow::Result<f64> {
    crate::server::cpu_seconds("self")
}

/// Lateness in ms of each start: its time past the whole second.
fn lateness(starts: &[Timestamp], from: Timestamp) -> Vec<f64> {
    let mut late: Vec<f64> = starts
        .iter()
        .filter(|t| **t >= from)
        .map(|t| (t.as_nanosecond().rem_euclid(1_000_000_000)) as f64 / 1e6)
        .collect();
    late.sort_by(f64::total_cmp);
    late
}

/// What one scheduler must do for the measurements.
enum Sched {
    Kala(Engine, tempfile::TempDir),
    Tcs(tokio_cron_scheduler::JobScheduler),
}

impl Sched {
    async fn start(which: &str, store_kind: &str, starts: Starts) -> anyhow::Result<Sched> {
        match which {
            "kala" => {
                let dir = tempfile::tempdir()?;
                let store: Arc<dyn JobStore> = match store_kind {
                    "redb" => Arc::new(RedbStore::open_dir(dir.path())?),
                    "memory" => Arc::new(kala_store::MemoryStore::new()),
                    other => bail!("--store {other:?}: use redb or memory"),
                };
                let executor = Executor::new()?;
                executor.register("noop", move |_job: Job| {
                    let starts = starts.clone();
                    async move {
                        if let Ok(mut s) = starts.lock() {
                            s.push(Timestamp::now());
                        }
                        Ok(String::new())
                    }
                });
                let config = EngineConfig {
                    keep_runs: Some(10),
                    ..EngineConfig::default()
                };
                let engine = Engine::start(store, executor, Arc::new(SystemClock), config).await?;
                Ok(Sched::Kala(engine, dir))
            }
            "tokio-cron-scheduler" => {
                let s = tokio_cron_scheduler::JobScheduler::new().await?;
                s.start().await?;
                let _ = starts;
                Ok(Sched::Tcs(s))
            }
            other => bail!("--scheduler {other:?}: use kala or tokio-cron-scheduler"),
        }
    }

    /// A job that is not due for a long time.
    async fn add_idle(&self, k: usize) -> anyhow::Result<()> {
        match self {
            Sched::Kala(engine, _) => {
                let mut j = Job::new(format!("idle {k}"), "noop");
                j.job_type = JobType::InProcess;
                j.schedule = format!(
                    "R/{}/PT1H",
                    Timestamp::now() + SignedDuration::from_hours(24 * 365)
                );
                engine.create(j).await?;
            }
            Sched::Tcs(s) => {
                // Once a year, on 1 January.
                let job = tokio_cron_scheduler::Job::new_async("0 0 0 1 1 *", |_id, _l| {
                    Box::pin(async {})
                })?;
                s.add(job).await?;
            }
        }
        Ok(())
    }

    /// A job due at every whole second, recording its starts.
    async fn add_every_second(&self, k: usize, starts: &Starts) -> anyhow::Result<()> {
        match self {
            Sched::Kala(engine, _) => {
                let first = Timestamp::from_second(Timestamp::now().as_second() + 2)?;
                let mut j = Job::new(format!("tick {k}"), "noop");
                j.job_type = JobType::InProcess;
                j.schedule = format!("R/{first}/PT1S");
                engine.create(j).await?;
            }
            Sched::Tcs(s) => {
                let starts = starts.clone();
                let job = tokio_cron_scheduler::Job::new_async("* * * * * *", move |_id, _l| {
                    let starts = starts.clone();
                    Box::pin(async move {
                        if let Ok(mut v) = starts.lock() {
                            v.push(Timestamp::now());
                        }
                    })
                })?;
                s.add(job).await?;
            }
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Sched::Kala(engine, _dir) => {
                engine.shutdown(Duration::from_secs(5)).await;
            }
            Sched::Tcs(mut s) => s.shutdown().await?,
        }
        Ok(())
    }
}

pub async fn bench_embedded(
    which: &str,
    store_kind: &str,
    jobs: usize,
    rate: usize,
    seconds: f64,
) -> anyhow::Result<Vec<Measure>> {
    let starts: Starts = Arc::default();
    let base = rss()?;
    let sched = Sched::start(which, store_kind, starts.clone()).await?;
    let which = match which {
        "kala" => format!("kala on {store_kind}"),
        other => other.to_string(),
    };
    let which = which.as_str();
    let empty = rss()?;
    let t = Instant::now();
    for k in 0..jobs {
        sched.add_idle(k).await?;
    }
    let added_in = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_job = rss()?.saturating_sub(empty) as f64 / jobs.max(1) as f64;
    // Idle: nothing is due for a year.
    let (c0, t0) = (cpu()?, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu()? - c0) / t0.elapsed().as_secs_f64() * 100.0;
    for k in 0..rate {
        sched.add_every_second(k, &starts).await?;
    }
    // One second of warm-up past the first whole second they are due.
    let from = Timestamp::from_second(Timestamp::now().as_second() + 3)?;
    let until = Instant::now() + Duration::from_secs_f64(4.0 + seconds);
    tokio::time::sleep_until(until.into()).await;
    sched.stop().await?;
    let to = from + SignedDuration::from_secs_f64(seconds);
    let got: Vec<Timestamp> = starts
        .lock()
        .map(|s| s.iter().copied().filter(|t| *t < to).collect())
        .unwrap_or_default();
    let late = lateness(&got, from);
    let label = format!("{which}, {jobs} idle + {rate} due each second");
    eprintln!(
        "embedded: {which}: {} starts measured, base RSS {} MiB",
        late.len(),
        base / (1 << 20)
    );
    Ok(vec![
        measure(
            format!("memory per idle job ({which}, {jobs} jobs)"),
            "bytes",
            vec![per_job],
        ),
        measure(format!("adding {jobs} jobs ({which})"), "s", vec![added_in]),
        measure(
            format!("idle CPU with {jobs} jobs ({which})"),
            "% of a core",
            vec![idle_cpu],
        ),
        measure(
            format!("lateness p50 ({label})"),
            "ms",
            vec![percentile(&late, 0.5)],
        ),
        measure(
            format!("lateness p99 ({label})"),
            "ms",
            vec![percentile(&late, 0.99)],
        ),
        measure(
            format!("lateness max ({label})"),
            "ms",
            vec![late.last().copied().unwrap_or(f64::NAN)],
        ),
        measure(
            format!("starts measured ({label})"),
            "starts",
            vec![late.len() as f64],
        ),
    ])
}
