//! `kala-bench`: the instrument behind docs/BENCHMARKS.md. Every number is
//! measured, never asserted; each run prints a table and can write JSON.
//!
//! * `store`    — durable saves/s on the embedded store with 1..N writers,
//!   bulk load time, file size per job.
//! * `http`     — POST create and GET job requests/s and latency at C
//!   connections, against a kala-server it starts (fresh data dir, loopback)
//!   or any Kala-compatible server given by `--url`.
//! * `restart`  — time from process start until N stored jobs are loaded and
//!   scheduled, and RSS per stored job.
//! * `lateness` — actual start minus scheduled time of in-process or `true`
//!   jobs at a given rate, with extra idle jobs in the queue.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use jiff::{SignedDuration, Timestamp};
use kala_engine::{Engine, EngineConfig, Event, SystemClock};
use kala_executor::Executor;
use kala_job::{Job, JobType};
use kala_store::{Batch, JobStore, MemoryStore};
use kala_store_redb::RedbStore;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "kala-bench",
    about = "Measure kala or any Kala-compatible server"
)]
struct Cli {
    /// Write the results as JSON here too.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Repeat each measurement and report min/median/max.
    #[arg(long, global = true, default_value_t = 1)]
    repeat: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embedded store: durable saves/s, bulk load, file size.
    Store {
        #[arg(long, default_value_t = 5000)]
        saves: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        writers: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        bulk: Vec<usize>,
    },
    /// HTTP create and get at C connections.
    Http {
        /// A running Kala-compatible server; without it kala-server is started.
        #[arg(long)]
        url: Option<String>,
        /// The kala-server binary to start (default: next to this binary).
        #[arg(long)]
        server: Option<PathBuf>,
        /// Extra arguments for the started kala-server, e.g.
        /// `--server-arg=--jobdb=postgres`.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        connections: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Restart time and RSS per stored job.
    Restart {
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        jobs: Vec<usize>,
        #[arg(long)]
        server: Option<PathBuf>,
        /// Extra arguments for kala-server (another --jobdb). With them the
        /// jobs are created over HTTP instead of written to a redb file, and
        /// deleted afterwards.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// Keep the filled embedded store in this directory (one --jobs
        /// value): reused when it already holds that many jobs, so a
        /// profiler can be pointed at the same start-up again.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Lateness of scheduled runs at a rate, with idle jobs queued.
    Lateness {
        /// Runs per second.
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        /// Idle jobs scheduled far in the future, besides the running ones.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// `inprocess` (a no-op handler) or `true` (the command).
        #[arg(long, default_value = "inprocess")]
        kind: String,
        /// `redb` (durable, default) or `memory`.
        #[arg(long, default_value = "redb")]
        store: String,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(async {
        match &cli.cmd {
            Cmd::Store {
                saves,
                writers,
                bulk,
            } => bench_store(*saves, writers, bulk, cli.repeat).await,
            Cmd::Http {
                url,
                server,
                server_args,
                connections,
                seconds,
            } => {
                bench_http(
                    url.clone(),
                    server.clone(),
                    server_args,
                    connections,
                    *seconds,
                    cli.repeat,
                )
                .await
            }
            Cmd::Restart {
                jobs,
                server,
                server_args,
                dir,
            } => bench_restart(jobs, server.clone(), server_args, dir.clone(), cli.repeat).await,
            Cmd::Lateness {
                rate,
                idle,
                seconds,
                kind,
                store,
            } => bench_lateness(*rate, *idle, *seconds, kind, store).await,
        }
    })?;
    println!();
    println!(
        "{:<48} {:>14} {:>14} {:>14}  unit",
        "measurement", "min", "median", "max"
    );
    for r in &results {
        println!(
            "{:<48} {:>14.3} {:>14.3} {:>14.3}  {}",
            r.name, r.min, r.median, r.max, r.unit
        );
    }
    if let Some(path) = &cli.json {
        let v: Vec<_> = results
            .iter()
            .map(|r| json!({"name": r.name, "unit": r.unit, "min": r.min, "median": r.median, "max": r.max, "samples": r.samples}))
            .collect();
        std::fs::write(
            path,
            serde_json::to_vec_pretty(
                &json!({"date": Timestamp::now().to_string(), "results": v}),
            )?,
        )?;
    }
    Ok(())
}

struct Measure {
    name: String,
    unit: &'static str,
    min: f64,
    median: f64,
    max: f64,
    samples: Vec<f64>,
}

fn measure(name: impl Into<String>, unit: &'static str, mut samples: Vec<f64>) -> Measure {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    Measure {
        name: name.into(),
        unit,
        min: samples.first().copied().unwrap_or(f64::NAN),
        median: if n == 0 { f64::NAN } else { samples[n / 2] },
        max: samples.last().copied().unwrap_or(f64::NAN),
        samples,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Stores `n` far-future repeating jobs in batches of 10,000.
async fn fill(store: &dyn JobStore, n: usize) -> anyhow::Result<()> {
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

fn far_future_job(k: usize) -> Job {
    let mut j = Job::new(format!("bench job {k}"), "true");
    let start = Timestamp::now() + SignedDuration::from_hours(24 * 365);
    j.schedule = format!("R/{start}/PT1H");
    j
}

// ---------- store ----------

async fn bench_store(
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

// ---------- starting a server ----------

struct Server {
    child: Child,
    base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("kala-server");
    if !p.exists() {
        bail!(
            "{} not found; build it (cargo build --release -p kala-server) or pass --server",
            p.display()
        );
    }
    Ok(p)
}

fn start_server(
    bin: &Path,
    dir: &Path,
    extra: &[String],
) -> anyhow::Result<(Child, String, Instant)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--port", "0", "--bolt-path"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("kala-server listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_string();
    Ok((child, base, started))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}

// ---------- http ----------

async fn bench_http(
    url: Option<String>,
    server: Option<PathBuf>,
    server_args: &[String],
    conns: &[usize],
    seconds: f64,
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    let _server;
    let owned = url.is_none();
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let dir = tempfile::tempdir()?;
            let (child, base, _) = start_server(&server_binary(server)?, dir.path(), server_args)?;
            _server = Server {
                child,
                base: base.clone(),
                _dir: Some(dir),
            };
            base
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut out = Vec::new();
    let mut some_ids: Vec<String> = Vec::new();
    for &c in conns {
        let mut rps = Vec::new();
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            let (n, lat, ids) = load(&client, &base, c, seconds, |client, base, k| {
                let body = json!({"name": format!("bench {k}"), "command": "true", "schedule": format!("R/{}/PT1H", Timestamp::now() + SignedDuration::from_hours(24 * 365))}).to_string();
                let req = client.post(format!("{base}/api/v1/job/")).body(body);
                async move {
                    let r = req.send().await.ok()?;
                    if r.status().as_u16() != 201 {
                        return None;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
                    v["id"].as_str().map(str::to_string)
                }
            })
            .await;
            rps.push(n as f64 / seconds);
            p50.push(percentile(&lat, 0.5) * 1e3);
            p99.push(percentile(&lat, 0.99) * 1e3);
            if some_ids.len() < 1000 {
                some_ids.extend(ids.into_iter().take(1000));
            }
        }
        eprintln!("http: create at {c} connections done");
        out.push(measure(format!("POST create, {c} conn"), "req/s", rps));
        out.push(measure(format!("POST create p50, {c} conn"), "ms", p50));
        out.push(measure(format!("POST create p99, {c} conn"), "ms", p99));
    }
    if some_ids.is_empty() {
        bail!("no job was created; is {base} a Kala server?");
    }
    let ids = Arc::new(some_ids);
    for &c in conns {
        let mut rps = Vec::new();
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            let ids = ids.clone();
            let (n, lat, _) = load(&client, &base, c, seconds, move |client, base, k| {
                let id = &ids[k % ids.len()];
                let req = client.get(format!("{base}/api/v1/job/{id}/"));
                async move {
                    let r = req.send().await.ok()?;
                    let ok = r.status().as_u16() == 200;
                    r.bytes().await.ok()?;
                    ok.then(String::new)
                }
            })
            .await;
            rps.push(n as f64 / seconds);
            p50.push(percentile(&lat, 0.5) * 1e3);
            p99.push(percentile(&lat, 0.99) * 1e3);
        }
        eprintln!("http: get at {c} connections done");
        out.push(measure(format!("GET job, {c} conn"), "req/s", rps));
        out.push(measure(format!("GET job p50, {c} conn"), "ms", p50));
        out.push(measure(format!("GET job p99, {c} conn"), "ms", p99));
    }
    if owned && !server_args.is_empty() {
        // Leave the remote store as we found it.
        let r = client
            .delete(format!("{base}/api/v1/job/all/"))
            .send()
            .await?;
        if r.status().as_u16() != 204 {
            bail!(
                "cleaning up: DELETE /api/v1/job/all/ answered {}",
                r.status()
            );
        }
    }
    Ok(out)
}

/// Runs `c` loops of requests for `seconds`; returns successes, sorted
/// latencies (s) and what the successes returned.
async fn load<F, Fut>(
    client: &reqwest::Client,
    base: &str,
    c: usize,
    seconds: f64,
    make: F,
) -> (usize, Vec<f64>, Vec<String>)
where
    F: Fn(&reqwest::Client, &str, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Option<String>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, base, make, counter) = (
            client.clone(),
            base.to_string(),
            make.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut got = Vec::new();
            while Instant::now() < deadline {
                let k = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let t = Instant::now();
                if let Some(v) = make(&client, &base, k).await {
                    lat.push(t.elapsed().as_secs_f64());
                    if got.len() < 100 {
                        got.push(v);
                    }
                }
            }
            (lat, got)
        }));
    }
    let mut lat = Vec::new();
    let mut got = Vec::new();
    for t in tasks {
        if let Ok((l, g)) = t.await {
            lat.extend(l);
            got.extend(g);
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat.len(), lat, got)
}

// ---------- restart ----------

async fn bench_restart(
    jobs: &[usize],
    server: Option<PathBuf>,
    server_args: &[String],
    keep_dir: Option<PathBuf>,
    repeat: usize,
) -> anyhow::Result<Vec<Measure>> {
    let bin = server_binary(server)?;
    if keep_dir.is_some() && (jobs.len() != 1 || !server_args.is_empty()) {
        bail!("--dir takes one --jobs value and the embedded store");
    }
    let mut out = Vec::new();
    let base_rss = {
        let dir = tempfile::tempdir()?;
        let (child, _, _) = start_server(&bin, dir.path(), server_args)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = rss_kib(child.id())?;
        drop(Server {
            child,
            base: String::new(),
            _dir: None,
        });
        rss
    };
    for &n in jobs {
        let temp = tempfile::tempdir()?;
        let dir = keep_dir
            .clone()
            .unwrap_or_else(|| temp.path().to_path_buf());
        if server_args.is_empty() {
            std::fs::create_dir_all(&dir)?;
            let store = RedbStore::open_dir(&dir)?;
            let have = store.load_all().await?.len();
            if have != n {
                store.delete_all().await?;
                fill(&store, n).await?;
            }
            store.close().await?;
        } else {
            let (child, base, _) = start_server(&bin, &dir, server_args)?;
            let server = Server {
                child,
                base,
                _dir: None,
            };
            fill_http(&server.base, n).await?;
            stop(server)?;
        }
        let mut times = Vec::new();
        let mut per_job = Vec::new();
        for _ in 0..repeat {
            // The server prints its listening line only after every job is
            // loaded and scheduled.
            let (child, base, started) = start_server(&bin, &dir, server_args)?;
            let elapsed = started.elapsed().as_secs_f64();
            let server = Server {
                child,
                base,
                _dir: None,
            };
            let body = reqwest::get(format!("{}/healthz", server.base))
                .await?
                .bytes()
                .await?;
            let health: serde_json::Value = serde_json::from_slice(&body)?;
            if health["jobs"].as_u64() != Some(n as u64) {
                bail!("server reports {} jobs, expected {n}", health["jobs"]);
            }
            times.push(elapsed);
            let rss = rss_kib(server.child.id())?;
            per_job.push((rss.saturating_sub(base_rss) as f64 * 1024.0) / n as f64);
            stop(server)?;
        }
        if !server_args.is_empty() {
            let (child, base, _) = start_server(&bin, &dir, server_args)?;
            let server = Server {
                child,
                base,
                _dir: None,
            };
            let r = reqwest::Client::new()
                .delete(format!("{}/api/v1/job/all/", server.base))
                .send()
                .await?;
            if r.status().as_u16() != 204 {
                eprintln!(
                    "warning: cleaning up: DELETE /api/v1/job/all/ answered {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
            }
            stop(server)?;
        }
        eprintln!("restart: {n} jobs done");
        out.push(measure(
            format!("start until {n} jobs scheduled"),
            "s",
            times,
        ));
        out.push(measure(
            format!("RSS per stored job at {n}"),
            "bytes",
            per_job,
        ));
    }
    out.push(measure(
        "RSS of an empty server",
        "KiB",
        vec![base_rss as f64],
    ));
    Ok(out)
}

/// SIGTERM and wait, so a remote store is closed cleanly.
fn stop(mut server: Server) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()?;
    server.child.wait()?;
    Ok(())
}

/// Creates `n` far-future jobs over HTTP with 64 connections.
async fn fill_http(base: &str, n: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, base, next) = (client.clone(), base.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                if k >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = json!({"name": format!("restart {k}"), "command": "true",
                    "schedule": format!("R/{}/PT1H", Timestamp::now() + SignedDuration::from_hours(24 * 365))});
                let r = client
                    .post(format!("{base}/api/v1/job/"))
                    .body(body.to_string())
                    .send()
                    .await?;
                if r.status().as_u16() != 201 {
                    bail!("create answered {}", r.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

// ---------- lateness ----------

async fn bench_lateness(
    rate: usize,
    idle: usize,
    seconds: f64,
    kind: &str,
    store_kind: &str,
) -> anyhow::Result<Vec<Measure>> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn JobStore> = match store_kind {
        "memory" => Arc::new(MemoryStore::new()),
        "redb" => Arc::new(RedbStore::open_dir(dir.path())?),
        other => bail!("--store {other:?}: use redb or memory"),
    };
    // Idle jobs go straight to the store; the engine loads them at start.
    fill(&*store, idle).await?;
    let executor = Executor::new()?;
    executor.register("noop", |_job: Job| async { Ok(String::new()) });
    let config = EngineConfig {
        keep_runs: Some(10),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store, executor, Arc::new(SystemClock), config).await?;
    let mut events = engine.subscribe();
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
        engine.create(j).await?;
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
