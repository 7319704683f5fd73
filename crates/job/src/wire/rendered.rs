//! A job as Kala renders it (the API's answer, and what Kala's Consul and
//! Redis stores keep) read back into the model: the definition through the
//! input decoder, then the server-controlled keys (id, counters under
//! `metadata`, `next_run_at`, `is_done`, `dependent_jobs`) taken as they
//! are, with Go's zero time as "never".
//!
//! Owns: [`job_from_rendered`], [`parse_kala_time`]. Used by kala-client
//! and by stores that load what Kala wrote.

use jiff::Timestamp;
use serde_json::Value;

use super::ZERO_TIME;
use super::input::job_from_value;
use crate::{Job, JobError};

/// Kala's time: RFC 3339, or the zero time (or nothing) for "never".
pub fn parse_kala_time(s: &str) -> Result<Option<Timestamp>, String> {
    if s == ZERO_TIME || s.is_empty() {
        return Ok(None);
    }
    s.parse::<Timestamp>()
        .map(Some)
        .map_err(|e| format!("time {s:?}: {e}"))
}

fn time_at(v: &Value, field: &str, key: &str) -> Result<Option<Timestamp>, JobError> {
    match v.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => parse_kala_time(s).map_err(|e| JobError::new(field, e)),
    }
}

fn count_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A rendered job (Kala's keys) as a [`Job`] with its state.
pub fn job_from_rendered(v: Value) -> Result<Job, JobError> {
    if !v.is_object() {
        return Err(JobError::new("job", "is not a JSON object"));
    }
    let mut job = job_from_value(v.clone())?;
    job.id = v
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| JobError::new("id", "is missing"))?
        .to_string();
    let m = v.get("metadata").cloned().unwrap_or_default();
    job.metadata.success_count = count_at(&m, "success_count");
    job.metadata.error_count = count_at(&m, "error_count");
    job.metadata.number_of_finished_runs = count_at(&m, "number_of_finished_runs");
    job.metadata.last_success = time_at(&m, "metadata.last_success", "last_success")?;
    job.metadata.last_error = time_at(&m, "metadata.last_error", "last_error")?;
    job.metadata.last_attempted_run =
        time_at(&m, "metadata.last_attempted_run", "last_attempted_run")?;
    job.next_run_at = time_at(&v, "next_run_at", "next_run_at")?;
    job.is_done = v.get("is_done").and_then(Value::as_bool).unwrap_or(false);
    job.dependent_jobs = match v.get("dependent_jobs") {
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    };
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::JobOut;

    #[test]
    fn a_rendered_job_comes_back_as_the_same_job() {
        let mut job = Job::new("every field", "echo hi");
        job.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
        job.retries = 3;
        job.epsilon = "PT5S".into();
        job.time_zone = "Europe/Berlin".into();
        job.overlap = crate::Overlap::Skip;
        job.parent_jobs = Some(vec!["p".into()]);
        job.dependent_jobs = Some(vec!["c".into()]);
        job.metadata.success_count = 4;
        job.metadata.last_success = Some("2030-01-01T00:00:00Z".parse().unwrap());
        job.next_run_at = Some("2030-01-01T01:00:00Z".parse().unwrap());
        let rendered = serde_json::to_value(JobOut::new(&job, None)).unwrap();
        let back = job_from_rendered(rendered).unwrap();
        assert_eq!(back.id, job.id);
        assert_eq!(back.schedule, job.schedule);
        assert_eq!(back.time_zone, job.time_zone);
        assert_eq!(back.overlap, job.overlap);
        assert_eq!(back.parent_jobs, job.parent_jobs);
        assert_eq!(back.dependent_jobs, job.dependent_jobs);
        assert_eq!(back.metadata, job.metadata);
        assert_eq!(back.next_run_at, job.next_run_at);
    }

    #[test]
    fn zero_time_is_never_and_garbage_is_an_error() {
        assert_eq!(parse_kala_time(ZERO_TIME), Ok(None));
        assert!(parse_kala_time("yesterday").is_err());
        assert!(job_from_rendered(serde_json::json!([1])).is_err());
        assert!(job_from_rendered(serde_json::json!({"name": "x", "command": "y"})).is_err());
    }
}
