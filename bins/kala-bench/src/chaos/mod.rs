//! `chaos`: the long version of the fault suite (tests/faults.rs). N
//! kala-server instances on one database, each through its own
//! kala-testkit `FaultProxy`, jobs running every second, and for M
//! minutes one fault at a time drawn in turn from the kinds asked:
//!
//! * `kill`: SIGKILL, back 3–8 s later;
//! * `pause`: SIGSTOP for 4–12 s;
//! * `partition`: the link first slow (250 ms each way for 2 s), then
//!   stalled both ways without closing for 4–12 s;
//! * `skew`: restarted with its wall clock 1–3 s off (libfaketime) for
//!   15 s, then restarted true.
//!
//! Meanwhile one-off jobs are created, jobs disabled and enabled again
//! through other instances, and jobs deleted. At the end the oracle of
//! kala-testkit judges the jobs' own side effects against the records and
//! counters, and the healthy instances' lateness during pauses and
//! partitions is reported.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kala_testkit::oracle::{self, Execution};
use kala_testkit::{Fault, FaultProxy, ServerProcess, faketime_env};
use serde_json::json;

use crate::report::{Measure, measure, percentile};
use backend::Backend;

mod backend;
mod explain;
mod ops;

use crate::server::server_binary;
use ops::{Ledger, Rng, ops};

pub struct ChaosArgs {
    pub server: Option<PathBuf>,
    pub backend: String,
    pub address: Option<String>,
    pub instances: usize,
    pub minutes: f64,
    pub faults: Vec<String>,
    pub jobs: usize,
    pub seed: Option<u64>,
}

struct Instance {
    name: String,
    dir: tempfile::TempDir,
    proxy: FaultProxy,
    server: Option<ServerProcess>,
}

struct Chaos {
    bin: PathBuf,
    backend: Backend,
    nodes: Vec<Instance>,
    http: reqwest::Client,
    /// What happened when (unix s), for explaining a failed verdict.
    events: Vec<(f64, String)>,
}

impl Chaos {
    fn event(&mut self, what: String) {
        self.events.push((now_s(), what));
    }

    fn start(&mut self, i: usize, env: &[(String, String)]) -> anyhow::Result<()> {
        let n = &mut self.nodes[i];
        let mut args = self.backend.flags(n.proxy.port());
        // Every record kept: the oracle holds each run against its own.
        args.extend([
            "--node-name".into(),
            n.name.clone(),
            "--keep-runs".into(),
            "0".into(),
        ]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        n.server = Some(ServerProcess::start_with_env(
            &self.bin,
            n.dir.path(),
            &args,
            &env,
        )?);
        let what = format!(
            "{} started at {}",
            self.nodes[i].name,
            self.base(i).unwrap_or_default()
        );
        self.event(what);
        Ok(())
    }

    fn base(&self, i: usize) -> Option<String> {
        self.nodes[i].server.as_ref().map(|s| s.base.clone())
    }

    /// A random instance that answers (not `but`, not down).
    fn healthy(&self, rng: &mut Rng, but: Option<usize>) -> anyhow::Result<(usize, String)> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| Some(*i) != but && self.nodes[*i].server.is_some())
            .collect();
        let i = *up.get(rng.below(up.len())).context("no healthy instance")?;
        Ok((i, self.base(i).context("down")?))
    }

    async fn post(
        &self,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut r = self.http.post(url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("POST {url}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// The partitions each instance holds, as instance `i` sees them.
    async fn owners(&self, base: &str) -> HashMap<String, BTreeSet<u32>> {
        let Ok(r) = self
            .http
            .get(format!("{base}/api/v1/cluster/"))
            .send()
            .await
        else {
            return HashMap::new();
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        oracle::owners(&v)
    }
}

fn now_s() -> f64 {
    jiff::Timestamp::now().as_nanosecond() as f64 / 1e9
}

/// A fault's window, for the lateness of the healthy instances.
struct Window {
    victim: String,
    from: f64,
    to: f64,
    owners: HashMap<String, BTreeSet<u32>>,
}

pub async fn bench_chaos(a: &ChaosArgs) -> anyhow::Result<Vec<Measure>> {
    let bin = server_binary(a.server.clone())?;
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("runs.log");
    let ns = format!("kala_chaos_{}", uuid_like());
    let backend = Backend::prepare(&a.backend, a.address.clone(), &ns).await?;
    let upstream = backend.upstream.clone();
    let mut rng = Rng(a
        .seed
        .unwrap_or_else(|| jiff::Timestamp::now().subsec_nanosecond().unsigned_abs() as u64 | 1));
    let mut c = Chaos {
        bin,
        backend,
        nodes: Vec::new(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        events: Vec::new(),
    };
    for i in 0..a.instances {
        c.nodes.push(Instance {
            name: format!("n{i}"),
            dir: tempfile::tempdir()?,
            proxy: FaultProxy::start(&upstream)?,
            server: None,
        });
    }
    for i in 0..a.instances {
        c.start(i, &[])?;
    }
    let command = oracle::logging_command(&log);
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let mut ledger = Ledger::default();
    for k in 0..a.jobs {
        let (_, base) = c.healthy(&mut rng, None)?;
        let body = json!({"name": format!("every second {k}"), "command": command, "schedule": format!("R/{start}/PT1S")});
        let v = c.post(&format!("{base}/api/v1/job/"), Some(body)).await?;
        ledger
            .every
            .push(v["id"].as_str().context("id")?.to_string());
    }
    tokio::time::sleep(Duration::from_secs(8)).await;

    let kinds: Vec<String> = a.faults.clone();
    let until = std::time::Instant::now() + Duration::from_secs_f64(a.minutes * 60.0);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut windows: Vec<Window> = Vec::new();
    let mut killed: BTreeSet<String> = BTreeSet::new();
    let mut round = 0usize;
    while std::time::Instant::now() < until {
        let kind = kinds[round % kinds.len()].clone();
        round += 1;
        let victim = rng.below(a.instances);
        let name = c.nodes[victim].name.clone();
        // Operations through the healthy instances, before the fault.
        ops(&mut c, &mut rng, victim, &command, &mut ledger).await;
        let (_, seen_by) = c.healthy(&mut rng, Some(victim))?;
        let owners = c.owners(&seen_by).await;
        let from = now_s();
        c.event(format!("{kind} of {name} begins (owners {owners:?})"));
        match kind.as_str() {
            "kill" => {
                if let Some(s) = c.nodes[victim].server.take() {
                    s.kill9();
                }
                killed.insert(name.clone());
                let d = rng.secs(3, 8);
                tokio::time::sleep(d / 2).await;
                ops(&mut c, &mut rng, victim, &command, &mut ledger).await;
                tokio::time::sleep(d / 2).await;
                c.start(victim, &[])?;
            }
            "pause" => {
                let s = c.nodes[victim].server.as_ref().context("up")?;
                s.pause()?;
                let d = rng.secs(4, 12);
                tokio::time::sleep(d / 2).await;
                ops(&mut c, &mut rng, victim, &command, &mut ledger).await;
                tokio::time::sleep(d / 2).await;
                c.nodes[victim].server.as_ref().context("up")?.resume()?;
                windows.push(Window {
                    victim: name.clone(),
                    from,
                    to: now_s(),
                    owners,
                });
            }
            "partition" => {
                let p = &c.nodes[victim].proxy;
                p.set(Fault::Delay(Duration::from_millis(250)));
                tokio::time::sleep(Duration::from_secs(2)).await;
                p.stall();
                let d = rng.secs(4, 12);
                tokio::time::sleep(d / 2).await;
                ops(&mut c, &mut rng, victim, &command, &mut ledger).await;
                tokio::time::sleep(d / 2).await;
                c.nodes[victim].proxy.heal();
                windows.push(Window {
                    victim: name.clone(),
                    from,
                    to: now_s(),
                    owners,
                });
            }
            "skew" => {
                let off = (1.0 + rng.below(2001) as f64 / 1000.0)
                    * if rng.below(2) == 0 { -1.0 } else { 1.0 };
                if let Some(s) = c.nodes[victim].server.take() {
                    s.stop()?;
                }
                c.start(victim, &faketime_env(off)?)?;
                tokio::time::sleep(Duration::from_secs(7)).await;
                ops(&mut c, &mut rng, victim, &command, &mut ledger).await;
                tokio::time::sleep(Duration::from_secs(8)).await;
                if let Some(s) = c.nodes[victim].server.take() {
                    s.stop()?;
                }
                c.start(victim, &[])?;
            }
            other => bail!("--faults: unknown kind {other} (kill, pause, partition, skew)"),
        }
        c.event(format!("{kind} of {name} ends"));
        *counts.entry(kind.clone()).or_default() += 1;
        eprintln!("chaos: {kind} of {name} done ({:.0} s)", now_s() - from);
        // Recover before the next fault.
        tokio::time::sleep(rng.secs(3, 6)).await;
    }

    // Stop ledger.every job, let late records settle, read everything back.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (_, base) = c.healthy(&mut rng, None)?;
    for id in ledger
        .every
        .iter()
        .filter(|id| !ledger.deleted.contains(*id))
    {
        c.post(&format!("{base}/api/v1/job/disable/{id}/"), None)
            .await?;
    }
    let stopped_at = now_s();
    for id in ledger
        .every
        .iter()
        .filter(|id| !ledger.deleted.contains(*id))
    {
        ledger.stops.push((id.clone(), stopped_at, f64::INFINITY));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let runs: Vec<Execution> =
        oracle::executions(&std::fs::read_to_string(&log).unwrap_or_default());
    let api = kala_client::Client::new(&base)?;
    let mut jobs = Vec::new();
    for id in ledger
        .every
        .iter()
        .chain(&ledger.one_offs)
        .filter(|id| !ledger.deleted.contains(*id))
    {
        let records = api.runs(id, None).await?;
        let job = api.get(id).await?.job;
        jobs.push(oracle::JobState {
            id: id.clone(),
            every_second: ledger.every.contains(id),
            records: records.iter().map(oracle::Record::from).collect(),
            success_count: job.metadata.success_count,
            error_count: job.metadata.error_count,
            // A skewed clock runs points up to 3 s late.
            check_points_until: stopped_at - 4.0,
        });
    }
    let verdict = oracle::judge(
        &runs,
        &oracle::Facts {
            jobs: &jobs,
            one_offs: &ledger.one_offs,
            stops: &ledger.stops,
            stop_grace: 0.5,
            killed: &killed,
        },
    );
    let mut late: Vec<f64> = Vec::new();
    for w in &windows {
        for r in runs
            .iter()
            .filter(|r| r.node != w.victim && !r.point.is_empty())
        {
            let part = kala_store::partition_of(&r.job);
            if !w.owners.get(&r.node).is_some_and(|p| p.contains(&part)) {
                continue;
            }
            if let Some(p) = oracle::point_secs(&r.point)
                && p >= w.from
                && p <= w.to
            {
                late.push(r.at - p);
            }
        }
    }
    late.sort_by(f64::total_cmp);
    for n in c.nodes.iter_mut() {
        if let Some(s) = n.server.take() {
            let _ = s.stop();
        }
    }
    c.backend.cleanup().await;
    if !verdict.passed() {
        eprintln!("chaos: the oracle found faults: {verdict:#?}");
        explain::explain(&verdict, &runs, &jobs, &c.events);
    }
    let one = |name: &str, unit: &'static str, v: f64| measure(name, unit, vec![v]);
    let mut out = vec![
        one("executions", "runs", verdict.executions as f64),
        one(
            "schedule points checked",
            "points",
            verdict.points_checked as f64,
        ),
        one(
            "duplicate executions",
            "points",
            verdict.duplicates.len() as f64,
        ),
        one(
            "points without a trace",
            "points",
            verdict.untraced.len() as f64,
        ),
        one(
            "runs after a delete or disable answered",
            "runs",
            verdict.after_stop.len() as f64,
        ),
        one(
            "runs without their own record",
            "runs",
            verdict.bad_records.len() as f64,
        ),
        one(
            "counter mismatches",
            "jobs",
            verdict.counter_mismatches.len() as f64,
        ),
        one(
            "healthy lateness p50 (pauses, partitions)",
            "s",
            percentile(&late, 0.5),
        ),
        one(
            "healthy lateness p99 (pauses, partitions)",
            "s",
            percentile(&late, 0.99),
        ),
        one(
            "healthy lateness max (pauses, partitions)",
            "s",
            late.last().copied().unwrap_or(f64::NAN),
        ),
    ];
    for k in &kinds {
        out.push(one(
            &format!("faults: {k}"),
            "faults",
            counts.get(k).copied().unwrap_or(0) as f64,
        ));
    }
    Ok(out)
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        jiff::Timestamp::now().as_nanosecond().unsigned_abs() as u64
            ^ u64::from(std::process::id())
    )
}
