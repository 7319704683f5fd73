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
use kala_store::{AuditDiff, AuditEntry};
use serde_json::{Map, Value, json};

use super::fields::for_each_field;

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

/// The JSON text of each field of a job with every field at its
/// default, in the order a job's JSON has them.
fn blank() -> &'static [(String, String)] {
    static BLANK: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    BLANK.get_or_init(|| {
        let mut fields = Vec::new();
        let listed = for_each_field(
            &JobOut::new(&Job::new("", ""), None),
            |_| true,
            |k, v| fields.push((k.to_string(), v.to_string())),
        );
        if listed.is_err() {
            fields.clear();
        }
        fields
    })
}

/// Whether field `k` of a job's JSON has the text `v` it has in a blank
/// job. `at` follows the blank job's fields: a job's JSON has its fields
/// in the same order, so each lookup starts where the last one ended.
fn is_blank(blank: &[(String, String)], at: &mut usize, k: &str, v: &str) -> bool {
    let found = blank[*at..]
        .iter()
        .position(|(b, _)| b == k)
        .map(|i| *at + i)
        .or_else(|| blank.iter().position(|(b, _)| b == k));
    match found {
        Some(i) => {
            *at = i + 1;
            blank[i].1 == v
        }
        None => false,
    }
}

/// Top-level fields whose values may hold secrets ([`mask`]).
const MAY_HOLD_SECRETS: [&str; 3] = ["remote_properties", "publish", "notify"];

/// `{"field": {side: value}, …}` for the fields of a job set away from
/// their defaults (and its id and name), masked, then `extra` fields:
/// what a create's or a delete's diff shows. Written as text field by
/// field from the job ([`for_each_field`]): the run counters are never
/// rendered, nothing is parsed back but the fields that may hold secrets
/// (to mask them); rendering the whole job and parsing it again cost a
/// create ~1 µs more, and a tree of the diff ~10 µs.
fn one_side(side: &str, job: &Job, extra: &[(&str, &str)]) -> AuditDiff {
    let (blank, mut at) = (blank(), 0);
    let mut out = String::with_capacity(512);
    out.push('{');
    let mut first = true;
    // Field names are Rust identifiers (or renamed to plain words):
    // written as they are.
    let mut field = |out: &mut String, k: &str, v: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(k);
        out.push_str("\":{\"");
        out.push_str(side);
        out.push_str("\":");
        out.push_str(v);
        out.push('}');
    };
    let listed = for_each_field(
        &JobOut::new(job, None),
        |k| !VOLATILE.contains(&k),
        |k, v| {
            if !matches!(k, "id" | "name") && is_blank(blank, &mut at, k, v) {
                return;
            }
            if MAY_HOLD_SECRETS.contains(&k) {
                let Ok(value) = serde_json::from_str::<Value>(v) else {
                    return;
                };
                let mut obj = Value::Object(Map::from_iter([(k.to_string(), value)]));
                mask(&mut obj);
                field(&mut out, k, &obj[k].to_string());
            } else {
                field(&mut out, k, v);
            }
        },
    );
    if listed.is_err() {
        return AuditDiff::default();
    }
    for (k, v) in extra {
        if !first {
            out.push(',');
        }
        first = false;
        push_json_str(&mut out, k);
        out.push(':');
        push_json_str(&mut out, v);
    }
    out.push('}');
    AuditDiff::from_json(out).unwrap_or_default()
}

/// `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

/// A delete's diff: the deleted job's set fields as `before`, and
/// `deleted_with` naming the job whose delete took it along (a child).
pub(crate) fn deleted(job: &Job, with: Option<&str>) -> AuditDiff {
    match with {
        Some(w) => one_side("before", job, &[("deleted_with", w)]),
        None => one_side("before", job, &[]),
    }
}

/// `{"field": {"before": …, "after": …}}` for each top-level field that
/// differs (a missing side is absent from its object). A create lists
/// the fields set away from their defaults, a delete the same of the job
/// that went.
pub fn diff(before: Option<&Job>, after: Option<&Job>) -> AuditDiff {
    let (before, after) = match (before, after) {
        (None, None) => return AuditDiff::default(),
        (None, Some(a)) => return one_side("after", a, &[]),
        (Some(b), None) => return one_side("before", b, &[]),
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
    AuditDiff::from_value(&Value::Object(out))
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
