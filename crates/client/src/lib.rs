//! # kala-client
//!
//! An async client for the HTTP API of `kala-server` — and of Kala, whose
//! routes and shapes it shares — on reqwest with rustls.
//!
//! * Every route: jobs (create, get, list, page, delete, delete all, start,
//!   enable, disable), Kala's stats, kala's run history, app stats, the
//!   schedule preview, health, metrics and the OpenAPI document.
//! * The job model's own types: a job to create is a [`kala_job::Job`]
//!   (built with [`Job::new`](kala_job::Job::new) and its public fields),
//!   and a job read back is one too, with its counters and state.
//! * Errors are typed: [`Error::Api`] carries the status and the server's
//!   JSON message (`schedule: start … is in the past`) and request id.
//! * `--auth-token` ([`ClientBuilder::token`]), HTTPS with a private CA
//!   ([`ClientBuilder::root_certificate_pem`]), and the job list as a
//!   stream of pages ([`Client::jobs`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kala_client::Error> {
//! use futures_util::TryStreamExt;
//! use kala_client::{Client, Job};
//!
//! let kala = Client::builder("http://127.0.0.1:8000").token("s3cret").build()?;
//! let mut job = Job::new("nightly report", "/usr/local/bin/report --daily");
//! job.schedule = "R/2030-01-01T02:00:00Z/P1D".into();
//! job.retries = 2;
//! let id = kala.create(&job).await?;
//!
//! let view = kala.get(&id).await?;
//! println!("{} runs next at {:?}", view.job.name, view.job.next_run_at);
//!
//! // Every job, one page of 500 at a time.
//! let mut all = kala.jobs(500);
//! while let Some(view) = all.try_next().await? {
//!     println!("{} {}", view.job.id, view.job.name);
//! }
//! # Ok(()) }
//! ```

mod decode;
mod error;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::Stream;
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use error::Error;
pub use kala_job::{Job, JobType, Outcome, Overlap, RunRecord, Trigger};

/// A job as the server shows it: the job (definition, counters, state)
/// and, unless asked without, its stats.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub job: Job,
    /// Kala's stats of the job (`None`: it has not run, or asked without).
    pub stats: Option<Vec<JobStat>>,
}

/// One of Kala's job stats: an executed run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobStat {
    pub job_id: String,
    pub ran_at: Timestamp,
    pub number_of_retries: u64,
    pub success: bool,
    /// Nanoseconds.
    pub execution_duration: u64,
}

/// Kala's app-level stats. Times are `None` where Kala sends its zero time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AppStats {
    pub active_jobs: u64,
    pub disabled_jobs: u64,
    pub jobs: u64,
    pub error_count: u64,
    pub success_count: u64,
    #[serde(deserialize_with = "decode::kala_time")]
    pub next_run_at: Option<Timestamp>,
    #[serde(deserialize_with = "decode::kala_time")]
    pub last_attempted_run: Option<Timestamp>,
    #[serde(deserialize_with = "decode::kala_time")]
    pub created: Option<Timestamp>,
}

/// The next runs of a schedule ([`Client::preview`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Preview {
    /// The schedule as the server parsed it.
    pub schedule: String,
    /// In words.
    pub description: String,
    pub next: Vec<Timestamp>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: String,
    pub jobs: u64,
    pub store: String,
    /// When the server started serving (kala; absent from other servers).
    #[serde(default)]
    pub started: Option<Timestamp>,
    /// Why the store cannot write, when unhealthy.
    #[serde(default)]
    pub problem: Option<String>,
}

/// One page of the job list ([`Client::list_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// In id order.
    pub jobs: Vec<JobView>,
    /// Pass it to get the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    roots: Vec<Vec<u8>>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
}

impl ClientBuilder {
    /// The bearer token of a server started with `--auth-token`.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// Trusts this PEM certificate (e.g. the server's own, or a private
    /// CA) for `https://` besides the platform's roots.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.roots.push(pem.into());
        self
    }

    /// Bounds every request (default: none, because `start` answers when
    /// the run is over, as in Kala).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Bounds connecting (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        // reqwest is built without a default TLS provider; install aws-lc-rs once (rustls's own default).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let base = self.base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "{base:?}: the address must start with http:// or https://"
            )));
        }
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("kala-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout);
        if let Some(t) = self.timeout {
            http = http.timeout(t);
        }
        for pem in &self.roots {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Config(format!("root certificate: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            token: self.token,
        })
    }
}

/// A client of one server. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Percent-encodes a path segment (a job id may hold any character).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:8000`), with
    /// no token.
    pub fn new(base: impl Into<String>) -> Result<Client, Error> {
        Client::builder(base).build()
    }

    pub fn builder(base: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base.into(),
            token: None,
            roots: Vec::new(),
            timeout: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The server's address, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(Error::from_response(resp).await)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Error> {
        let resp = self.send(method, path, body).await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("{path}: {e}")))
    }

    async fn no_content(&self, method: Method, path: &str) -> Result<(), Error> {
        self.send(method, path, None).await.map(|_| ())
    }

    /// Creates `job` from its definition (its id, counters and state are
    /// the server's to set); returns the new id.
    pub async fn create(&self, job: &Job) -> Result<String, Error> {
        self.create_json(&decode::definition(job)).await
    }

    /// Creates a job from a JSON body as written by hand (Kala's keys, any
    /// spelling Kala accepts); returns the new id.
    pub async fn create_json(&self, body: &serde_json::Value) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let c: Created = self.json(Method::POST, "/api/v1/job/", Some(body)).await?;
        Ok(c.id)
    }

    /// The job with its stats.
    pub async fn get(&self, id: &str) -> Result<JobView, Error> {
        self.get_job(id, true).await
    }

    /// The job without stats, answered from the server's memory (works
    /// while its database is down).
    pub async fn get_without_stats(&self, id: &str) -> Result<JobView, Error> {
        self.get_job(id, false).await
    }

    async fn get_job(&self, id: &str, stats: bool) -> Result<JobView, Error> {
        let q = if stats { "" } else { "?stats=false" };
        let v: serde_json::Value = self
            .json(
                Method::GET,
                &format!("/api/v1/job/{}/{q}", segment(id)),
                None,
            )
            .await?;
        decode::view(v.get("job").cloned().unwrap_or_default())
    }

    /// Every job by id, with stats (Kala's list, in one answer).
    pub async fn list(&self) -> Result<BTreeMap<String, JobView>, Error> {
        let v: serde_json::Value = self.json(Method::GET, "/api/v1/job/", None).await?;
        decode::job_map(v).map(|jobs| jobs.into_iter().map(|j| (j.job.id.clone(), j)).collect())
    }

    /// One page of at most `limit` jobs (1…10,000) after `cursor`, without
    /// stats.
    pub async fn list_page(&self, cursor: Option<&str>, limit: usize) -> Result<Page, Error> {
        let mut path = format!("/api/v1/job/?stats=false&limit={limit}");
        if let Some(c) = cursor {
            path.push_str("&cursor=");
            path.push_str(&segment(c));
        }
        let v: serde_json::Value = self.json(Method::GET, &path, None).await?;
        let next_cursor = v
            .get("next_cursor")
            .and_then(|c| c.as_str())
            .map(str::to_string);
        Ok(Page {
            jobs: decode::job_map(v)?,
            next_cursor,
        })
    }

    /// Every job, fetched `page_size` at a time as the stream is read.
    pub fn jobs(&self, page_size: usize) -> impl Stream<Item = Result<JobView, Error>> + '_ {
        use futures_util::{StreamExt, TryStreamExt};
        // State: the cursor of the next page; `None` once the last is read.
        let pages =
            futures_util::stream::try_unfold(Some(None::<String>), move |state| async move {
                let Some(cursor) = state else {
                    return Ok(None);
                };
                let page = self.list_page(cursor.as_deref(), page_size).await?;
                let next = page.next_cursor.map(Some);
                Ok::<_, Error>(Some((page.jobs, next)))
            });
        pages
            .map_ok(|jobs| futures_util::stream::iter(jobs.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// Deletes the job, its run history and its children.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        self.no_content(Method::DELETE, &format!("/api/v1/job/{}/", segment(id)))
            .await
    }

    /// Deletes every job and all run history.
    pub async fn delete_all(&self) -> Result<(), Error> {
        self.no_content(Method::DELETE, "/api/v1/job/all/").await
    }

    /// Runs the job now; returns when the run (with its retries and
    /// chain) is over, as Kala does.
    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.no_content(Method::POST, &format!("/api/v1/job/start/{}/", segment(id)))
            .await
    }

    pub async fn enable(&self, id: &str) -> Result<(), Error> {
        self.no_content(
            Method::POST,
            &format!("/api/v1/job/enable/{}/", segment(id)),
        )
        .await
    }

    pub async fn disable(&self, id: &str) -> Result<(), Error> {
        self.no_content(
            Method::POST,
            &format!("/api/v1/job/disable/{}/", segment(id)),
        )
        .await
    }

    /// Kala's stats of the job, oldest first (empty when it has not run).
    pub async fn stats(&self, id: &str) -> Result<Vec<JobStat>, Error> {
        #[derive(Deserialize)]
        struct Stats {
            job_stats: Option<Vec<JobStat>>,
        }
        let s: Stats = self
            .json(
                Method::GET,
                &format!("/api/v1/job/stats/{}/", segment(id)),
                None,
            )
            .await?;
        Ok(s.job_stats.unwrap_or_default())
    }

    /// The job's run records, oldest first, with outcome, trigger, exit
    /// code, error and output tail (kala's extension); `limit`: the newest
    /// only.
    pub async fn runs(&self, id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>, Error> {
        #[derive(Deserialize)]
        struct Runs {
            runs: Vec<RunRecord>,
        }
        let mut path = format!("/api/v1/job/{}/runs/", segment(id));
        if let Some(l) = limit {
            path.push_str(&format!("?limit={l}"));
        }
        let r: Runs = self.json(Method::GET, &path, None).await?;
        Ok(r.runs)
    }

    /// Kala's app-level stats.
    pub async fn app_stats(&self) -> Result<AppStats, Error> {
        #[derive(Deserialize)]
        struct Wrapped {
            #[serde(rename = "Stats")]
            stats: AppStats,
        }
        let w: Wrapped = self.json(Method::GET, "/api/v1/stats/", None).await?;
        Ok(w.stats)
    }

    /// The next `count` runs of `schedule` (in `time_zone` if not empty),
    /// without creating a job (kala's extension).
    pub async fn preview(
        &self,
        schedule: &str,
        time_zone: &str,
        count: usize,
    ) -> Result<Preview, Error> {
        let body =
            serde_json::json!({"schedule": schedule, "time_zone": time_zone, "count": count});
        self.json(Method::POST, "/api/v1/schedule/preview/", Some(&body))
            .await
    }

    /// `GET /healthz`. An unhealthy server answers 503 with the same body:
    /// that is returned as `Ok` with `status: "unhealthy"`.
    pub async fn health(&self) -> Result<Health, Error> {
        let mut req = self.http.get(format!("{}/healthz", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if !(status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE) {
            return Err(Error::from_response(resp).await);
        }
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("/healthz: {e}")))
    }

    /// The Prometheus metrics, as text.
    pub async fn metrics(&self) -> Result<String, Error> {
        Ok(self
            .send(Method::GET, "/metrics", None)
            .await?
            .text()
            .await?)
    }

    /// The server's OpenAPI 3.1 document.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.json(Method::GET, "/api/v1/openapi.json", None).await
    }
}
