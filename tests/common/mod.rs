//! Starts the real `kala-server` binary on a free loopback port with a
//! temporary data directory, and talks to it over HTTP.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kala-server");

/// A `kala-server` process (kala-testkit's, shared with kala-bench).
pub struct Server(pub kala_testkit::ServerProcess);

impl std::ops::Deref for Server {
    type Target = kala_testkit::ServerProcess;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Server {
    /// Starts `kala-server serve` on port 0 with `--bolt-path dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server(
            kala_testkit::ServerProcess::start(Path::new(BIN), dir, extra)
                .unwrap_or_else(|e| panic!("kala-server: {e}")),
        )
    }

    /// SIGTERM, then wait; returns the exit status code.
    pub fn stop(self) -> Option<i32> {
        self.0.stop().expect("stop kala-server")
    }

    pub fn kill9(self) {
        self.0.kill9();
    }

    /// A kala-client of this server.
    pub fn api(&self) -> kala_client::Client {
        kala_client::Client::new(&self.base).expect("kala-client")
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
}

pub async fn req(c: &reqwest::Client, method: &str, url: &str, body: Option<&str>) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = c.request(m, url);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// GET as every common HTTP client does it (Go's net/http, Python
/// requests, browsers): `Accept-Encoding: gzip`. The body must be gzip,
/// arrive whole and decode whole; `Resp::body` is the decoded bytes.
pub async fn get_gzip(c: &reqwest::Client, url: &str) -> Resp {
    use std::io::Read;
    let resp = c
        .get(url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} (gzip): {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {url} (gzip): the body was cut short: {e}"));
    let body = if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("GET {url} (gzip): not whole gzip: {e}"));
        out
    } else {
        raw.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A schedule starting `secs` from now.
pub fn starts_in(secs: i64, repeat: &str, interval: &str) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    format!("{repeat}/{t}/{interval}")
}

/// Creates a job from a hand-written body (through kala-client).
pub async fn create(_c: &reqwest::Client, s: &Server, body: Value) -> String {
    s.api()
        .create_json(&body)
        .await
        .unwrap_or_else(|e| panic!("create {body}: {e}"))
}

/// POST /api/v1/job/{start|enable|disable}/{id}/.
pub async fn action(c: &reqwest::Client, s: &Server, what: &str, id: &str) -> Resp {
    req(
        c,
        "POST",
        &s.url(&format!("/api/v1/job/{what}/{id}/")),
        None,
    )
    .await
}

pub async fn get_job(c: &reqwest::Client, s: &Server, id: &str) -> Value {
    let r = req(c, "GET", &s.url(&format!("/api/v1/job/{id}/")), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["job"].clone()
}

/// Creates a job that runs `true` every second, starting in a second.
pub async fn create_every_second(c: &reqwest::Client, s: &Server) -> String {
    let body = serde_json::json!({"name": "every second", "command": "true", "schedule": starts_in(1, "R", "PT1S")});
    create(c, s, body).await
}

/// Waits until the job's success count reaches `n`.
pub async fn wait_for_successes(_c: &reqwest::Client, s: &Server, id: &str, n: u64) {
    let api = s.api();
    eventually(20, || async {
        let j = api.get_without_stats(id).await.expect("get job");
        (j.job.metadata.success_count >= n).then_some(())
    })
    .await;
}

/// An hourly parent (first run in an hour) and a child that runs after it.
pub async fn create_parent_and_child(c: &reqwest::Client, s: &Server) -> (String, String) {
    let parent = create(
        c,
        s,
        serde_json::json!({"name": "parent", "command": "true", "schedule": starts_in(3600, "R", "PT1H")}),
    )
    .await;
    let child = create(
        c,
        s,
        serde_json::json!({"name": "child", "command": "true", "parent_jobs": [parent]}),
    )
    .await;
    (parent, child)
}

/// A name nobody else uses: `prefix` + a fresh UUID.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The PostgreSQL the backend tests use (`KALA_TEST_POSTGRES`).
pub fn postgres_url() -> String {
    std::env::var("KALA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Drops a test's PostgreSQL schema and everything in it.
pub async fn drop_pg_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .expect("drop schema");
}
