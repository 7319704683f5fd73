//! The request and error bodies' schemas that no serde type gives: the
//! error body, and the create body ([`JobIn`]: the job decoder is Go-like
//! and case-insensitive, so no serde type of it exists to derive from).
//! The handlers name them in their annotations and the OpenAPI document
//! collects them.
//!
//! Owns: those types. Must not: import a handler or the document (both
//! import this).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: `{"error": "<field>: <problem>"}`; a 5xx carries a generic
/// message with a request id (also in the `x-request-id` header).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// A job to create. Keys are matched like Go's decoder does (any case;
/// `_` ignored: `parent_jobs`, `ParentJobs`), unknown keys are ignored,
/// and `id`, `metadata`, `stats`, `is_done`, `dependent_jobs`,
/// `next_run_at` are accepted and ignored (the server sets them).
#[derive(ToSchema)]
#[schema(example = json!({"name": "nightly report", "command": "true", "schedule": "R/2030-01-01T02:00:00Z/P1D", "retries": 1, "epsilon": "PT5M"}))]
#[allow(dead_code)]
pub struct JobIn {
    /// Required.
    #[schema(min_length = 1)]
    name: String,
    /// Required for a local job (type 0): the command line, split like a
    /// shell does (no shell is involved).
    command: Option<String>,
    owner: Option<String>,
    disabled: Option<bool>,
    /// Ids of existing jobs this one runs after; a job with parents runs
    /// only after them (its schedule is not used).
    parent_jobs: Option<Vec<String>>,
    /// The id of an existing job to run after this one fails.
    on_failure_job: Option<String>,
    /// An ISO 8601 repeating interval (`R/2030-01-01T00:00:00Z/PT1H`), a
    /// cron expression, or empty: run once, now.
    schedule: Option<String>,
    retries: Option<u64>,
    /// An ISO 8601 duration: how late a run may start and still run.
    epsilon: Option<String>,
    /// Template delimiters for the command, url and body (`{{ }}`); empty:
    /// no templating.
    #[schema(rename = "TemplateDelimiters")]
    template_delimiters: Option<String>,
    resume_at_next_scheduled_time: Option<bool>,
    /// 0: local command, 1: remote HTTP request, 3 (kala): publish a
    /// message to a named broker (`publish`).
    #[schema(rename = "type", minimum = 0, maximum = 3)]
    job_type: Option<i64>,
    remote_properties: Option<RemoteIn>,
    /// kala: an IANA zone for the schedule.
    time_zone: Option<String>,
    /// kala: an ISO 8601 duration after which a run is stopped.
    timeout: Option<String>,
    /// kala: the first delay between retries (ISO 8601; doubles each retry).
    retry_delay: Option<String>,
    /// kala: `allow` (default) or `skip` a run while the previous one goes on.
    overlap: Option<String>,
    /// kala: who hears about this job's runs: webhooks and email addresses,
    /// each with the events it wants.
    #[schema(max_items = 16)]
    notify: Option<Vec<NotifyTargetIn>>,
    /// kala: a publish job's message (type 3 only, required there).
    publish: Option<PublishIn>,
    /// kala: which instances run each point, by their tags (`--tag`).
    run_on: Option<RunOnIn>,
}

/// Which live instances run each point: those with every tag given; one
/// of them (default), `count` of them, or `every` one. Fewer matches than
/// asked: the point (or the missing part) is recorded `skipped` with the
/// reason. Alone, the instance's own tags must match. Unknown keys are
/// refused.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct RunOnIn {
    /// At most 16.
    tags: Option<BTreeMap<String, String>>,
    #[schema(minimum = 1, maximum = 64)]
    count: Option<u32>,
    /// Not together with `count`.
    every: Option<bool>,
}

/// A publish job's message: which named broker (the server's `--broker
/// NAME=URL`), where to, and what. Unknown keys are refused.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct PublishIn {
    /// A broker the server was started with; an unknown name is a 400.
    #[schema(min_length = 1, max_length = 64)]
    broker: String,
    /// The NATS subject, AMQP routing key or MQTT topic.
    #[schema(min_length = 1, max_length = 1024)]
    to: String,
    /// AMQP: the exchange (default: the default exchange).
    #[schema(max_length = 255)]
    exchange: Option<String>,
    /// A Go template with the run's context (`{{.Run.ScheduledAt}}`).
    #[schema(max_length = 65536)]
    payload: Option<String>,
    /// Message headers (AMQP headers, NATS headers, MQTT v5 user
    /// properties); kala adds `Kala-Job-Id`, `Kala-Run-Id`, … and the
    /// message id. At most 64.
    headers: Option<BTreeMap<String, String>>,
    /// MQTT: 0, 1 (default) or 2.
    #[schema(minimum = 0, maximum = 2)]
    qos: Option<u8>,
    /// MQTT: retain the message.
    retain: Option<bool>,
}

/// A notification target: a webhook or an email address, with the events
/// it hears about.
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum NotifyTargetIn {
    Webhook(WebhookTarget),
    Email(EmailTarget),
}

/// A webhook: a signed JSON POST per event (`format: "slack"`: a
/// Slack/Mattermost message).
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    #[schema(min_items = 1)]
    on: Vec<kala_job::NotifyOn>,
    #[schema(
        pattern = r"^https?://[^\s\u0000-\u001f\u007f-\u009f/][^\s\u0000-\u001f\u007f-\u009f]*$",
        max_length = 2048
    )]
    webhook: String,
    format: Option<WebhookFormat>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum WebhookFormat {
    Slack,
}

/// An email address: a plain-text message per event (the server needs
/// `--smtp-url`).
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    #[schema(min_items = 1)]
    on: Vec<kala_job::NotifyOn>,
    #[schema(
        pattern = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$",
        max_length = 254
    )]
    email: String,
}

/// A remote job's request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RemoteIn {
    url: Option<String>,
    method: Option<String>,
    body: Option<String>,
    headers: Option<BTreeMap<String, Vec<String>>>,
    /// Seconds; 0 or less: the default.
    timeout: Option<i64>,
    /// Status codes that count as success (default: 200).
    expected_response_codes: Option<Vec<u16>>,
}
