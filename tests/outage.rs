//! The database goes away under a running kala-server and comes back:
//! writes fail with 503 and a JSON error (never a 2xx for a write that was
//! not stored), no scheduled run starts while no instance can prove it
//! owns the job (the cluster's fencing, also for a single instance), kala
//! reconnects by itself, runs resume, and nothing acknowledged is lost
//! across a restart.
//!
//! * Redis: a real `redis-server` started by the test on a free loopback
//!   port with `appendonly yes, appendfsync always` (the machine's Redis
//!   keeps nothing on disk, so it cannot show durability), killed with
//!   SIGKILL and started again on the same files.
//! * Consul: a single server agent with a data directory, SIGKILLed and
//!   started again on it.
//! * PostgreSQL: the machine's own cluster, stopped with
//!   `pg_ctlcluster … stop -m immediate` (no clean shutdown) and started
//!   again; a guard restarts it even if the test fails.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn wait_port(port: u16, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() != up {
        assert!(
            Instant::now() < deadline,
            "port {port} did not become {}",
            if up { "open" } else { "closed" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The job's success count, read without touching the store.
async fn memory_count(c: &reqwest::Client, s: &Server, id: &str) -> u64 {
    let r = req(
        c,
        "GET",
        &s.url(&format!("/api/v1/job/{id}/?stats=false")),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["job"]["metadata"]["success_count"]
        .as_u64()
        .unwrap_or(0)
}

/// The outage scenario; `stop` and `start` take the database down and up.
async fn outage(args: &[&str], stop: &mut dyn FnMut(), start: &mut dyn FnMut()) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), args);
    let c = client();
    let every = create_every_second(&c, &s).await;
    let mut acknowledged = vec![every.clone()];
    for k in 0..5 {
        acknowledged.push(create(&c, &s, json!({"name": format!("before {k}"), "command": "true", "schedule": starts_in(3600, "R", "PT1H")})).await);
    }
    wait_for_successes(&c, &s, &every, 1).await;

    stop();
    // Writes fail with 503 and a JSON error naming the storage problem.
    for k in 0..3 {
        let body = json!({"name": format!("during {k}"), "command": "true", "schedule": starts_in(3600, "R", "PT1H")});
        let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
        assert_eq!(
            r.status,
            503,
            "a create while the database is down: {}",
            r.text()
        );
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap_or("")
                .contains("storage unavailable"),
            "{}",
            r.text()
        );
    }
    let r = req(
        &c,
        "POST",
        &s.url(&format!("/api/v1/job/disable/{every}/")),
        None,
    )
    .await;
    assert_eq!(r.status, 503, "disable while down: {}", r.text());
    let r = req(
        &c,
        "DELETE",
        &s.url(&format!("/api/v1/job/{}/", acknowledged[1])),
        None,
    )
    .await;
    assert_eq!(r.status, 503, "delete while down: {}", r.text());
    // Run history lives in the database: reading it gives 503 …
    let r = req(&c, "GET", &s.url("/api/v1/job/"), None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error"].is_string());
    // … but jobs without history are served from memory.
    let r = req(&c, "GET", &s.url("/api/v1/job/?stats=false"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["jobs"].as_object().map(|m| m.len()), Some(6));
    // On a shared store no instance can prove it owns a job while the
    // database is away: within the lease (3 s) a run may still finish;
    // after it, none starts.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let settled = memory_count(&c, &s, &every).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        memory_count(&c, &s, &every).await,
        settled,
        "no run starts while the database is unreachable"
    );

    start();
    // kala reconnects by itself: a create succeeds again within 30 s.
    let after = eventually(30, || async {
        let body =
            json!({"name": "after", "command": "true", "schedule": starts_in(3600, "R", "PT1H")});
        let r = req(&c, "POST", &s.url("/api/v1/job/"), Some(&body.to_string())).await;
        match r.status {
            201 => Some(r.json()["id"].as_str().map(str::to_string)),
            503 => None,
            other => panic!("after the database came back: {other} {}", r.text()),
        }
    })
    .await
    .expect("id");
    acknowledged.push(after);
    // A run after the outage stores the counters gathered in memory.
    let before_restart = memory_count(&c, &s, &every).await;
    eventually(20, || async {
        (memory_count(&c, &s, &every).await > before_restart).then_some(())
    })
    .await;
    assert_eq!(s.stop(), Some(0));

    let s = Server::start(dir.path(), args);
    let r = req(&c, "GET", &s.url("/api/v1/job/"), None).await;
    let jobs = r.json()["jobs"].clone();
    for id in &acknowledged {
        assert!(
            jobs.get(id).is_some(),
            "acknowledged job {id} survived: {jobs}"
        );
    }
    assert_eq!(
        jobs.as_object().map(|m| m.len()),
        Some(acknowledged.len()),
        "nothing that got a 503 was stored"
    );
    assert!(
        memory_count(&c, &s, &every).await > before_restart,
        "counters gathered during the outage were stored"
    );
    let r = req(&c, "DELETE", &s.url("/api/v1/job/all/"), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(s.stop(), Some(0));
}

struct RedisProcess {
    child: Option<Child>,
    port: u16,
}

impl RedisProcess {
    fn start(dir: &Path, port: u16) -> RedisProcess {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        wait_port(port, true);
        RedisProcess {
            child: Some(child),
            port,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false);
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_then_reconnects_and_loses_nothing() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let redis = std::sync::Arc::new(std::sync::Mutex::new(RedisProcess::start(
        data.path(),
        port,
    )));
    let address = format!("127.0.0.1:{port}");
    let (r1, r2) = (redis.clone(), redis.clone());
    let dir = data.path().to_path_buf();
    outage(
        &["--jobdb", "redis", "--jobdb-address", &address],
        &mut || r1.lock().expect("lock").kill(),
        &mut || *r2.lock().expect("lock") = RedisProcess::start(&dir, port),
    )
    .await;
}

fn pg_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .expect("a Debian PostgreSQL cluster under /etc/postgresql")
}

fn pg_ctl(action: &[&str]) {
    let status = Command::new("pg_ctlcluster")
        .arg("--skip-systemctl-redirect")
        .arg(pg_version())
        .arg("main")
        .args(action)
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action:?} failed");
}

/// Starts the machine's PostgreSQL again however the test ends.
struct PgGuard;

impl Drop for PgGuard {
    fn drop(&mut self) {
        if TcpStream::connect(("127.0.0.1", 5432)).is_err() {
            let _ = Command::new("pg_ctlcluster")
                .arg("--skip-systemctl-redirect")
                .arg(pg_version())
                .args(["main", "start"])
                .status();
            wait_port(5432, true);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_503_then_reconnects_and_loses_nothing() {
    let url = postgres_url();
    assert!(
        url.contains("127.0.0.1:5432"),
        "this test stops the local cluster; KALA_TEST_POSTGRES must point at it"
    );
    let schema = unique("kala_test_");
    let _guard = PgGuard;
    outage(
        &[
            "--jobdb",
            "postgres",
            "--jobdb-address",
            &url,
            "--jobdb-namespace",
            &schema,
        ],
        &mut || {
            pg_ctl(&["stop", "-m", "immediate"]);
            wait_port(5432, false);
        },
        &mut || {
            pg_ctl(&["start"]);
            wait_port(5432, true);
        },
    )
    .await;
    drop_pg_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_outage_gives_503_then_reconnects_and_loses_nothing() {
    let data = tempfile::tempdir().expect("tempdir");
    let consul = std::sync::Arc::new(std::sync::Mutex::new(
        kala_store_consul::test_server::ConsulUnderTest::start_persistent(data.path()),
    ));
    let address = consul.lock().expect("lock").address.clone();
    let (c1, c2) = (consul.clone(), consul.clone());
    outage(
        &["--jobdb", "consul", "--jobdb-address", &address],
        &mut || c1.lock().expect("lock").kill(),
        &mut || c2.lock().expect("lock").restart(),
    )
    .await;
}
