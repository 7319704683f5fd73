//! `lateness`: actual start minus scheduled time of in-process or `true`
//! jobs at a given rate, with extra idle jobs in the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use jiff::{SignedDuration, Timestamp};
use kala_engine::{Engine, EngineConfig, Event, SystemClock};
use kala_executor::Executor;
use kala_job::{Job, JobType};
use kala_store::{JobStore, MemoryStore};
use kala_store_redb::RedbStore;

use crate::report::{Measure, measure, percentile};
use crate::store::fill;

pub async fn bench_lateness(
    rate: usize,
    idle: usize,
    seconds: f64,
    kind: &str,
    store_kind: &str,
    keep_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<Vec<Measure>> {
    let temp = tempfile::tempdir()?;
    let dir = keep_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let store: Arc<dyn JobStore> = match store_kind {
        "memory" if keep_dir.is_none() => Arc::new(MemoryStore::new()),
        "redb" => {
            std::fs::create_dir_all(&dir)?;
            Arc::new(RedbStore::open_dir(&dir)?)
        }
        other => bail!("--store {other:?}: use redb or memory (memory without --dir)"),
    };
    // Idle jobs go straight to the store; the engine loads them at start.
    let have = match keep_dir {
        Some(_) => store.load_packed().await?.len(),
        None => 0,
    };
    if have != idle {
        store.delete_all(Vec::new()).await?;
        fill(&*store, idle).await?;
    }
    let started = Instant::now();
    let executor = Executor::new()?;
    executor.register("noop", |_job: Job| async { Ok(String::new()) });
    let config = EngineConfig {
        keep_runs: Some(10),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store, executor, Arc::new(SystemClock), config).await?;
    eprintln!(
        "lateness: {idle} idle jobs loaded and scheduled in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut events = engine.subscribe();
    let mut ticks = Vec::with_capacity(rate);
    // `rate` jobs, each once a second, spread evenly over the second.
    // Jobs are created one durable commit at a time (~2k/s): leave room.
    let start = Timestamp::now() + SignedDuration::from_secs(2 + (rate / 500) as i64);
    for k in 0..rate {
        let offset = SignedDuration::from_nanos((1_000_000_000 / rate as i64) * k as i64);
        let mut j = match kind {
            "inprocess" => {
                let mut j = Job::new(format!("tick {k}"), "noop");
                j.job_type = JobType::InProcess;
                j
            }
            "true" => Job::new(format!("tick {k}"), "true"),
            other => bail!("--kind {other:?}: use inprocess or true"),
        };
        j.schedule = format!("R/{}/PT1S", start + offset);
        ticks.push(engine.create(j).await?);
    }
    let measure_from = start + SignedDuration::from_secs(1);
    let wait = measure_from
        .duration_since(Timestamp::now())
        .as_secs_f64()
        .max(0.0);
    let until = Instant::now() + Duration::from_secs_f64(wait + seconds + 1.0);
    let mut late = Vec::new();
    let mut finished = 0u64;
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Ok(Event::RunStarted {
                at,
                scheduled_at: Some(s),
                ..
            })) if s >= measure_from => {
                late.push(at.duration_since(s).as_secs_f64() * 1e3);
            }
            Ok(Ok(Event::RunFinished(_))) => finished += 1,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                bail!("event stream lagged by {n}; the measurement is incomplete")
            }
            _ => {}
        }
    }
    for id in &ticks {
        engine.delete(id).await?;
    }
    engine.shutdown(Duration::from_secs(5)).await;
    late.sort_by(f64::total_cmp);
    let label = format!("{kind}, {rate} runs/s, {} jobs", rate + idle);
    eprintln!("lateness: {} samples, {finished} runs finished", late.len());
    Ok(vec![
        measure(
            format!("lateness p50 ({label})"),
            "ms",
            vec![percentile(&late, 0.5)],
        ),
        measure(
            format!("lateness p90 ({label})"),
            "ms",
            vec![percentile(&late, 0.9)],
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
            format!("runs measured ({label})"),
            "runs",
            vec![late.len() as f64],
        ),
    ])
}
