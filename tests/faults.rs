//! The fault-injection suite (short version; `kala-bench chaos` is the
//! long one): three `kala-server` instances on one database, each through
//! its own TCP proxy (kala-testkit's `FaultProxy`), and faults drawn from
//! what real clusters see: a slow link, then a partition from the
//! database (the proxy stalls both ways without closing), a process
//! pause (SIGSTOP), SIGKILL.
//!
//! The oracle works from the jobs' own side effects: each run appends
//! `KALA_JOB_ID KALA_SCHEDULED_AT KALA_NODE KALA_RUN_ID time` to a file.
//! - no point and no one-off runs twice;
//! - every point has a run or a record (`skipped`, `interrupted`);
//! - nothing runs after its delete or disable answered;
//! - every run's id is in a record of that job, with its node and its
//!   real outcome (written late when its instance was cut off);
//! - counters equal the records;
//! - runs of jobs whose partitions are on healthy instances are not held
//!   up while another instance is cut off or paused (lateness p99 ≤ 1 s,
//!   max ≤ 5 s);
//! - a job created on a healthy instance is visible on the other healthy
//!   one within a second, and a one-off created there runs once, on time.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use kala_testkit::FaultProxy;
use kala_testkit::oracle::{self, Execution, percentile};
use serde_json::json;

fn executions(log: &Path) -> Vec<Execution> {
    oracle::executions(&std::fs::read_to_string(log).unwrap_or_default())
}

fn now_s() -> f64 {
    jiff::Timestamp::now().as_nanosecond() as f64 / 1e9
}

struct Instance {
    server: Option<Server>,
    proxy: FaultProxy,
    dir: std::path::PathBuf,
    name: String,
}

impl Instance {
    fn base(&self) -> String {
        self.server.as_ref().expect("running").base.clone()
    }
}

/// The partitions each instance holds, as one instance sees it.
async fn partitions(c: &reqwest::Client, base: &str) -> HashMap<String, BTreeSet<u32>> {
    let r = req(c, "GET", &format!("{base}/api/v1/cluster/"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    oracle::owners(&r.json())
}

/// Lateness (s) of the scheduled runs that healthy instances executed
/// for jobs whose partitions they held before the fault, in `[from, to]`.
fn healthy_lateness(
    runs: &[Execution],
    owners: &HashMap<String, BTreeSet<u32>>,
    victim: &str,
    from: f64,
    to: f64,
) -> Vec<f64> {
    let mut late: Vec<f64> = runs
        .iter()
        .filter(|r| r.node != victim && !r.point.is_empty())
        .filter(|r| {
            let p = kala_store::partition_of(&r.job);
            owners.get(&r.node).is_some_and(|parts| parts.contains(&p))
        })
        .filter_map(|r| Some((oracle::point_secs(&r.point)?, r.at)))
        .filter(|(p, _)| *p >= from && *p <= to)
        .map(|(p, at)| at - p)
        .collect();
    late.sort_by(f64::total_cmp);
    late
}

fn assert_not_held_up(what: &str, late: &[f64]) {
    assert!(
        late.len() >= 10,
        "{what}: too few runs on healthy instances to judge ({})",
        late.len()
    );
    let (p99, max) = (percentile(late, 0.99), late.last().copied().unwrap_or(0.0));
    eprintln!(
        "{what}: healthy instances' lateness over {} runs: p50 {:.3} s, p99 {p99:.3} s, max {max:.3} s",
        late.len(),
        percentile(late, 0.5)
    );
    assert!(
        p99 <= 1.0 && max <= 5.0,
        "{what}: runs on healthy instances were held up: p99 {p99:.3} s, max {max:.3} s"
    );
}

/// A job created through `on` must be visible on `other` within `secs`,
/// and a one-off created through `on` must run once within `secs`.
async fn visible_and_runs(
    c: &reqwest::Client,
    on: &str,
    other: &str,
    log: &Path,
    command: &str,
    secs: f64,
) -> String {
    let r = req(
        c,
        "POST",
        &format!("{on}/api/v1/job/"),
        Some(&json!({"name": "one-off during a fault", "command": command}).to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_string();
    let created = Instant::now();
    loop {
        let r = req(
            c,
            "GET",
            &format!("{other}/api/v1/job/{id}/?stats=false"),
            None,
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert!(
            created.elapsed().as_secs_f64() < secs,
            "a job created on a healthy instance was not visible on another healthy one within {secs} s ({})",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It runs; whoever holds its partition runs it, maybe the faulty one
    // (then it runs after takeover: within the lease plus a round).
    let deadline = Instant::now() + Duration::from_secs(12);
    while !executions(log).iter().any(|e| e.job == id) {
        assert!(Instant::now() < deadline, "the one-off {id} did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

/// The scenario on the database behind `upstream` (`host:port`); `flags`
/// builds an instance's `--jobdb…` flags from its proxy's port.
async fn faults_scenario(upstream: &str, flags: impl Fn(u16) -> Vec<String>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("runs.log");
    let mut nodes: Vec<Instance> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("n{i}"));
            std::fs::create_dir_all(&dir).expect("dir");
            Instance {
                server: None,
                proxy: FaultProxy::start(upstream).expect("proxy"),
                dir,
                name: format!("n{i}"),
            }
        })
        .collect();
    let start = |n: &Instance| -> Server {
        let mut args = flags(n.proxy.port());
        args.extend(["--node-name".into(), n.name.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start(&n.dir, &args)
    };
    for n in nodes.iter_mut() {
        n.server = Some(start(n));
    }
    let c = client();
    let command = oracle::logging_command(&log);
    let mut ids = Vec::new();
    for k in 0..15 {
        let body = json!({"name": format!("every second {k}"), "command": command, "schedule": starts_in(2, "R", "PT1S")});
        let r = req(
            &c,
            "POST",
            &format!("{}/api/v1/job/", nodes[k % 3].base()),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    // Settle: every instance holds a share.
    let deadline = Instant::now() + Duration::from_secs(20);
    let owners = loop {
        let p = partitions(&c, &nodes[0].base()).await;
        let total: usize = p.values().map(BTreeSet::len).sum();
        if p.len() == 3 && total == 64 && p.values().all(|s| !s.is_empty()) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut one_offs = Vec::new();

    // 1. n0 cut off from the database (stalled, nothing closed) for 8 s.
    // Meanwhile a job of n0's is deleted through n1, and a one-off is
    // created through n1 and must be seen on n2.
    let victim_job = ids
        .iter()
        .find(|id| owners["n0"].contains(&kala_store::partition_of(id)))
        .cloned();
    // First slow (every piece of traffic 250 ms late, so n0's
    // transactions hold their locks for seconds), then stalled: the
    // stall finds n0 in the middle of transactions that hold lease and
    // job rows.
    let from = now_s();
    nodes[0]
        .proxy
        .set(kala_testkit::Fault::Delay(Duration::from_millis(250)));
    eprintln!("fault: n0's database traffic delayed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[0].proxy.stall();
    eprintln!("fault: n0 partitioned from the database");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut deleted = None;
    if let Some(v) = &victim_job {
        let r = req(
            &c,
            "DELETE",
            &format!("{}/api/v1/job/{v}/", nodes[1].base()),
            None,
        )
        .await;
        assert_eq!(
            r.status,
            204,
            "a delete during a partition of another instance: {}",
            r.text()
        );
        deleted = Some((v.clone(), now_s()));
    }
    let once_cmd = command.clone();
    one_offs
        .push(visible_and_runs(&c, &nodes[1].base(), &nodes[2].base(), &log, &once_cmd, 1.5).await);
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(Duration::from_millis(1500))).await;
    let to = now_s();
    nodes[0].proxy.heal();
    eprintln!("fault: n0 healed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = healthy_lateness(&executions(&log), &owners, "n0", from, to);
    assert_not_held_up("partition of n0", &late);

    // 2. n1 paused (SIGSTOP) for 6 s.
    let owners = partitions(&c, &nodes[0].base()).await;
    let from = now_s();
    nodes[1]
        .server
        .as_ref()
        .expect("n1")
        .pause()
        .expect("SIGSTOP");
    eprintln!("fault: n1 paused");
    one_offs
        .push(visible_and_runs(&c, &nodes[2].base(), &nodes[0].base(), &log, &once_cmd, 1.5).await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to = now_s();
    nodes[1]
        .server
        .as_ref()
        .expect("n1")
        .resume()
        .expect("SIGCONT");
    eprintln!("fault: n1 resumed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = healthy_lateness(&executions(&log), &owners, "n1", from, to);
    assert_not_held_up("pause of n1", &late);

    // 3. n2 SIGKILLed, restarted 5 s later.
    if let Some(s) = nodes[2].server.take() {
        s.kill9();
    }
    eprintln!("fault: n2 killed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // 4. It comes back with its wall clock 1.5 s behind (libfaketime):
    // its leases look shorter to the others, its points run late, and
    // still nothing runs twice.
    let skew = kala_testkit::faketime_env(-1.5).expect("libfaketime (Debian's faketime)");
    let env: Vec<(&str, &str)> = skew.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut args = flags(nodes[2].proxy.port());
    args.extend(["--node-name".into(), "n2".into()]);
    nodes[2].server = Some(Server(
        kala_testkit::ServerProcess::start_with_env(Path::new(BIN), &nodes[2].dir, &args, &env)
            .expect("n2 with a skewed clock"),
    ));
    eprintln!("fault: n2 restarted with its clock 1.5 s behind");
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Stop: disable everything through n0, then let runs end.
    for id in &ids {
        if deleted.as_ref().is_some_and(|(d, _)| d == id) {
            continue;
        }
        let r = req(
            &c,
            "POST",
            &format!("{}/api/v1/job/disable/{id}/", nodes[0].base()),
            None,
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let stopped_at = now_s();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let runs = executions(&log);
    let api = nodes[0].server.as_ref().expect("n0").api();
    let mut jobs = Vec::new();
    for id in ids.iter().chain(&one_offs) {
        if deleted.as_ref().is_some_and(|(d, _)| d == id) {
            continue;
        }
        let records = api.runs(id, None).await.expect("runs");
        let job = api.get(id).await.expect("get").job;
        jobs.push(oracle::JobState {
            id: id.clone(),
            every_second: ids.contains(id),
            records: records.iter().map(oracle::Record::from).collect(),
            success_count: job.metadata.success_count,
            error_count: job.metadata.error_count,
            // n2's clock is 1.5 s behind: a point due just before the
            // disables is not due yet on n2 when they answer.
            check_points_until: stopped_at - 3.0,
        });
    }
    let mut stops: Vec<(String, f64, f64)> = ids
        .iter()
        .map(|id| (id.clone(), stopped_at, f64::INFINITY))
        .collect();
    if let Some((id, at)) = &deleted {
        stops.push((id.clone(), *at, f64::INFINITY));
    }
    let killed = std::collections::BTreeSet::from(["n2".to_string()]);
    let verdict = oracle::judge(
        &runs,
        &oracle::Facts {
            jobs: &jobs,
            one_offs: &one_offs,
            stops: &stops,
            stop_grace: 0.5,
            killed: &killed,
        },
    );
    eprintln!(
        "oracle: {} executions, {} points checked",
        verdict.executions, verdict.points_checked
    );
    assert!(verdict.passed(), "{verdict:#?}");
    for n in nodes.iter_mut() {
        if let Some(s) = n.server.take() {
            assert_eq!(s.stop(), Some(0), "{} stops cleanly", n.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cluster_under_partition_pause_and_kill() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let schema = unique("kala_faults_");
    let url = postgres_url();
    let (upstream, user, db) = parts(&url);
    faults_scenario(&upstream, |port| {
        vec![
            "--jobdb".into(),
            "postgres".into(),
            "--jobdb-address".into(),
            format!("postgres://{user}127.0.0.1:{port}/{db}"),
            "--jobdb-namespace".into(),
            schema.clone(),
        ]
    })
    .await;
    drop_pg_schema(&postgres_url(), &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_under_partition_pause_and_kill() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ns = unique("kala-faults-");
    let upstream = std::env::var("KALA_TEST_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into());
    faults_scenario(&upstream, |port| {
        vec![
            "--jobdb".into(),
            "redis".into(),
            "--jobdb-address".into(),
            format!("127.0.0.1:{port}"),
            "--jobdb-namespace".into(),
            ns.clone(),
        ]
    })
    .await;
}

/// One scenario at a time: each runs three servers that start processes
/// every second, and its lateness checks are about the cluster, not
/// about a machine running several at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cluster_under_partition_pause_and_kill() {
    use sqlx::Connection;
    let _alone = ONE_AT_A_TIME.lock().await;
    let db = unique("kala_faults_");
    let base = std::env::var("KALA_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let mut conn = sqlx::MySqlConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("MySQL/MariaDB at {base:?} is needed: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (upstream, user, _) = parts(&base);
    faults_scenario(&upstream, |port| {
        vec![
            "--jobdb".into(),
            "mariadb".into(),
            "--jobdb-address".into(),
            format!("mysql://{user}127.0.0.1:{port}/{db}"),
        ]
    })
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("drop database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_cluster_under_partition_pause_and_kill() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = kala_store_consul::test_server::ConsulUnderTest::start();
    let ns = unique("kala-faults-");
    faults_scenario(&server.address, |port| {
        vec![
            "--jobdb".into(),
            "consul".into(),
            "--jobdb-address".into(),
            format!("127.0.0.1:{port}"),
            "--jobdb-namespace".into(),
            ns.clone(),
        ]
    })
    .await;
}

/// `scheme://[user@]host:port/db` → (`host:port`, `user@` or empty, `db`):
/// the proxy stands between the instances and `host:port`.
fn parts(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, rest) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
    let user = if auth.is_empty() {
        String::new()
    } else {
        format!("{auth}@")
    };
    (hostport.to_string(), user, db.to_string())
}
