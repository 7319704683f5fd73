//! `cluster`: several kala-server instances on one PostgreSQL schema.
//! Sustained runs/s of `true` jobs with 1, 2, 3… instances (and the
//! database transactions per run, from `pg_stat_database`), duplicates
//! (run records per point), takeover time after SIGKILL, and the time
//! until a job created through one instance is visible through another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use sqlx::Connection;

use crate::report::{Measure, measure};
use crate::server::{ServerProcess, server_binary};

pub struct ClusterArgs {
    pub server: Option<PathBuf>,
    pub pg_url: String,
    pub instances: Vec<usize>,
    pub jobs: usize,
    pub seconds: f64,
    pub kills: usize,
}

struct Cluster {
    bin: PathBuf,
    backend: Vec<String>,
    dirs: Vec<tempfile::TempDir>,
    servers: Vec<Option<ServerProcess>>,
}

impl Cluster {
    fn start(bin: &Path, backend: &[String], n: usize) -> anyhow::Result<Cluster> {
        let mut c = Cluster {
            bin: bin.to_path_buf(),
            backend: backend.to_vec(),
            dirs: Vec::new(),
            servers: Vec::new(),
        };
        for i in 0..n {
            c.dirs.push(tempfile::tempdir()?);
            c.servers.push(Some(c.spawn(i)?));
        }
        Ok(c)
    }

    fn spawn(&self, i: usize) -> anyhow::Result<ServerProcess> {
        let mut args = self.backend.clone();
        args.extend([
            "--node-name".to_string(),
            format!("bench-{i}"),
            "--max-concurrent-runs".to_string(),
            "512".to_string(),
        ]);
        Ok(ServerProcess::start(&self.bin, self.dirs[i].path(), &args)?)
    }

    fn base(&self, i: usize) -> anyhow::Result<String> {
        Ok(self.servers[i]
            .as_ref()
            .context("instance not running")?
            .base
            .clone())
    }

    fn stop(mut self) -> anyhow::Result<()> {
        for s in self.servers.iter_mut().filter_map(Option::take) {
            s.stop()?;
        }
        Ok(())
    }
}

/// The sum over the instances of a counter line of `/metrics`.
async fn counter_sum(http: &reqwest::Client, c: &Cluster, name: &str) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for i in 0..c.servers.len() {
        if c.servers[i].is_none() {
            continue;
        }
        let text = http
            .get(format!("{}/metrics", c.base(i)?))
            .send()
            .await?
            .text()
            .await?;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) {
                sum += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(sum)
}

/// `kala_runs_total{result="…"}` of one instance.
async fn runs_total(http: &reqwest::Client, base: &str) -> anyhow::Result<HashMap<String, f64>> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("kala_runs_total{result=\"")
            && let Some((result, value)) = rest.split_once("\"} ")
        {
            out.insert(result.to_string(), value.trim().parse().unwrap_or(0.0));
        }
    }
    Ok(out)
}

async fn finished(http: &reqwest::Client, c: &Cluster) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for i in 0..c.servers.len() {
        if c.servers[i].is_some() {
            let m = runs_total(http, &c.base(i)?).await?;
            sum += m.get("succeeded").copied().unwrap_or(0.0)
                + m.get("failed").copied().unwrap_or(0.0);
        }
    }
    Ok(sum)
}

async fn xact_commit(pg: &mut sqlx::PgConnection) -> anyhow::Result<f64> {
    let v: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *pg)
    .await?;
    Ok(v as f64)
}

/// Partitions held by live instances, per instance, from one instance.
async fn held(http: &reqwest::Client, base: &str) -> anyhow::Result<HashMap<String, usize>> {
    let v: serde_json::Value = http
        .get(format!("{base}/api/v1/cluster/"))
        .send()
        .await?
        .json()
        .await?;
    let mut out = HashMap::new();
    for n in v["nodes"].as_array().cloned().unwrap_or_default() {
        if n["alive"] == true {
            out.insert(
                n["name"].as_str().unwrap_or("").to_string(),
                n["partitions"].as_array().map_or(0, Vec::len),
            );
        }
    }
    Ok(out)
}

async fn create_jobs(base: &str, n: usize, start_in: i64) -> anyhow::Result<Vec<String>> {
    let kala = kala_client::Client::new(base)?;
    let start = Timestamp::now() + SignedDuration::from_secs(start_in);
    let mut ids = Vec::with_capacity(n);
    for k in 0..n {
        let mut job = kala_client::Job::new(format!("cluster bench {k}"), "true");
        // Created slower than planned (a loaded machine): start a little
        // later rather than in the past.
        let first = start.max(Timestamp::now() + SignedDuration::from_secs(2));
        job.schedule = format!("R/{first}/PT1S");
        ids.push(kala.create(&job).await?);
    }
    Ok(ids)
}

pub async fn bench_cluster(a: &ClusterArgs) -> anyhow::Result<Vec<Measure>> {
    let bin = server_binary(a.server.clone())?;
    let http = reqwest::Client::new();
    let mut pg = sqlx::PgConnection::connect(&a.pg_url)
        .await
        .with_context(|| format!("PostgreSQL at {}", a.pg_url))?;
    let mut out = Vec::new();
    for &n in &a.instances {
        let schema = format!("kala_bench_{}", uuid_like());
        let backend: Vec<String> = [
            "--jobdb",
            "postgres",
            "--jobdb-address",
            &a.pg_url,
            "--jobdb-namespace",
            &schema,
        ]
        .map(String::from)
        .to_vec();
        let c = Cluster::start(&bin, &backend, n)?;
        // Let the instances share the partitions before the jobs start.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let start_in = 3 + (a.jobs / 500) as i64;
        let ids = create_jobs(&c.base(0)?, a.jobs, start_in).await?;
        tokio::time::sleep(Duration::from_secs(start_in as u64 + 2)).await;
        let (r0, x0, t0) = (
            finished(&http, &c).await?,
            xact_commit(&mut pg).await?,
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
        let (r1, x1) = (finished(&http, &c).await?, xact_commit(&mut pg).await?);
        let elapsed = t0.elapsed().as_secs_f64();
        let runs = r1 - r0;
        println!(
            "  fenced runs {}, lease errors {}, partitions taken {}, skipped {}",
            counter_sum(&http, &c, "kala_runs_fenced_total").await?,
            counter_sum(&http, &c, "kala_lease_errors_total").await?,
            counter_sum(&http, &c, "kala_partitions_taken_total").await?,
            counter_sum(&http, &c, "kala_runs_total{result=\"skipped\"}").await?,
        );
        let rate = runs / elapsed;
        println!(
            "{n} instance(s), {} jobs every second: {rate:.0} runs/s ({:.0}% of the {} due), {:.2} transactions per run",
            a.jobs,
            100.0 * rate / a.jobs as f64,
            a.jobs,
            (x1 - x0) / runs.max(1.0)
        );
        out.push(measure(
            format!("cluster {n} instance(s): runs/s"),
            "runs/s",
            vec![rate],
        ));
        out.push(measure(
            format!("cluster {n} instance(s): db transactions per run"),
            "xact",
            vec![(x1 - x0) / runs.max(1.0)],
        ));
        // Duplicates: run records of one point, from the database.
        let dups: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM (SELECT job_id, (run::jsonb)->>'scheduled_at' AS p, COUNT(*) AS k \
             FROM \"{schema}\".kala_runs GROUP BY 1, 2 HAVING COUNT(*) > 1) d"
        )))
        .fetch_one(&mut pg)
        .await?;
        println!("  points recorded more than once: {dups}");
        out.push(measure(
            format!("cluster {n} instance(s): duplicate points"),
            "points",
            vec![dups as f64],
        ));
        if n >= 2 {
            takeover_and_visibility(&http, c, a, n, &mut out).await?;
        } else {
            c.stop()?;
        }
        drop(ids);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&mut pg)
        .await?;
    }
    Ok(out)
}

async fn takeover_and_visibility(
    http: &reqwest::Client,
    mut c: Cluster,
    a: &ClusterArgs,
    n: usize,
    out: &mut Vec<Measure>,
) -> anyhow::Result<()> {
    for (how, rounds) in [("SIGKILL", a.kills), ("SIGTERM", a.kills.min(5))] {
        let mut takeovers = Vec::new();
        for k in 0..rounds {
            let victim = 1 + k % (n - 1);
            // Balanced first: every instance holds a share.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let h = held(http, &c.base(0)?).await?;
                if h.len() == n && h.values().all(|&p| p > 0) && h.values().sum::<usize>() == 64 {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the cluster did not rebalance within 30 s: {h:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let dead = format!("bench-{victim}");
            let stopped = Instant::now();
            let stopping = c.servers[victim].take().map(|s| {
                if how == "SIGKILL" {
                    s.kill9();
                    None
                } else {
                    // SIGTERM hands the partitions over, then waits for
                    // its runs: the wait happens beside the measurement.
                    Some(std::thread::spawn(move || s.stop()))
                }
            });
            loop {
                let h = held(http, &c.base(0)?).await?;
                let live: usize = h
                    .iter()
                    .filter(|(name, _)| **name != dead)
                    .map(|(_, p)| *p)
                    .sum();
                if live == 64 {
                    break;
                }
                if stopped.elapsed() > Duration::from_secs(60) {
                    bail!("no takeover within 60 s: {h:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let t = stopped.elapsed().as_secs_f64();
            println!("  {how} {k}: {dead}'s partitions taken over in {t:.2} s");
            takeovers.push(t);
            if let Some(Some(waiting)) = stopping {
                let _ = waiting.join();
            }
            c.servers[victim] = Some(c.spawn(victim)?);
        }
        out.push(measure(
            format!("cluster {n} instances: takeover after {how}"),
            "s",
            takeovers,
        ));
    }
    // The last restarted instance has rejoined before visibility is timed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while held(http, &c.base(0)?)
        .await?
        .values()
        .filter(|&&p| p > 0)
        .count()
        < n
    {
        if Instant::now() > deadline {
            bail!("the cluster did not rebalance within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Visibility: created through instance 0, seen through the last one.
    let mut seen = Vec::new();
    let kala = kala_client::Client::new(&c.base(0)?)?;
    let other = c.base(n - 1)?;
    for k in 0..20 {
        let mut job = kala_client::Job::new(format!("visibility {k}"), "true");
        job.schedule = format!(
            "R/{}/PT1H",
            Timestamp::now() + SignedDuration::from_hours(1)
        );
        let id = kala.create(&job).await?;
        let created = Instant::now();
        loop {
            let r = http
                .get(format!("{other}/api/v1/job/{id}/?stats=false"))
                .send()
                .await?;
            if r.status().is_success() {
                break;
            }
            if created.elapsed() > Duration::from_secs(30) {
                bail!("job {id} not visible through another instance within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ms = created.elapsed().as_secs_f64() * 1e3;
        println!("  change {k} visible through another instance after {ms:.1} ms");
        seen.push(ms);
    }
    out.push(measure(
        format!("cluster {n} instances: change visible elsewhere"),
        "ms",
        seen,
    ));
    c.stop()
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        Timestamp::now().as_nanosecond() as u64
    )
}
