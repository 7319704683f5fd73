//! The audit log: every change made through the engine (create, delete,
//! delete all, enable, disable, start, notification targets) writes an
//! [`AuditEntry`] in the same store batch as the change, naming the
//! [`Actor`] the caller gave (the API gives the token's name, the
//! client's address and the request id; an embedder its own). The entry
//! holds what changed as a diff of the job's JSON, secrets masked. After
//! the batch commits, entries also go to `--audit-log` as JSON lines.
//!
//! Owns (this file, which imports nothing of the engine): [`Actor`],
//! [`AuditSettings`], the diff and the masking, the file sink. The
//! entries of `Inner` and `Engine` are in `audit/mod.rs`. Must not: write
//! an entry outside the batch of its change (a change and its entry are
//! both stored or neither is).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use jiff::SignedDuration;
use kala_job::Job;
use kala_job::wire::JobOut;
use kala_store::AuditEntry;
use serde_json::{Map, Value, json};

/// Who makes a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A token's name, `jwt:<sub>`, a user: what the log shows as who.
    pub name: String,
    /// From where (a client address, a service name).
    pub source: String,
    /// The request's id, if there is one.
    pub request_id: String,
}

impl Actor {
    pub fn new(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            source: String::new(),
            request_id: String::new(),
        }
    }

    /// The caller of the engine's methods that take no actor: the program
    /// that embeds it.
    pub fn engine() -> Actor {
        Actor {
            name: "engine".into(),
            source: "embedded".into(),
            request_id: String::new(),
        }
    }
}

impl Default for Actor {
    fn default() -> Self {
        Actor::engine()
    }
}

/// How the audit log is kept.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Whether entries are written at all.
    pub enabled: bool,
    /// Entries older than this are pruned (hourly); `None` keeps them.
    pub keep: Option<SignedDuration>,
    /// A file that also gets each committed entry as a JSON line.
    pub log_file: Option<PathBuf>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            keep: Some(SignedDuration::from_hours(400 * 24)),
            log_file: None,
        }
    }
}

/// The file sink of `--audit-log`.
#[derive(Default)]
pub(crate) struct Sink {
    file: Mutex<Option<std::fs::File>>,
}

impl Sink {
    pub fn open(path: Option<&PathBuf>) -> std::io::Result<Sink> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Sink {
            file: Mutex::new(file),
        })
    }

    /// Whether entries go to a file.
    pub fn is_on(&self) -> bool {
        self.file.lock().is_ok_and(|f| f.is_some())
    }

    /// Appends each entry as a line (after its batch committed).
    pub fn write(&self, entries: &[AuditEntry]) {
        if entries.is_empty() {
            return;
        }
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let Some(f) = guard.as_mut() else { return };
        let mut buf = Vec::new();
        for e in entries {
            if serde_json::to_writer(&mut buf, e).is_ok() {
                buf.push(b'\n');
            }
        }
        if let Err(e) = f.write_all(&buf) {
            tracing::error!(error = %e, "the audit log file could not be written (the entries are in the store)");
        }
    }
}

/// Header names whose values are secrets.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "secret",
        "key",
        "cookie",
        "password",
        "passwd",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// A URL with its password (and a query, which often holds a key)
/// masked.
fn mask_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("********"));
    }
    if u.query().is_some() {
        u.set_query(Some("********"));
    }
    u.to_string()
}

const MASK: &str = "********";

/// Masks what a job's JSON may hold as secrets: header values with a
/// secret's name, passwords and queries of URLs (remote jobs, webhooks).
pub fn mask(job: &mut Value) {
    if let Some(rp) = job
        .get_mut("remote_properties")
        .and_then(Value::as_object_mut)
    {
        if let Some(Value::String(u)) = rp.get_mut("url") {
            *u = mask_url(u);
        }
        if let Some(h) = rp.get_mut("headers").and_then(Value::as_object_mut) {
            for (name, values) in h.iter_mut() {
                if secret_name(name) {
                    *values = json!([MASK]);
                }
            }
        }
    }
    if let Some(h) = job
        .get_mut("publish")
        .and_then(|p| p.get_mut("headers"))
        .and_then(Value::as_object_mut)
    {
        for (name, v) in h.iter_mut() {
            if secret_name(name) {
                *v = json!(MASK);
            }
        }
    }
    if let Some(targets) = job.get_mut("notify").and_then(Value::as_array_mut) {
        for t in targets.iter_mut() {
            if let Some(Value::String(u)) = t.get_mut("webhook") {
                *u = mask_url(u);
            }
            if let Some(s) = t.get_mut("secret") {
                *s = json!(MASK);
            }
        }
    }
}

/// A job's JSON as the API shows it, masked; run counters left out (they
/// change with every run, not with a change).
fn masked(job: &Job) -> Map<String, Value> {
    let mut v = serde_json::to_value(JobOut::new(job, None)).unwrap_or(Value::Null);
    mask(&mut v);
    let Value::Object(mut m) = v else {
        return Map::new();
    };
    for volatile in VOLATILE {
        m.remove(volatile);
    }
    m
}

/// Top-level keys of a job's JSON that change with runs, not changes.
const VOLATILE: [&str; 4] = ["metadata", "next_run_at", "scheduled_runs", "is_done"];

type RawFields<'a> = std::collections::BTreeMap<&'a str, &'a serde_json::value::RawValue>;

/// The JSON text of each field of a job with every field at its default.
fn blank() -> &'static std::collections::BTreeMap<String, String> {
    static BLANK: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
        std::sync::OnceLock::new();
    BLANK.get_or_init(|| {
        let bytes = serde_json::to_vec(&JobOut::new(&Job::new("", ""), None)).unwrap_or_default();
        serde_json::from_slice::<RawFields<'_>>(&bytes)
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k.to_string(), v.get().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The fields of a job set away from their defaults (and its id and
/// name), masked: what a create's or a delete's diff shows. The job is
/// written as JSON once and only those fields are parsed back (a tree of
/// every field cost ~4 µs more per create).
fn set_fields(job: &Job) -> Map<String, Value> {
    let Ok(bytes) = serde_json::to_vec(&JobOut::new(job, None)) else {
        return Map::new();
    };
    let Ok(raw) = serde_json::from_slice::<RawFields<'_>>(&bytes) else {
        return Map::new();
    };
    let blank = blank();
    let mut out = Map::new();
    for (k, v) in raw {
        if VOLATILE.contains(&k)
            || (!matches!(k, "id" | "name") && blank.get(k).map(String::as_str) == Some(v.get()))
        {
            continue;
        }
        if let Ok(value) = serde_json::from_str::<Value>(v.get()) {
            out.insert(k.to_string(), value);
        }
    }
    let mut obj = Value::Object(out);
    mask(&mut obj);
    match obj {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `{"field": {"before": …, "after": …}}` for each top-level field that
/// differs (a missing side is absent from its object). A create lists
/// the fields set away from their defaults, a delete the same of the job
/// that went.
pub fn diff(before: Option<&Job>, after: Option<&Job>) -> Value {
    let one_side = |side: &str, job: &Job| {
        let mut out = Map::new();
        for (k, v) in set_fields(job) {
            let mut change = Map::new();
            change.insert(side.into(), v);
            out.insert(k, Value::Object(change));
        }
        Value::Object(out)
    };
    let (before, after) = match (before, after) {
        (None, None) => return Value::Object(Map::new()),
        (None, Some(a)) => return one_side("after", a),
        (Some(b), None) => return one_side("before", b),
        (Some(b), Some(a)) => (b, a),
    };
    let mut b = masked(before);
    let a = masked(after);
    let mut out = Map::new();
    for (k, y) in a {
        let x = b.remove(&k);
        if x.as_ref() == Some(&y) {
            continue;
        }
        let mut change = Map::new();
        if let Some(x) = x {
            change.insert("before".into(), x);
        }
        change.insert("after".into(), y);
        out.insert(k, Value::Object(change));
    }
    for (k, x) in b {
        let mut change = Map::new();
        change.insert("before".into(), x);
        out.insert(k, Value::Object(change));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_only_changes_listed() {
        let mut a = Job::new("x", "true");
        a.job_type = kala_job::JobType::Remote;
        let rp = kala_job::RemoteProperties {
            url: "https://user:pw@example.com/hook?key=abc".into(),
            headers: Some(
                [
                    (
                        "Authorization".to_string(),
                        vec!["Bearer s3cret".to_string()],
                    ),
                    ("Accept".to_string(), vec!["text/plain".to_string()]),
                ]
                .into_iter()
                .collect(),
            ),
            ..kala_job::RemoteProperties::default()
        };
        a.remote_properties = rp.shared();
        let created = diff(None, Some(&a));
        let text = created.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains(":pw@") && !text.contains("key=abc"),
            "{text}"
        );
        assert!(text.contains("text/plain"), "{text}");
        assert!(created["name"]["after"] == "x" && created["name"].get("before").is_none());
        let mut b = a.clone();
        b.disabled = true;
        b.metadata.success_count = 9;
        assert_eq!(
            diff(Some(&a), Some(&b)),
            json!({"disabled": {"before": false, "after": true}})
        );
    }
}

/// What an entry costs to make and encode, in release builds:
/// `cargo test --release -p kala-engine --lib audit_cost -- --ignored --nocapture`.
#[cfg(test)]
mod cost {
    use super::*;

    #[test]
    #[ignore = "a measurement, not a check"]
    fn audit_cost() {
        let mut job = Job::new("nightly report", "true");
        job.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
        job.owner = "team-a".into();
        let n = 20_000;
        let t = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            let d = diff(None, Some(&job));
            bytes += d.to_string().len();
        }
        let per = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            bytes += diff(None, Some(&job)).is_null() as usize;
        }
        let only = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let v = serde_json::to_value(JobOut::new(&job, None)).unwrap_or(Value::Null);
            bytes += v.is_null() as usize;
        }
        let to_value = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            bytes += serde_json::to_vec(&JobOut::new(&job, None))
                .map(|v| v.len())
                .unwrap_or(0);
        }
        let to_vec = t.elapsed() / n;
        eprintln!(
            "diff + to_string: {per:?}; diff alone: {only:?}; JobOut to_value: {to_value:?}; JobOut to_vec: {to_vec:?} ({bytes})"
        );
    }
}
