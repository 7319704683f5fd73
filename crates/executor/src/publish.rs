//! Publish jobs (type 3): the message a run sends, and the [`Publisher`]
//! the executor hands it to. The brokers themselves (connections,
//! protocols) live in the `kala-publish` crate; the executor only
//! renders the message and reads the broker's confirmation.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use kala_job::Job;

use crate::{Attempt, RunContext};

/// How long a publish waits for its confirmation unless the job's
/// `timeout` says otherwise.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// One message, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The named broker connection.
    pub broker: String,
    /// Subject, routing key or topic.
    pub to: String,
    /// AMQP exchange (empty: the default exchange).
    pub exchange: String,
    pub payload: Vec<u8>,
    /// The job's headers, then kala's (`Kala-Job-Id`, `Kala-Run-Id`, …).
    pub headers: Vec<(String, String)>,
    /// The same for every attempt of a schedule point, on any instance
    /// (`Nats-Msg-Id`, AMQP `message_id`, an MQTT v5 user property): see
    /// [`message_id`].
    pub id: String,
    /// MQTT QoS (0, 1 or 2).
    pub qos: u8,
    /// MQTT retain.
    pub retain: bool,
}

/// What a broker said about a message it confirmed (or why not).
pub type PublishResult = Result<String, String>;

/// Sends messages to named brokers and waits for their confirmation.
pub trait Publisher: Send + Sync {
    /// Whether a broker of this name is configured.
    fn has(&self, broker: &str) -> bool;
    /// The configured brokers' names.
    fn names(&self) -> Vec<String>;
    /// Sends `msg`; `Ok` only once the broker confirmed it (a JetStream
    /// ack, an AMQP publisher confirm, an MQTT PUBACK/PUBCOMP), within
    /// `timeout`.
    fn publish<'a>(
        &'a self,
        msg: Message,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = PublishResult> + Send + 'a>>;
}

/// A message id derived from the job and the schedule point, so that a
/// point published again (a retry, a takeover after a crash) carries the
/// same id and a deduplicating broker drops it: `kala-<job>-<point in
/// ns>`. A run without a point (manual, parent, one-off) uses its run id.
pub fn message_id(job_id: &str, ctx: Option<&RunContext>) -> String {
    match ctx {
        Some(RunContext {
            scheduled_at: Some(p),
            ..
        }) => format!("kala-{job_id}-{}", p.as_nanosecond()),
        Some(ctx) if !ctx.run_id.is_empty() => format!("kala-{job_id}-run-{}", ctx.run_id),
        _ => format!("kala-{job_id}-{}", uuid_like()),
    }
}

/// A unique enough suffix for a message with no run (`Executor::run`
/// without a context: tests and tools).
fn uuid_like() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{now:x}-{:x}", std::process::id())
}

/// The delimiters a publish payload is rendered with: the job's, or
/// `{{ }}` (a payload is always a template).
pub fn payload_delimiters(job: &Job) -> &str {
    if job.template_delimiters.is_empty() {
        "{{ }}"
    } else {
        &job.template_delimiters
    }
}

/// The message of one attempt of `job` (rendered payload, headers, id).
pub(crate) async fn message(job: &Job, ctx: Option<&RunContext>) -> Result<Message, String> {
    let Some(p) = &job.publish else {
        return Err("a publish job (type 3) needs its \"publish\" object".into());
    };
    let payload = crate::render_with(&p.payload, payload_delimiters(job), job, ctx).await?;
    let mut headers: Vec<(String, String)> = p
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(ctx) = ctx {
        headers.extend(ctx.headers().into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    Ok(Message {
        broker: p.broker.clone(),
        to: p.to.clone(),
        exchange: p.exchange.clone(),
        payload: payload.into_bytes(),
        headers,
        id: message_id(&job.id, ctx),
        qos: p.qos.unwrap_or(1),
        retain: p.retain,
    })
}

/// One publish attempt through `publisher`.
pub(crate) async fn attempt(
    publisher: Option<&dyn Publisher>,
    job: &Job,
    timeout: Option<Duration>,
    ctx: Option<&RunContext>,
) -> Attempt {
    let started = Instant::now();
    let msg = match message(job, ctx).await {
        Ok(m) => m,
        Err(e) => return Attempt::failed(e, started),
    };
    let Some(publisher) = publisher.filter(|p| p.has(&msg.broker)) else {
        return Attempt::failed(
            format!(
                "no broker named {:?} on this instance (start it with --broker {}=URL)",
                msg.broker, msg.broker
            ),
            started,
        );
    };
    let timeout = timeout.unwrap_or(DEFAULT_PUBLISH_TIMEOUT);
    let result = match tokio::time::timeout(timeout, publisher.publish(msg, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no confirmation from the broker within {timeout:?}"
        )),
    };
    match result {
        Ok(said) => Attempt {
            success: true,
            exit_code: None,
            error: None,
            output: said,
            duration: started.elapsed(),
        },
        Err(e) => Attempt::failed(e, started),
    }
}
