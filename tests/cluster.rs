//! Three `kala-server` processes on one PostgreSQL schema (and on one
//! MariaDB database, one Redis namespace, one Consul agent, one MongoDB
//! replica set) form one
//! scheduler: jobs created through any instance, an instance SIGKILLed
//! and restarted, jobs disabled and deleted through other instances; the
//! commands' own side effects (each run appends `KALA_JOB_ID`,
//! `KALA_SCHEDULED_AT`, `KALA_NODE` and the time to a file) show that no
//! point ran twice, none was lost without a record, nothing ran after its
//! delete or disable (beyond the 1 s the contract allows), and the
//! counters equal the executions.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

fn start(dir: &Path, backend: &[String], node: &str) -> Server {
    let mut args: Vec<&str> = backend.iter().map(String::as_str).collect();
    let tag = format!("node={node}");
    args.extend([
        "--node-name",
        node,
        "--tag",
        &tag,
        "--tag",
        "role=scheduler",
    ]);
    Server::start(dir, &args)
}

/// (job id, point, node, run time in s) per line of the log.
fn executions(log: &Path) -> Vec<(String, String, String, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [id, point, node, at] => Some((
                    id.to_string(),
                    point.to_string(),
                    node.to_string(),
                    at.parse().ok()?,
                )),
                [id, node, at] => Some((
                    id.to_string(),
                    String::new(),
                    node.to_string(),
                    at.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

fn now_s() -> f64 {
    jiff::Timestamp::now().as_nanosecond() as f64 / 1e9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_run_every_point_exactly_once() {
    let url = postgres_url();
    let schema = unique("kala_cluster_");
    let backend = [
        "--jobdb",
        "postgres",
        "--jobdb-address",
        &url,
        "--jobdb-namespace",
        &schema,
    ]
    .map(String::from);
    three_instances(&backend).await;
    drop_pg_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_mariadb_run_every_point_exactly_once() {
    use sqlx::Connection;
    let db = unique("kala_cluster_");
    let base = std::env::var("KALA_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let mut conn = sqlx::MySqlConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("MySQL/MariaDB at {base:?} is needed: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let address = format!(
        "{}/{db}",
        base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b)
    );
    let backend = ["--jobdb", "mariadb", "--jobdb-address", &address].map(String::from);
    three_instances(&backend).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("drop database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis_run_every_point_exactly_once() {
    let ns = unique("kala-cluster-");
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
    three_instances(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_consul_run_every_point_exactly_once() {
    let server = kala_store_consul::test_server::ConsulUnderTest::start();
    let ns = unique("kala-cluster-");
    let backend = [
        "--jobdb",
        "consul",
        "--jobdb-address",
        &server.address,
        "--jobdb-namespace",
        &ns,
    ]
    .map(String::from);
    three_instances(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_mongo_run_every_point_exactly_once() {
    let server = kala_store_mongo::test_server::MongoUnderTest::start();
    let db = unique("kala_cluster_");
    let backend = [
        "--jobdb",
        "mongo",
        "--jobdb-address",
        &server.address,
        "--jobdb-namespace",
        &db,
    ]
    .map(String::from);
    three_instances(&backend).await;
}

/// One scenario at a time: each has three servers starting processes
/// every second, and its timing checks (visible within a second, nothing
/// after a delete) are about the cluster, not about a machine running four
/// clusters at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The scenario, on the backend `backend` names (`--jobdb …` flags).
async fn three_instances(backend: &[String]) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("runs.log");
    let dirs: Vec<_> = (0..3)
        .map(|i| {
            let d = tmp.path().join(format!("n{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            d
        })
        .collect();
    // Started at the same moment, on a database none of them set up yet.
    let mut servers: Vec<Option<Server>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let dir = &dirs[i];
                scope.spawn(move || start(dir, backend, &format!("n{i}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| Some(h.join().expect("a server started")))
            .collect()
    });
    let c = client();
    let srv = |servers: &Vec<Option<Server>>, i: usize| -> String {
        servers[i].as_ref().expect("running").base.clone()
    };
    let command = format!(
        "sh -c 'echo \"$KALA_JOB_ID $KALA_SCHEDULED_AT $KALA_NODE $(date +%s.%N)\" >> {}'",
        log.display()
    );
    let once_command = format!(
        "sh -c 'echo \"$KALA_JOB_ID $KALA_NODE $(date +%s.%N)\" >> {}'",
        log.display()
    );

    // Jobs every second through every instance in turn.
    let mut ids = Vec::new();
    for k in 0..12 {
        let base = srv(&servers, k % 3);
        let body = json!({"name": format!("every second {k}"), "command": command, "schedule": starts_in(2, "R", "PT1S")});
        let r = req(
            &c,
            "POST",
            &format!("{base}/api/v1/job/"),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    // One-off jobs through every instance: each runs once in the cluster.
    let mut once = Vec::new();
    for k in 0..6 {
        let base = srv(&servers, k % 3);
        let body = json!({"name": format!("once {k}"), "command": once_command});
        let r = req(
            &c,
            "POST",
            &format!("{base}/api/v1/job/"),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        once.push(r.json()["id"].as_str().expect("id").to_string());
    }
    // Every instance sees every job within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..3 {
        let r = req(
            &c,
            "GET",
            &format!("{}/api/v1/job/?stats=false", srv(&servers, i)),
            None,
        )
        .await;
        assert_eq!(
            r.json()["jobs"].as_object().map(|m| m.len()),
            Some(18),
            "n{i}: {}",
            r.text()
        );
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let r = req(
        &c,
        "GET",
        &format!("{}/api/v1/cluster/", srv(&servers, 0)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cluster = r.json();
    let nodes = cluster["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 3, "{cluster}");
    let held: usize = nodes
        .iter()
        .map(|n| n["partitions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(held, 64, "every partition held once: {cluster}");
    assert!(
        nodes.iter().all(
            |n| n["alive"] == true && n["partitions"].as_array().is_some_and(|p| !p.is_empty())
        ),
        "each instance holds a share: {cluster}"
    );
    // Each instance's tags, as it declared them, through the database.
    for n in &nodes {
        assert_eq!(
            n["tags"],
            json!({"node": n["name"], "role": "scheduler"}),
            "{cluster}"
        );
    }

    // Two rounds: an instance chosen at random is SIGKILLed (in the first,
    // with a long manual run in flight on it: it runs on the instance
    // asked, and must be recorded as interrupted, once, never run again),
    // its jobs are taken over, and it comes back.
    let seed = jiff::Timestamp::now().subsec_nanosecond().unsigned_abs() as usize;
    let victims = [seed % 3, (seed / 3) % 3];
    eprintln!(
        "cluster scenario: SIGKILL n{} then n{}",
        victims[0], victims[1]
    );
    let mut long = String::new();
    for (round, &v) in victims.iter().enumerate() {
        if round == 0 {
            let body = json!({"name": "long", "command": "sleep 20", "schedule": starts_in(3600, "R", "PT1H")});
            let r = req(
                &c,
                "POST",
                &format!("{}/api/v1/job/", srv(&servers, v)),
                Some(&body.to_string()),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.text());
            long = r.json()["id"].as_str().expect("id").to_string();
            let start_url = format!("{}/api/v1/job/start/{long}/", srv(&servers, v));
            let starter = c.clone();
            tokio::spawn(async move {
                let _ = starter.post(start_url).send().await;
            });
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        if let Some(s) = servers[v].take() {
            s.kill9();
        }
        tokio::time::sleep(Duration::from_secs(7)).await;
        servers[v] = Some(start(&dirs[v], backend, &format!("n{v}")));
        tokio::time::sleep(Duration::from_secs(4)).await;
    }

    // A job that runs three times (R2: points 0, 1, 2) and is never
    // changed afterwards: every
    // instance's list must show its three runs, also the instances that
    // did not run it (their memory never heard of the runs).
    let body =
        json!({"name": "three times", "command": "true", "schedule": starts_in(1, "R2", "PT1S")});
    let r = req(
        &c,
        "POST",
        &format!("{}/api/v1/job/", srv(&servers, 0)),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let three = r.json()["id"].as_str().expect("id").to_string();
    // Read-your-writes across instances: a disable through one instance
    // and an enable through another right after it answered, then a GET
    // through the third (and the one that enabled) shows it enabled.
    let body = json!({"name": "flip", "command": "true", "schedule": starts_in(3600, "R", "PT1H")});
    let r = req(
        &c,
        "POST",
        &format!("{}/api/v1/job/", srv(&servers, 0)),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let flip = r.json()["id"].as_str().expect("id").to_string();
    // Known everywhere first (a change reaches the other instances in
    // ~10 ms with PostgreSQL's NOTIFY, within the 0.5 s poll elsewhere).
    for i in 0..3 {
        eventually(5, || {
            let (c, url) = (
                c.clone(),
                format!("{}/api/v1/job/{flip}/", srv(&servers, i)),
            );
            async move { (req(&c, "GET", &url, None).await.status == 200).then_some(()) }
        })
        .await;
    }
    for round in 0..10 {
        let (a, b, g) = (round % 3, (round + 1) % 3, (round + 2) % 3);
        for (what, on, disabled) in [("disable", a, true), ("enable", b, false)] {
            let r = req(
                &c,
                "POST",
                &format!("{}/api/v1/job/{what}/{flip}/", srv(&servers, on)),
                None,
            )
            .await;
            assert_eq!(r.status, 204, "{what} through n{on}: {}", r.text());
            for i in [on, g] {
                let r = req(
                    &c,
                    "GET",
                    &format!("{}/api/v1/job/{flip}/", srv(&servers, i)),
                    None,
                )
                .await;
                assert_eq!(
                    r.json()["job"]["disabled"],
                    disabled,
                    "round {round}: GET through n{i} right after the {what} through n{on} answered"
                );
            }
        }
    }
    // Disable one job through n2 and delete one through n0.
    let r = req(
        &c,
        "POST",
        &format!("{}/api/v1/job/disable/{}/", srv(&servers, 2), ids[0]),
        None,
    )
    .await;
    assert!(r.status < 300, "{}", r.text());
    let disabled_at = now_s();
    let r = req(
        &c,
        "DELETE",
        &format!("{}/api/v1/job/{}/", srv(&servers, 0), ids[1]),
        None,
    )
    .await;
    assert!(r.status < 300, "{}", r.text());
    let deleted_at = now_s();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..3 {
        let r = req(
            &c,
            "GET",
            &format!("{}/api/v1/job/", srv(&servers, i)),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let n = r.json()["jobs"][&three]["metadata"]["success_count"].as_u64();
        assert_eq!(
            n,
            Some(3),
            "n{i}'s list shows the runs of a job another instance may have run"
        );
    }
    // Stop the rest through n1 and let the last runs finish.
    for id in &ids[2..] {
        let r = req(
            &c,
            "POST",
            &format!("{}/api/v1/job/disable/{id}/", srv(&servers, 1)),
            None,
        )
        .await;
        assert!(r.status < 300, "{}", r.text());
    }
    let stopped_at = now_s();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let runs = executions(&log);
    // One-offs: exactly once each.
    for id in &once {
        let n = runs.iter().filter(|r| &r.0 == id).count();
        assert_eq!(n, 1, "one-off {id} ran {n} times: {runs:?}");
    }
    // No point twice.
    let mut seen: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (id, point, node, _) in runs.iter().filter(|r| !r.1.is_empty()) {
        seen.entry((id.clone(), point.clone()))
            .or_default()
            .push(node.clone());
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| n.len() > 1).collect();
    assert!(twice.is_empty(), "points run more than once: {twice:?}");
    let nodes_used: BTreeSet<&str> = runs.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        nodes_used.len(),
        3,
        "every instance ran jobs: {nodes_used:?}"
    );
    // Nothing after its delete or disable (1 s to take effect, plus the
    // moment a command takes to start).
    for (id, until) in [(&ids[0], disabled_at), (&ids[1], deleted_at)] {
        let late: Vec<_> = runs
            .iter()
            .filter(|r| &r.0 == id && r.3 > until + 1.5)
            .collect();
        assert!(
            late.is_empty(),
            "{id} ran after it was disabled/deleted at {until}: {late:?}"
        );
    }
    // None lost: every point from the first to the last one before the
    // job was stopped ran or has a skipped/interrupted record; the
    // counters equal the executions.
    let api = servers[0].as_ref().expect("n0").api();
    for (k, id) in ids.iter().enumerate() {
        if k == 1 {
            continue; // deleted with its history
        }
        let mine: BTreeMap<String, usize> = seen
            .iter()
            .filter(|((j, _), _)| j == id)
            .map(|((_, p), n)| (p.clone(), n.len()))
            .collect();
        let records = api.runs(id, None).await.expect("runs");
        let recorded: BTreeSet<String> = records
            .iter()
            .filter_map(|r| r.scheduled_at.map(|p| p.to_string()))
            .collect();
        let first: jiff::Timestamp = mine.keys().next().expect("ran").parse().expect("point");
        let until = if k == 0 { disabled_at } else { stopped_at } - 1.0;
        let mut p = first;
        while (p.as_nanosecond() as f64 / 1e9) < until {
            let s = p.to_string();
            assert!(
                mine.contains_key(&s) || recorded.contains(&s),
                "job {k} point {s} neither ran nor was recorded (ran: {:?})",
                mine.keys().collect::<Vec<_>>()
            );
            p += jiff::SignedDuration::from_secs(1);
        }
        let job = api.get(id).await.expect("get").job;
        let executed = mine.len() as u64;
        let m = &job.metadata;
        let interrupted = records
            .iter()
            .filter(|r| r.outcome == kala_job::Outcome::Interrupted)
            .count() as u64;
        assert!(
            m.success_count <= executed && executed <= m.success_count + interrupted,
            "job {k}: success_count {} vs {executed} executions ({interrupted} interrupted)",
            m.success_count
        );
    }
    let long_runs = api.runs(&long, None).await.expect("runs");
    assert_eq!(
        long_runs.len(),
        1,
        "the killed run is recorded once: {long_runs:?}"
    );
    assert_eq!(
        long_runs[0].outcome,
        kala_job::Outcome::Interrupted,
        "{long_runs:?}"
    );
    // Every instance's list (with stats) shows the same counters.
    let mut lists = Vec::new();
    for i in 0..3 {
        let r = req(
            &c,
            "GET",
            &format!("{}/api/v1/job/", srv(&servers, i)),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let counts: BTreeMap<String, u64> = r.json()["jobs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(id, j)| {
                        (
                            id.clone(),
                            j["metadata"]["success_count"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        lists.push(counts);
    }
    assert!(
        lists.windows(2).all(|w| w[0] == w[1]),
        "lists differ between instances: {lists:?}"
    );
    for s in servers.into_iter().flatten() {
        assert_eq!(s.stop(), Some(0));
    }
}
