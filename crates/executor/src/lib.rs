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

pub mod template;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
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

/// Renders a job's template on a blocking thread, not on the runtime's
/// workers, bounded by [`RENDER_TIMEOUT`]; text without templating is
/// returned as it is, with no thread involved.
async fn render(text: &str, job: &Job, run: Option<&RunContext>) -> Result<String, String> {
    if job.template_delimiters.is_empty() {
        return Ok(text.to_string());
    }
    let (text, job, run) = (text.to_string(), job.clone(), run.cloned());
    let task = tokio::task::spawn_blocking(move || template::render_for(&text, &job, run.as_ref()));
    match tokio::time::timeout(RENDER_TIMEOUT, task).await {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(e)) => Err(format!("Error templatizing: {e}")),
        Err(_) => Err(format!(
            "Error templatizing: rendering took longer than {RENDER_TIMEOUT:?}"
        )),
    }
}

/// Who a run is, so that a job can be idempotent: the same for every
/// attempt of a run but `attempt`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunContext {
    pub job_id: String,
    pub job_name: String,
    /// Unique per run, the same for its retries (the run journal's id).
    pub run_id: String,
    /// The schedule point, for runs that came from the schedule.
    pub scheduled_at: Option<jiff::Timestamp>,
    /// 1 for the first attempt.
    pub attempt: u64,
    /// The instance that runs it.
    pub node: String,
}

impl RunContext {
    fn scheduled(&self) -> String {
        self.scheduled_at.map(|t| t.to_string()).unwrap_or_default()
    }

    /// `KALA_JOB_ID`, `KALA_JOB_NAME`, `KALA_RUN_ID`, `KALA_SCHEDULED_AT`
    /// (RFC 3339 UTC as in the run record; empty when not from the
    /// schedule), `KALA_ATTEMPT`, `KALA_NODE`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KALA_JOB_ID", self.job_id.clone()),
            ("KALA_JOB_NAME", self.job_name.clone()),
            (orphans::RUN_ID_VAR, self.run_id.clone()),
            ("KALA_SCHEDULED_AT", self.scheduled()),
            ("KALA_ATTEMPT", self.attempt.to_string()),
            ("KALA_NODE", self.node.clone()),
        ]
    }

    /// `Kala-Job-Id`, `Kala-Run-Id`, `Kala-Scheduled-At` (only for a
    /// scheduled run), `Kala-Attempt`, `Kala-Node`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Kala-Job-Id", self.job_id.clone()),
            ("Kala-Run-Id", self.run_id.clone()),
            ("Kala-Attempt", self.attempt.to_string()),
            ("Kala-Node", self.node.clone()),
        ];
        if self.scheduled_at.is_some() {
            h.push(("Kala-Scheduled-At", self.scheduled()));
        }
        h
    }
}

/// Runs attempts. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Executor {
    http: reqwest::Client,
    handlers: Arc<RwLock<HashMap<String, Handler>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl Executor {
    pub fn new() -> Result<Executor, ExecutorError> {
        // reqwest is built without a default TLS provider; install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("kala/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExecutorError::Http(e.to_string()))?;
        Ok(Executor {
            http,
            handlers: Arc::default(),
        })
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

/// Replaces `$NAME` and `${NAME}` outside single quotes with the value from
/// `env`, quoted so that it stays one word (as Kala does by expanding after
/// splitting).
pub fn expand_env(cmd: &str, env: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(cmd.len());
    let mut chars = cmd.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\'' if !double => {
                single = !single;
                out.push(c);
            }
            '"' if !single => {
                double = !double;
                out.push(c);
            }
            '$' if !single => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced && chars.peek() == Some(&'}') {
                    chars.next();
                } else if braced || name.is_empty() {
                    // Not a variable reference: keep the text as written.
                    out.push('$');
                    if braced {
                        out.push('{');
                    }
                    out.push_str(&name);
                    continue;
                }
                let value = env(&name).unwrap_or_default();
                if double {
                    for v in value.chars() {
                        if matches!(v, '"' | '\\') {
                            out.push('\\');
                        }
                        out.push(v);
                    }
                } else {
                    out.push('\'');
                    out.push_str(&value.replace('\'', "'\\''"));
                    out.push('\'');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Runs a command line the way a local job does (also `kala-server run`).
pub async fn run_command(cmd: &str, timeout: Option<Duration>) -> Attempt {
    run_command_with_env(cmd, timeout, &[]).await
}

/// [`run_command`], with `env` added to the process's environment.
pub async fn run_command_with_env(
    cmd: &str,
    timeout: Option<Duration>,
    env: &[(&'static str, String)],
) -> Attempt {
    let started = Instant::now();
    let expanded = expand_env(cmd, |name| std::env::var(name).ok());
    let argv = match shell_words::split(&expanded) {
        Ok(a) => a.into_iter().filter(|w| !w.is_empty()).collect::<Vec<_>>(),
        Err(_) => return Attempt::failed("invalid command line string", started),
    };
    let Some((program, args)) = argv.split_first() else {
        return Attempt::failed("Job Command is empty.", started);
    };
    // One pipe per run for stdout and stderr together; the parent reads
    // it on the runtime (no thread), the child writes a blocking end.
    let pipe = tokio::net::unix::pipe::pipe().and_then(|(tx, rx)| {
        let writer = tx.into_blocking_fd()?;
        let writer2 = writer.try_clone()?;
        Ok((rx, writer, writer2))
    });
    let (reader, writer, writer2) = match pipe {
        Ok(p) => p,
        Err(e) => return Attempt::failed(format!("cannot create a pipe: {e}"), started),
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(true);
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let spawned = command.spawn();
    // The parent's copies of the write end must go, or the reader never ends.
    drop(command);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Attempt::failed(
                format!("exec: {program:?}: executable file not found in $PATH"),
                started,
            );
        }
        Err(e) => return Attempt::failed(format!("exec: {program:?}: {e}"), started),
    };
    let pgid = child.id();
    let collector = OutputTail::start(reader);
    let status = match timeout {
        None => child.wait().await,
        Some(t) => match tokio::time::timeout(t, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                if let Some(pgid) = pgid {
                    kill_group(pgid);
                }
                let _ = child.wait().await;
                let output = collector.finish().await;
                return Attempt {
                    success: false,
                    exit_code: None,
                    error: Some(format!("timed out after {t:?}; process group killed")),
                    output,
                    duration: started.elapsed(),
                };
            }
        },
    };
    let output = collector.finish().await;
    match status {
        Ok(s) if s.success() => Attempt {
            success: true,
            exit_code: Some(0),
            error: None,
            output,
            duration: started.elapsed(),
        },
        Ok(s) => {
            let why = match s.code() {
                Some(code) => format!("exit status {code}"),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    format!("signal: {}", s.signal().unwrap_or(0))
                }
            };
            Attempt {
                success: false,
                exit_code: s.code(),
                error: Some(format!("{why}: {}", output.trim())),
                output,
                duration: started.elapsed(),
            }
        }
        Err(e) => Attempt::failed(format!("wait: {e}"), started),
    }
}

/// The tail of a run's output, read from its pipe by a task on the
/// runtime: no thread per run, and a process the command left running in
/// the background cannot pin anything.
struct OutputTail {
    buf: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

/// How long output is still read after the command's main process exited.
const OUTPUT_DRAIN: Duration = Duration::from_millis(200);

impl OutputTail {
    fn start(mut reader: tokio::net::unix::pipe::Receiver) -> OutputTail {
        use tokio::io::AsyncReadExt;
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let task = tokio::spawn(async move {
            let mut chunk = vec![0u8; 8192];
            while let Ok(n) = reader.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let Ok(mut b) = sink.lock() else { break };
                b.extend_from_slice(&chunk[..n]);
                if b.len() > 2 * OUTPUT_TAIL {
                    let cut = b.len() - OUTPUT_TAIL;
                    b.drain(..cut);
                }
            }
        });
        OutputTail { buf, task }
    }

    /// Reads on for at most [`OUTPUT_DRAIN`] (until every writer closed
    /// the pipe), then stops reading; the tail read so far is kept either
    /// way.
    async fn finish(mut self) -> String {
        if tokio::time::timeout(OUTPUT_DRAIN, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        let bytes = match self.buf.lock() {
            Ok(b) => b.clone(),
            Err(p) => p.into_inner().clone(),
        };
        tail(&bytes)
    }
}

#[allow(unsafe_code)]
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the process group we
    // created with process_group(0); it touches no memory of ours.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

pub mod orphans;

#[cfg(test)]
mod tests;
