//! `run_on` across three real `kala-server` processes on one PostgreSQL
//! schema and one Redis namespace: n0 (`role=web`), n1 (`role=etl`) and
//! n2 (`role=etl`, `--role worker`). Every run appends its job, schedule
//! point and `KALA_NODE` to a file: the commands' own word on where each
//! point ran. A worker SIGKILLed during a dispatched run leaves an
//! `interrupted` record under its name.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start(dir: &Path, backend: &[String], node: &str, role_tag: &str, worker: bool) -> Server {
    let mut args: Vec<String> = backend.to_vec();
    args.extend([
        "--node-name".into(),
        node.into(),
        "--tag".into(),
        format!("role={role_tag}"),
        "--tag".into(),
        format!("node={node}"),
    ]);
    if worker {
        args.extend(["--role".into(), "worker".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(dir, &args)
}

/// (job id, point) → nodes, from the log the commands wrote.
fn placements(log: &Path) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        if let [id, point, node] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
            out.entry((id.to_string(), point.to_string()))
                .or_default()
                .push(node.to_string());
        }
    }
    out
}

async fn fleet(backend: &[String]) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("runs.log");
    let mut servers: Vec<Option<Server>> = Vec::new();
    for (i, (tag, worker)) in [("web", false), ("etl", false), ("etl", true)]
        .iter()
        .enumerate()
    {
        let d = tmp.path().join(format!("n{i}"));
        std::fs::create_dir_all(&d).expect("dir");
        servers.push(Some(start(&d, backend, &format!("n{i}"), tag, *worker)));
    }
    let c = client();
    let base = servers[0].as_ref().expect("n0").base.clone();
    // The instances see each other.
    eventually(15, || async {
        let r = req(&c, "GET", &format!("{base}/api/v1/cluster/"), None).await;
        let nodes = r.json()["nodes"].as_array().cloned().unwrap_or_default();
        (nodes.len() == 3).then_some(())
    })
    .await;
    let r = req(&c, "GET", &format!("{base}/api/v1/cluster/"), None).await;
    let n2 = r.json()["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "n2").cloned())
        .expect("n2 listed");
    assert_eq!(n2["role"], "worker", "{n2}");
    assert_eq!(n2["partitions"].as_array().map(Vec::len), Some(0), "{n2}");

    let command = format!(
        "sh -c 'echo \"$KALA_JOB_ID $KALA_SCHEDULED_AT $KALA_NODE\" >> {}'",
        log.display()
    );
    let mut ids = BTreeMap::new();
    for (name, run_on) in [
        ("one", json!({"tags": {"role": "etl"}})),
        // More single-instance jobs: their points together show the
        // spread (each point's instance is a hash of job and point).
        ("one-b", json!({"tags": {"role": "etl"}})),
        ("one-c", json!({"tags": {"role": "etl"}})),
        ("two", json!({"tags": {"role": "etl"}, "count": 2})),
        ("every", json!({"every": true})),
        ("gpu", json!({"tags": {"role": "gpu"}})),
    ] {
        let body = json!({"name": name, "command": command, "schedule": starts_in(2, "R", "PT1S"), "run_on": run_on});
        let r = req(
            &c,
            "POST",
            &format!("{base}/api/v1/job/"),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_str().expect("id").to_string();
        let job = get_job(&c, servers[0].as_ref().expect("n0"), &id).await;
        assert_eq!(job["run_on"], run_on, "run_on renders as given");
        ids.insert(name, id);
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    // A point being dispatched as the disable answers may run on some of
    // its instances and be skipped ("not started: disabled") on others:
    // only the points before are checked.
    let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::from_millis(1500);
    for id in ids.values() {
        action(&c, servers[0].as_ref().expect("n0"), "disable", id).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let placed = placements(&log);
    let mut points: BTreeMap<&str, usize> = BTreeMap::new();
    let mut one_nodes = BTreeSet::new();
    for ((id, point), nodes) in &placed {
        if point.parse::<jiff::Timestamp>().is_ok_and(|p| p >= cutoff) {
            continue;
        }
        let name = ids
            .iter()
            .find(|(_, v)| *v == id)
            .map(|(k, _)| *k)
            .expect("a job of ours");
        *points.entry(name).or_default() += 1;
        let mut sorted = nodes.clone();
        sorted.sort();
        match name {
            "one" | "one-b" | "one-c" => {
                assert_eq!(sorted.len(), 1, "one at {point}: {nodes:?}");
                assert!(
                    sorted[0] == "n1" || sorted[0] == "n2",
                    "one at {point}: {nodes:?}"
                );
                one_nodes.insert(sorted[0].clone());
            }
            "two" => assert_eq!(sorted, ["n1", "n2"], "two at {point}"),
            "every" => assert_eq!(sorted, ["n0", "n1", "n2"], "every at {point}"),
            other => panic!("{other} ran at {point} on {nodes:?}"),
        }
    }
    for name in ["one", "two", "every"] {
        assert!(
            points.get(name).copied().unwrap_or(0) >= 5,
            "{name}: {points:?}"
        );
    }
    // Each point's instance comes from a hash of the job and the point:
    // the three single-instance jobs' ~20 points all on one of two
    // instances would have odds of about 2^-19.
    let ones: usize = ["one", "one-b", "one-c"]
        .iter()
        .map(|n| points.get(n).copied().unwrap_or(0))
        .sum();
    assert_eq!(
        one_nodes.len(),
        2,
        "the {ones} points of the single-instance jobs spread over n1 and n2"
    );
    let api = servers[1].as_ref().expect("n1").api();
    let gpu = api.runs(&ids["gpu"], None).await.expect("runs");
    assert!(
        gpu.len() >= 5
            && gpu.iter().all(|r| r
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no live instance matches run_on {role: gpu}"))),
        "{gpu:?}"
    );
    let two = api.runs(&ids["two"], None).await.expect("runs");
    assert!(
        two.iter().any(|r| r.node.as_deref() == Some("n2")),
        "{two:?}"
    );

    // The worker is SIGKILLed during a run dispatched to it: the run is
    // recorded interrupted under its name.
    let slow = json!({"name": "slow", "command": "sleep 60", "run_on": {"tags": {"node": "n2"}}});
    let r = req(
        &c,
        "POST",
        &format!("{base}/api/v1/job/"),
        Some(&slow.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let slow_id = r.json()["id"].as_str().expect("id").to_string();
    let n2_api = servers[2].as_ref().expect("n2").api();
    eventually(10, || async {
        let m = n2_api.metrics().await.ok()?;
        m.lines()
            .any(|l| l.starts_with("kala_runs_running ") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    if let Some(s) = servers[2].take() {
        s.kill9();
    }
    let interrupted = eventually(30, || async {
        let runs = api.runs(&slow_id, None).await.ok()?;
        runs.into_iter()
            .find(|r| r.outcome == kala_job::Outcome::Interrupted)
    })
    .await;
    assert_eq!(interrupted.node.as_deref(), Some("n2"), "{interrupted:?}");

    for s in servers.iter_mut() {
        if let Some(s) = s.take() {
            assert_eq!(s.stop(), Some(0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_on_postgres_places_points_by_tags_with_a_worker() {
    let url = postgres_url();
    let schema = unique("kala_fleet_");
    let backend = [
        "--jobdb",
        "postgres",
        "--jobdb-address",
        &url,
        "--jobdb-namespace",
        &schema,
    ]
    .map(String::from);
    fleet(&backend).await;
    drop_pg_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_on_redis_places_points_by_tags_with_a_worker() {
    let ns = unique("kala-fleet-");
    let address = std::env::var("KALA_TEST_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into());
    let backend = [
        "--jobdb",
        "redis",
        "--jobdb-address",
        &address,
        "--jobdb-namespace",
        &ns,
    ]
    .map(String::from);
    fleet(&backend).await;
}

#[tokio::test]
async fn alone_run_on_must_match_and_roles_need_a_shared_database() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &["--tag", "role=etl"]);
    let c = client();
    let body = json!({"name": "x", "command": "true", "run_on": {"tags": {"role": "web"}}});
    let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("does not match this instance"),
        "{}",
        r.text()
    );
    let body =
        json!({"name": "x", "command": "true", "run_on": {"tags": {"role": "etl"}, "cont": 2}});
    let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("run_on.cont"), "{}", r.text());
    let body = json!({"name": "x", "command": "true", "schedule": starts_in(3600, "R1", "PT1S"), "run_on": {"tags": {"role": "etl"}}});
    let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.stop(), Some(0));
    let out = std::process::Command::new(BIN)
        .args(["serve", "--port", "0", "--no-persist", "--role", "worker"])
        .output()
        .expect("kala-server");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("needs a database shared with other instances"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
