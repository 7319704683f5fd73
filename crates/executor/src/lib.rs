//! # kala-executor
//!
//! Runs one attempt of a job and reports what happened. It knows nothing
//! about schedules, retries or storage (that is the engine's job).
//!
//! * Local jobs (type 0): the command is split shell-style (`shell-words`:
//!   quotes survive, `bash -c 'exit 3'` is three words) and run directly,
//!   without a shell, like Kala. `$NAME`/`${NAME}` outside single quotes
//!   are replaced from kala's environment (inside single quotes they stay
//!   literal — Kala expands them there too, a bug). Backticks are not run.
//!   Stdout and stderr share one pipe (interleaving kept); the last
//!   [`OUTPUT_TAIL`] bytes are kept. With a timeout, the whole process
//!   group is killed.
//! * Remote jobs (type 1): an HTTP request; success is an expected status.
//! * In-process jobs: an async handler registered under the job's command.
//! * Publish jobs (type 3): a message to a named broker through the
//!   [`Publisher`] the embedder installs ([`Executor::set_publisher`]);
//!   success is the broker's confirmation.

mod command;
mod context;
pub mod publish;
pub mod template;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kala_job::{Job, JobType};

/// How much output is kept per attempt.
pub const OUTPUT_TAIL: usize = 4096;

/// What one attempt did.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub success: bool,
    pub exit_code: Option<i32>,
    /// Why it failed (Kala's wording where Kala has one).
    pub error: Option<String>,
    /// The tail of the output (local) or response body (remote).
    pub output: String,
    pub duration: Duration,
}

impl Attempt {
    /// An attempt that failed with `error` before anything ran.
    pub fn failed(error: impl Into<String>, started: Instant) -> Attempt {
        Attempt {
            success: false,
            exit_code: None,
            error: Some(error.into()),
            output: String::new(),
            duration: started.elapsed(),
        }
    }
}

/// The result an in-process handler returns: `Err` is a failed attempt.
pub type HandlerResult = Result<String, String>;
type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Arc<dyn Fn(Job) -> BoxFuture + Send + Sync>;

/// The longest a template may take to render.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(1);

/// Renders a job's template: in place when its output is small by
/// construction ([`template::renders_quickly`]: no `range`, at most 256
/// KiB), otherwise on a blocking thread, not on the runtime's workers,
/// bounded by [`RENDER_TIMEOUT`]; text without templating is returned as
/// it is, with no thread involved.
async fn render(text: &str, job: &Job, run: Option<&RunContext>) -> Result<String, String> {
    render_with(text, &job.template_delimiters, job, run).await
}

/// [`render`] with `delimiters` in place of the job's.
async fn render_with(
    text: &str,
    delimiters: &str,
    job: &Job,
    run: Option<&RunContext>,
) -> Result<String, String> {
    if delimiters.is_empty() {
        return Ok(text.to_string());
    }
    if template::renders_quickly(text, delimiters, job, run) {
        // Bounded and small: no thread hand-off, no copy of the job.
        return template::render_delimited(text, delimiters, job, run);
    }
    let (text, run) = (text.to_string(), run.cloned());
    let mut job = job.clone();
    job.template_delimiters = delimiters.to_string();
    let task = tokio::task::spawn_blocking(move || template::render_for(&text, &job, run.as_ref()));
    match tokio::time::timeout(RENDER_TIMEOUT, task).await {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(e)) => Err(format!("Error templatizing: {e}")),
        Err(_) => Err(format!(
            "Error templatizing: rendering took longer than {RENDER_TIMEOUT:?}"
        )),
    }
}

/// Runs attempts. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Executor {
    http: reqwest::Client,
    handlers: Arc<RwLock<HashMap<String, Handler>>>,
    publisher: Arc<RwLock<Option<Arc<dyn Publisher>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl Executor {
    pub fn new() -> Result<Executor, ExecutorError> {
        // reqwest is built without a default TLS provider; install aws-lc-rs once (rustls's own default).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("kala/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExecutorError::Http(e.to_string()))?;
        Ok(Executor {
            http,
            handlers: Arc::default(),
            publisher: Arc::default(),
        })
    }

    /// Installs what publish jobs (type 3) send their messages through
    /// (`kala-publish`'s named brokers); without one, they fail.
    pub fn set_publisher(&self, publisher: Arc<dyn Publisher>) {
        if let Ok(mut p) = self.publisher.write() {
            *p = Some(publisher);
        }
    }

    /// The installed publisher, if any.
    pub fn publisher(&self) -> Option<Arc<dyn Publisher>> {
        self.publisher.read().ok().and_then(|p| p.clone())
    }

    /// Registers an in-process handler: jobs of type `InProcess` whose
    /// `command` is `name` run it.
    pub fn register<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let h: Handler = Arc::new(move |job| Box::pin(handler(job)));
        if let Ok(mut map) = self.handlers.write() {
            map.insert(name.to_string(), h);
        }
    }

    /// Runs one attempt of `job`. `timeout` bounds a local command (its
    /// process group is killed) or an in-process handler.
    pub async fn run(&self, job: &Job, timeout: Option<Duration>) -> Attempt {
        self.run_as(job, timeout, None).await
    }

    /// [`Executor::run`], telling the run who it is: a local command gets
    /// [`RunContext::env`] in its environment (`KALA_RUN_ID` is also the
    /// tag by which [`orphans::find`] recognises what a dead server left
    /// running), a remote request gets [`RunContext::headers`].
    pub async fn run_as(
        &self,
        job: &Job,
        timeout: Option<Duration>,
        ctx: Option<&RunContext>,
    ) -> Attempt {
        match job.job_type {
            JobType::Local => {
                let started = Instant::now();
                let env = ctx.map(RunContext::env).unwrap_or_default();
                match render(&job.command, job, ctx).await {
                    Ok(cmd) => run_command_with_env(&cmd, timeout, &env).await,
                    Err(e) => Attempt::failed(e, started),
                }
            }
            JobType::Remote => self.run_remote(job, ctx).await,
            JobType::InProcess => self.run_handler(job, timeout).await,
            JobType::Publish => {
                let publisher = self.publisher();
                publish::attempt(publisher.as_deref(), job, timeout, ctx).await
            }
        }
    }

    async fn run_handler(&self, job: &Job, timeout: Option<Duration>) -> Attempt {
        let started = Instant::now();
        let handler = self
            .handlers
            .read()
            .ok()
            .and_then(|m| m.get(&job.command).cloned());
        let Some(handler) = handler else {
            return Attempt::failed(
                format!("no handler registered for {:?}", job.command),
                started,
            );
        };
        let fut = handler(job.clone());
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {t:?}")),
            },
            None => fut.await,
        };
        let (success, output, error) = match result {
            Ok(out) => (true, tail(out.as_bytes()), None),
            Err(e) => (false, String::new(), Some(e)),
        };
        Attempt {
            success,
            exit_code: None,
            error,
            output,
            duration: started.elapsed(),
        }
    }

    async fn run_remote(&self, job: &Job, ctx: Option<&RunContext>) -> Attempt {
        let started = Instant::now();
        let r = &job.remote_properties;
        let url = match render(&r.url, job, ctx).await {
            Ok(u) => u,
            Err(e) => return Attempt::failed(e, started),
        };
        let body = match render(&r.body, job, ctx).await {
            Ok(b) => b,
            Err(e) => return Attempt::failed(e, started),
        };
        let method = if r.method.is_empty() {
            "GET".to_string()
        } else {
            r.method.to_uppercase()
        };
        let method = match reqwest::Method::from_bytes(method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return Attempt::failed(format!("net/http: invalid method {method:?}"), started);
            }
        };
        let mut req = self.http.request(method, &url);
        let mut has_content_type = false;
        if let Some(headers) = &r.headers {
            for (name, values) in headers {
                has_content_type |= name.eq_ignore_ascii_case("content-type");
                for v in values {
                    req = req.header(name.as_str(), v.as_str());
                }
            }
        }
        if !has_content_type {
            req = req.header("Content-Type", "application/json");
        }
        if let Some(ctx) = ctx {
            for (name, value) in ctx.headers() {
                req = req.header(name, value);
            }
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        match r.timeout {
            0 => req = req.timeout(Duration::from_secs(30)),
            t if t > 0 => req = req.timeout(Duration::from_secs(t.unsigned_abs())),
            _ => {}
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Attempt::failed(error_chain(&e), started),
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => tail(&b),
            Err(e) => return Attempt::failed(error_chain(&e), started),
        };
        let expected: &[u16] = match &r.expected_response_codes {
            Some(c) if !c.is_empty() => c,
            _ => &[200],
        };
        let success = expected.contains(&status.as_u16());
        Attempt {
            success,
            exit_code: Some(i32::from(status.as_u16())),
            error: (!success).then(|| format!("{status}{body}")),
            output: body,
            duration: started.elapsed(),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Keeps the last [`OUTPUT_TAIL`] bytes, cut at a character boundary.
fn tail(bytes: &[u8]) -> String {
    let from = bytes.len().saturating_sub(OUTPUT_TAIL);
    let s = String::from_utf8_lossy(&bytes[from..]);
    s.trim_start_matches('\u{FFFD}').to_string()
}

pub mod orphans;

pub use command::{expand_env, run_command, run_command_with_env};
pub use context::RunContext;
pub use publish::{Message, Publisher};

#[cfg(test)]
mod tests;
