//! Kala's JSON, both ways.
//!
//! Output keeps Kala's key names and order (kala-api.md §2.1), renders
//! "never" as Go's zero time `0001-01-01T00:00:00Z`, and adds the spellings
//! of Kala's README (flat run counters on the job, `JobId`-style keys on
//! stats, `ActiveJobs`-style keys on app stats) so clients written against
//! either keep working.
//!
//! Input follows Go's decoder: keys match case-insensitively (we also
//! ignore `_`, so README spellings work), unknown keys are ignored, `null`
//! keeps the default, and types are strict. Server-controlled keys (`id`,
//! `next_run_at`, `metadata`, `stats`, `is_done`, `dependent_jobs`) are
//! accepted and ignored. Errors name the field.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Job, JobError, JobType, Overlap, RemoteProperties, RunRecord};

/// Go's zero time, Kala's "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn ser_time<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_str(ZERO_TIME),
    }
}

fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

#[derive(Serialize)]
pub struct MetadataOut {
    pub success_count: u64,
    #[serde(serialize_with = "ser_time")]
    pub last_success: Option<Timestamp>,
    pub error_count: u64,
    #[serde(serialize_with = "ser_time")]
    pub last_error: Option<Timestamp>,
    #[serde(serialize_with = "ser_time")]
    pub last_attempted_run: Option<Timestamp>,
    pub number_of_finished_runs: u64,
}

#[derive(Serialize)]
pub struct RemoteOut<'a> {
    pub url: &'a str,
    pub method: &'a str,
    pub body: &'a str,
    pub headers: &'a Option<BTreeMap<String, Vec<String>>>,
    pub timeout: i64,
    pub expected_response_codes: &'a Option<Vec<u16>>,
}

/// A job exactly as Kala renders it, plus README spellings and extensions.
#[derive(Serialize)]
pub struct JobOut<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub command: &'a str,
    pub owner: &'a str,
    pub disabled: bool,
    pub dependent_jobs: &'a Option<Vec<String>>,
    pub parent_jobs: &'a Option<Vec<String>>,
    pub on_failure_job: &'a str,
    pub schedule: &'a str,
    pub retries: u64,
    pub epsilon: &'a str,
    #[serde(serialize_with = "ser_time")]
    pub next_run_at: Option<Timestamp>,
    #[serde(rename = "TemplateDelimiters")]
    pub template_delimiters: &'a str,
    pub resume_at_next_scheduled_time: bool,
    pub metadata: MetadataOut,
    #[serde(rename = "type")]
    pub job_type: i64,
    pub remote_properties: RemoteOut<'a>,
    pub stats: Option<Vec<StatOut<'a>>>,
    pub is_done: bool,
    // Kala README spellings: the run counters flat on the job.
    pub success_count: u64,
    #[serde(serialize_with = "ser_time")]
    pub last_success: Option<Timestamp>,
    pub error_count: u64,
    #[serde(serialize_with = "ser_time")]
    pub last_error: Option<Timestamp>,
    #[serde(serialize_with = "ser_time")]
    pub last_attempted_run: Option<Timestamp>,
    // Extensions.
    pub time_zone: &'a str,
    pub timeout: &'a str,
    pub retry_delay: &'a str,
    pub overlap: Overlap,
}

impl<'a> JobOut<'a> {
    /// `stats`: the job's run records, oldest first (`None` → `null`).
    pub fn new(job: &'a Job, stats: Option<&'a [RunRecord]>) -> JobOut<'a> {
        let m = &job.metadata;
        let r = &job.remote_properties;
        JobOut {
            name: &job.name,
            id: &job.id,
            command: &job.command,
            owner: &job.owner,
            disabled: job.disabled,
            dependent_jobs: &job.dependent_jobs,
            parent_jobs: &job.parent_jobs,
            on_failure_job: &job.on_failure_job,
            schedule: &job.schedule,
            retries: job.retries,
            epsilon: &job.epsilon,
            next_run_at: job.next_run_at,
            template_delimiters: &job.template_delimiters,
            resume_at_next_scheduled_time: job.resume_at_next_scheduled_time,
            metadata: MetadataOut {
                success_count: m.success_count,
                last_success: m.last_success,
                error_count: m.error_count,
                last_error: m.last_error,
                last_attempted_run: m.last_attempted_run,
                number_of_finished_runs: m.number_of_finished_runs,
            },
            job_type: job.job_type.code(),
            remote_properties: RemoteOut {
                url: &r.url,
                method: &r.method,
                body: &r.body,
                headers: &r.headers,
                timeout: r.timeout,
                expected_response_codes: &r.expected_response_codes,
            },
            stats: stats
                .filter(|s| !s.is_empty())
                .map(|s| s.iter().map(StatOut::new).collect()),
            is_done: job.is_done,
            success_count: m.success_count,
            last_success: m.last_success,
            error_count: m.error_count,
            last_error: m.last_error,
            last_attempted_run: m.last_attempted_run,
            time_zone: &job.time_zone,
            timeout: &job.timeout,
            retry_delay: &job.retry_delay,
            overlap: job.overlap,
        }
    }
}

/// A run as Kala's JobStat, in both spellings.
#[derive(Serialize)]
pub struct StatOut<'a> {
    pub job_id: &'a str,
    #[serde(serialize_with = "ser_ts")]
    pub ran_at: Timestamp,
    pub number_of_retries: u64,
    pub success: bool,
    pub execution_duration: u64,
    #[serde(rename = "JobId")]
    pub job_id_readme: &'a str,
    #[serde(rename = "RanAt", serialize_with = "ser_ts")]
    pub ran_at_readme: Timestamp,
    #[serde(rename = "NumberOfRetries")]
    pub number_of_retries_readme: u64,
    #[serde(rename = "Success")]
    pub success_readme: bool,
    #[serde(rename = "ExecutionDuration")]
    pub execution_duration_readme: u64,
}

impl<'a> StatOut<'a> {
    pub fn new(r: &'a RunRecord) -> StatOut<'a> {
        StatOut {
            job_id: &r.job_id,
            ran_at: r.ran_at,
            number_of_retries: r.number_of_retries,
            success: r.success(),
            execution_duration: r.execution_duration,
            job_id_readme: &r.job_id,
            ran_at_readme: r.ran_at,
            number_of_retries_readme: r.number_of_retries,
            success_readme: r.success(),
            execution_duration_readme: r.execution_duration,
        }
    }
}

/// Kala's app-level stats, in both spellings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppStats {
    pub active_jobs: u64,
    pub disabled_jobs: u64,
    pub jobs: u64,
    pub error_count: u64,
    pub success_count: u64,
    pub next_run_at: Option<Timestamp>,
    pub last_attempted_run: Option<Timestamp>,
    pub created: Option<Timestamp>,
}

impl Serialize for AppStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out {
            active_jobs: u64,
            disabled_jobs: u64,
            jobs: u64,
            error_count: u64,
            success_count: u64,
            #[serde(serialize_with = "ser_time")]
            next_run_at: Option<Timestamp>,
            #[serde(serialize_with = "ser_time")]
            last_attempted_run: Option<Timestamp>,
            #[serde(serialize_with = "ser_time")]
            created: Option<Timestamp>,
            #[serde(rename = "ActiveJobs")]
            a: u64,
            #[serde(rename = "DisabledJobs")]
            b: u64,
            #[serde(rename = "Jobs")]
            c: u64,
            #[serde(rename = "ErrorCount")]
            d: u64,
            #[serde(rename = "SuccessCount")]
            e: u64,
            #[serde(rename = "NextRunAt", serialize_with = "ser_time")]
            f: Option<Timestamp>,
            #[serde(rename = "LastAttemptedRun", serialize_with = "ser_time")]
            g: Option<Timestamp>,
            #[serde(rename = "CreatedAt", serialize_with = "ser_time")]
            h: Option<Timestamp>,
        }
        Out {
            active_jobs: self.active_jobs,
            disabled_jobs: self.disabled_jobs,
            jobs: self.jobs,
            error_count: self.error_count,
            success_count: self.success_count,
            next_run_at: self.next_run_at,
            last_attempted_run: self.last_attempted_run,
            created: self.created,
            a: self.active_jobs,
            b: self.disabled_jobs,
            c: self.jobs,
            d: self.error_count,
            e: self.success_count,
            f: self.next_run_at,
            g: self.last_attempted_run,
            h: self.created,
        }
        .serialize(s)
    }
}

/// Describes a JSON value's type the way an error message should.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Keys compare like Go's decoder (case-insensitive), and `_` is ignored.
fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

struct Fields {
    map: BTreeMap<String, (String, Value)>,
    prefix: &'static str,
}

impl Fields {
    fn new(obj: Map<String, Value>, prefix: &'static str) -> Fields {
        let mut map = BTreeMap::new();
        for (k, v) in obj {
            map.insert(norm(&k), (k, v));
        }
        Fields { map, prefix }
    }

    fn take(&mut self, name: &str) -> Option<(String, Value)> {
        match self.map.remove(&norm(name)) {
            Some((_, Value::Null)) | None => None,
            Some((_, v)) => Some((format!("{}{name}", self.prefix), v)),
        }
    }

    /// Takes `name` and converts it with `get`; `what` names the expected
    /// type in the error.
    fn typed<T>(
        &mut self,
        name: &str,
        what: &str,
        get: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, JobError> {
        match self.take(name) {
            None => Ok(None),
            Some((f, v)) => match get(&v) {
                Some(x) => Ok(Some(x)),
                None => {
                    // A number of the wrong kind (-1, 1.5) is shown as it is.
                    let found = match &v {
                        Value::Number(n) if what.contains("number") => n.to_string(),
                        other => kind(other).to_string(),
                    };
                    Err(JobError::new(f, format!("expected {what}, found {found}")))
                }
            },
        }
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, JobError> {
        self.typed(name, "a string", |v| v.as_str().map(str::to_string))
    }

    fn boolean(&mut self, name: &str) -> Result<Option<bool>, JobError> {
        self.typed(name, "true or false", Value::as_bool)
    }

    fn int(&mut self, name: &str) -> Result<Option<i64>, JobError> {
        self.typed(name, "a whole number", Value::as_i64)
    }

    fn uint(&mut self, name: &str) -> Result<Option<u64>, JobError> {
        self.typed(name, "a whole number ≥ 0", Value::as_u64)
    }

    fn strings(&mut self, name: &str) -> Result<Option<Vec<String>>, JobError> {
        match self.take(name) {
            None => Ok(None),
            Some((f, Value::Array(items))) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(JobError::new(
                        &f,
                        format!("expected an array of strings, found {} in it", kind(&other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some((f, v)) => Err(JobError::new(
                f,
                format!("expected an array of strings, found {}", kind(&v)),
            )),
        }
    }
}

/// Decodes a create request body into a new job (fresh id, Kala's
/// defaults). Validation is separate: see [`Job::validate`].
pub fn job_from_json(body: &[u8]) -> Result<Job, JobError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(JobError::new(
            "body",
            "is empty; expected a JSON object describing the job",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| JobError::new("body", format!("invalid JSON: {e}")))?;
    job_from_value(value)
}

pub fn job_from_value(value: Value) -> Result<Job, JobError> {
    let obj = match value {
        Value::Object(o) => o,
        // Go decodes `null` into an empty job, which then fails validation.
        Value::Null => Map::new(),
        other => {
            return Err(JobError::new(
                "body",
                format!(
                    "expected a JSON object describing the job, found {}",
                    kind(&other)
                ),
            ));
        }
    };
    let mut f = Fields::new(obj, "");
    let mut job = Job::new("", "");
    if let Some(v) = f.string("name")? {
        job.name = v;
    }
    if let Some(v) = f.string("command")? {
        job.command = v;
    }
    if let Some(v) = f.string("owner")? {
        job.owner = v;
    }
    if let Some(v) = f.boolean("disabled")? {
        job.disabled = v;
    }
    if let Some(v) = f.strings("parent_jobs")? {
        job.parent_jobs = Some(v);
    }
    if let Some(v) = f.string("on_failure_job")? {
        job.on_failure_job = v;
    }
    if let Some(v) = f.string("schedule")? {
        job.schedule = v;
    }
    if let Some(v) = f.uint("retries")? {
        job.retries = v;
    }
    if let Some(v) = f.string("epsilon")? {
        job.epsilon = v;
    }
    if let Some(v) = f.string("TemplateDelimiters")? {
        job.template_delimiters = v;
    }
    if let Some(v) = f.boolean("resume_at_next_scheduled_time")? {
        job.resume_at_next_scheduled_time = v;
    }
    if let Some(code) = f.int("type")? {
        job.job_type = match JobType::from_code(code) {
            Some(JobType::InProcess) | None => {
                return Err(JobError::new(
                    "type",
                    format!("unknown job type {code} (0 = local command, 1 = remote HTTP)"),
                ));
            }
            Some(t) => t,
        };
    }
    if let Some((field, v)) = f.take("remote_properties") {
        job.remote_properties = remote_from_value(&field, v)?;
    }
    if let Some(v) = f.string("time_zone")? {
        job.time_zone = v;
    }
    if let Some(v) = f.string("timeout")? {
        job.timeout = v;
    }
    if let Some(v) = f.string("retry_delay")? {
        job.retry_delay = v;
    }
    if let Some(v) = f.string("overlap")? {
        job.overlap = match v.as_str() {
            "" | "allow" => Overlap::Allow,
            "skip" => Overlap::Skip,
            other => {
                return Err(JobError::new(
                    "overlap",
                    format!("{other:?} is not one of \"allow\", \"skip\""),
                ));
            }
        };
    }
    // Server-controlled: accepted, ignored (id, next_run_at, metadata,
    // stats, is_done, dependent_jobs and the README's flat counters).
    Ok(job)
}

fn remote_from_value(field: &str, v: Value) -> Result<RemoteProperties, JobError> {
    let obj = match v {
        Value::Object(o) => o,
        other => {
            return Err(JobError::new(
                field,
                format!("expected an object, found {}", kind(&other)),
            ));
        }
    };
    let mut f = Fields::new(obj, "remote_properties.");
    let mut r = RemoteProperties::default();
    if let Some(v) = f.string("url")? {
        r.url = v;
    }
    if let Some(v) = f.string("method")? {
        r.method = v;
    }
    if let Some(v) = f.string("body")? {
        r.body = v;
    }
    if let Some(v) = f.int("timeout")? {
        r.timeout = v;
    }
    if let Some((field, v)) = f.take("headers") {
        let Value::Object(map) = v else {
            return Err(JobError::new(
                field,
                format!("expected an object of name → [values], found {}", kind(&v)),
            ));
        };
        let mut headers = BTreeMap::new();
        for (name, values) in map {
            let Value::Array(values) = values else {
                return Err(JobError::new(
                    format!("{field}.{name}"),
                    format!("expected an array of strings, found {}", kind(&values)),
                ));
            };
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    Value::String(s) => out.push(s),
                    other => {
                        return Err(JobError::new(
                            format!("{field}.{name}"),
                            format!("expected strings, found {}", kind(&other)),
                        ));
                    }
                }
            }
            headers.insert(name, out);
        }
        r.headers = Some(headers);
    }
    if let Some((field, v)) = f.take("expected_response_codes") {
        let Value::Array(items) = v else {
            return Err(JobError::new(
                field,
                format!("expected an array of status codes, found {}", kind(&v)),
            ));
        };
        let mut codes = Vec::with_capacity(items.len());
        for item in items {
            match item.as_u64().and_then(|c| u16::try_from(c).ok()) {
                Some(c) => codes.push(c),
                None => {
                    return Err(JobError::new(
                        &field,
                        format!("{item} is not an HTTP status code"),
                    ));
                }
            }
        }
        r.expected_response_codes = Some(codes);
    }
    Ok(r)
}
