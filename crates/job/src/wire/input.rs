//! Input: a job from a request body, the way Go's decoder reads it.
//!
//! Owns: [`job_from_json`], [`job_from_value`]. Must not: render output.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{Job, JobError, JobType, NotifyOn, NotifyTarget, Overlap, RemoteProperties};

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
                    format!(
                        "unknown job type {code} (0 = local command, 1 = remote HTTP, 3 = publish to a broker)"
                    ),
                ));
            }
            Some(t) => t,
        };
    }
    if let Some((field, v)) = f.take("remote_properties") {
        job.remote_properties = remote_from_value(&field, v)?.shared();
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
    if let Some((field, v)) = f.take("notify") {
        job.notify = notify_from_value(&field, v)?;
    }
    if let Some((field, v)) = f.take("run_on") {
        job.run_on = match v {
            Value::Null => None,
            v => Some(Box::new(crate::placement::run_on_from_value(&field, v)?)),
        };
    }
    if let Some((field, v)) = f.take("publish") {
        job.publish = match v {
            Value::Null => None,
            v => Some(Box::new(crate::publish::publish_from_value(&field, v)?)),
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

/// `notify`: an array of targets. Unlike Kala's fields, unknown keys in a
/// target are errors (a misspelt `webhok` must not silently notify no one).
pub fn notify_from_value(field: &str, v: Value) -> Result<Vec<NotifyTarget>, JobError> {
    let Value::Array(items) = v else {
        return Err(JobError::new(
            field,
            format!("expected an array of targets, found {}", kind(&v)),
        ));
    };
    if items.len() > crate::notify::MAX_TARGETS {
        return Err(JobError::new(
            field,
            format!(
                "has {} targets; at most {}",
                items.len(),
                crate::notify::MAX_TARGETS
            ),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(obj) = item else {
            return Err(JobError::new(
                at,
                format!("expected an object, found {}", kind(&item)),
            ));
        };
        let mut t = NotifyTarget {
            on: Vec::new(),
            webhook: String::new(),
            email: String::new(),
            format: String::new(),
        };
        for (key, value) in obj {
            if value.is_null() {
                continue; // like Kala's fields: null is absent
            }
            let here = format!("{at}.{key}");
            let text = |value: &Value| {
                value.as_str().map(str::to_string).ok_or_else(|| {
                    JobError::new(&here, format!("expected a string, found {}", kind(value)))
                })
            };
            match key.as_str() {
                "webhook" => t.webhook = text(&value)?,
                "email" => t.email = text(&value)?,
                "format" => t.format = text(&value)?,
                "on" => {
                    let Value::Array(events) = value else {
                        return Err(JobError::new(
                            here,
                            format!("expected an array of events, found {}", kind(&value)),
                        ));
                    };
                    for e in events {
                        let name = e.as_str().unwrap_or_default();
                        let ev = NotifyOn::parse(name).ok_or_else(|| {
                            JobError::new(
                                &here,
                                format!("{e} is not one of \"failure\", \"success\", \"retry\", \"skipped\", \"interrupted\""),
                            )
                        })?;
                        if !t.on.contains(&ev) {
                            t.on.push(ev);
                        }
                    }
                }
                _ => {
                    return Err(JobError::new(
                        here,
                        "is not a target field (on, webhook, email, format)",
                    ));
                }
            }
        }
        out.push(t);
    }
    Ok(out)
}
