//! `kala-server serve --jobdb=…` on each remote backend, as a process:
//! jobs created over HTTP run, the server restarts, and the jobs and their
//! history are still there. Each test keeps its data in its own namespace
//! (Redis key prefix, PostgreSQL schema, MySQL database, MongoDB database)
//! and removes it afterwards. A database that cannot be reached fails the
//! test.

mod common;

use common::*;
use serde_json::json;
use sqlx::Connection;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Creates a repeating and a one-off job, waits for runs, restarts the
/// server and checks that jobs, counters and history survived. Leaves the
/// namespace empty.
async fn restart_keeps_jobs_and_history(args: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), args);
    let c = client();
    let every = create_every_second(&c, &s).await;
    let once = create(&c, &s, json!({"name": "once", "command": "true"})).await;
    wait_for_successes(&c, &s, &every, 2).await;
    read_your_writes(&c, &s, &every).await;
    eventually(10, || async {
        (get_job(&c, &s, &once).await["is_done"] == true).then_some(())
    })
    .await;
    assert_eq!(s.stop(), Some(0), "SIGTERM exits 0");

    let s = Server::start(dir.path(), args);
    let j = get_job(&c, &s, &every).await;
    let ran = j["metadata"]["success_count"].as_u64().expect("count");
    assert!(ran >= 2, "counters survive: {j}");
    let runs = req(
        &c,
        "GET",
        &s.url(&format!("/api/v1/job/{every}/runs/")),
        None,
    )
    .await;
    assert_eq!(runs.status, 200);
    let runs = runs.json();
    let runs = runs["runs"].as_array().expect("runs array");
    assert!(runs.len() as u64 >= ran, "history survives: {runs:?}");
    let o = get_job(&c, &s, &once).await;
    assert_eq!(o["metadata"]["success_count"], 1, "the one-off survives");
    assert_eq!(o["is_done"], true);
    // It keeps running after the restart.
    eventually(20, || async {
        let j = get_job(&c, &s, &every).await;
        (j["metadata"]["success_count"].as_u64() > Some(ran)).then_some(())
    })
    .await;
    let all = req(&c, "DELETE", &s.url("/api/v1/job/all/"), None).await;
    assert_eq!(all.status, 204, "{}", all.text());
    assert_eq!(s.stop(), Some(0));
}

/// Read-your-writes: each disable and enable, once answered, is what the
/// next GET of the same instance shows (with stats, read from the store,
/// and without, from memory), while the job runs every second and the
/// instance's change follower reads its own changes back.
async fn read_your_writes(c: &reqwest::Client, s: &Server, id: &str) {
    for round in 0..25 {
        for (what, disabled) in [("disable", true), ("enable", false)] {
            let r = action(c, s, what, id).await;
            assert_eq!(r.status, 204, "{what}: {}", r.text());
            for path in [
                format!("/api/v1/job/{id}/"),
                format!("/api/v1/job/{id}/?stats=false"),
            ] {
                let r = req(c, "GET", &s.url(&path), None).await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(
                    r.json()["job"]["disabled"],
                    disabled,
                    "round {round}: GET {path} right after the {what} answered"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_survives_a_restart() {
    let ns = unique("kala-test-");
    let address = env_or("KALA_TEST_REDIS", "127.0.0.1:6379");
    restart_keeps_jobs_and_history(&[
        "--jobdb",
        "redis",
        "--jobdb-address",
        &address,
        "--jobdb-namespace",
        &ns,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_survives_a_restart() {
    let schema = unique("kala_test_");
    let url = postgres_url();
    restart_keeps_jobs_and_history(&[
        "--jobdb",
        "postgres",
        "--jobdb-address",
        &url,
        "--jobdb-namespace",
        &schema,
    ])
    .await;
    drop_pg_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_backend_survives_a_restart() {
    let db = unique("kala_test_");
    let base = env_or("KALA_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test");
    let mut conn = sqlx::MySqlConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("MySQL/MariaDB at {base:?} is needed: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    // Kala's Go-driver address form, with the user in its own flag.
    let host = base
        .trim_start_matches("mysql://")
        .split_once('@')
        .map_or("127.0.0.1:3306", |(_, rest)| {
            rest.split('/').next().unwrap_or("127.0.0.1:3306")
        })
        .to_string();
    let address = format!("tcp({host})/{db}");
    restart_keeps_jobs_and_history(&[
        "--jobdb",
        "mariadb",
        "--jobdb-address",
        &address,
        "--jobdb-username",
        "root",
    ])
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("drop database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_backend_survives_a_restart() {
    let server = kala_store_mongo::test_server::MongoUnderTest::start();
    let db = unique("kala_test_");
    restart_keeps_jobs_and_history(&[
        "--jobdb",
        "mongo",
        "--jobdb-address",
        &server.address,
        "--jobdb-namespace",
        &db,
    ])
    .await;
    let client = mongodb::Client::with_uri_str(&server.address)
        .await
        .expect("client");
    client.database(&db).drop().await.expect("drop database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_backend_survives_a_restart() {
    let server = kala_store_consul::test_server::ConsulUnderTest::start();
    restart_keeps_jobs_and_history(&[
        "--jobdb",
        "consul",
        "--jobdb-address",
        &server.address,
        "--jobdb-namespace",
        &unique("kala_test_"),
    ])
    .await;
}

#[test]
fn bad_backend_addresses_fail_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, expect) in [
        (
            vec!["--jobdb", "postgres"],
            "--jobdb-address is required for postgres",
        ),
        (
            vec!["--jobdb", "mysql", "--jobdb-address", "tcp(h:3306"],
            "missing ')'",
        ),
        (
            vec!["--jobdb", "mongo", "--jobdb-address", "mongodb+srv://x"],
            "mongodb+srv",
        ),
        (
            vec!["--jobdb", "redis", "--jobdb-address", "127.0.0.1:1"],
            "--jobdb=redis",
        ),
        (
            vec!["--jobdb", "consul", "--jobdb-address", "127.0.0.1:1"],
            "--jobdb=consul",
        ),
        (
            vec!["--jobdb", "consul", "--jobdb-address", "consul://x"],
            "expected host:port",
        ),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["serve", "--port", "0", "--bolt-path"])
            .arg(dir.path())
            .args(&args)
            .output()
            .expect("run kala-server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
