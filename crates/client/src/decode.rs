//! Between the wire and the job model: a job's definition as a create
//! body, and a job read back (Kala's keys, counters under `metadata`,
//! Go's zero time for "never") as a [`kala_job::Job`].

use jiff::Timestamp;
use kala_job::Job;
use kala_job::wire::{JobOut, ZERO_TIME, job_from_value};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{Error, JobStat, JobView};

/// Kala's time: RFC 3339, or the zero time for "never".
pub(crate) fn kala_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let s = String::deserialize(d)?;
    parse_time(&s).map_err(serde::de::Error::custom)
}

fn parse_time(s: &str) -> Result<Option<Timestamp>, String> {
    if s == ZERO_TIME || s.is_empty() {
        return Ok(None);
    }
    s.parse::<Timestamp>()
        .map(Some)
        .map_err(|e| format!("time {s:?}: {e}"))
}

/// The create body of `job`: its definition in Kala's keys (the server
/// ignores the state keys it also renders).
pub(crate) fn definition(job: &Job) -> Value {
    serde_json::to_value(JobOut::new(job, None)).unwrap_or_default()
}

fn time_at(v: &Value, key: &str) -> Result<Option<Timestamp>, Error> {
    match v.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => parse_time(s).map_err(|e| Error::Decode(format!("{key}: {e}"))),
    }
}

fn count_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A rendered job back into the model.
pub(crate) fn view(v: Value) -> Result<JobView, Error> {
    if !v.is_object() {
        return Err(Error::Decode("a job is not a JSON object".into()));
    }
    let mut job = job_from_value(v.clone()).map_err(|e| Error::Decode(format!("job: {e}")))?;
    job.id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Decode("job: no id".into()))?
        .to_string();
    let m = v.get("metadata").cloned().unwrap_or_default();
    job.metadata.success_count = count_at(&m, "success_count");
    job.metadata.error_count = count_at(&m, "error_count");
    job.metadata.number_of_finished_runs = count_at(&m, "number_of_finished_runs");
    job.metadata.last_success = time_at(&m, "last_success")?;
    job.metadata.last_error = time_at(&m, "last_error")?;
    job.metadata.last_attempted_run = time_at(&m, "last_attempted_run")?;
    job.next_run_at = time_at(&v, "next_run_at")?;
    job.is_done = v.get("is_done").and_then(Value::as_bool).unwrap_or(false);
    job.dependent_jobs = match v.get("dependent_jobs") {
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    };
    let stats = match v.get("stats") {
        Some(s @ Value::Array(_)) => {
            Some(Vec::<JobStat>::deserialize(s).map_err(|e| Error::Decode(format!("stats: {e}")))?)
        }
        _ => None,
    };
    Ok(JobView { job, stats })
}

/// `{"jobs": {id: job}}` into views, in id order.
pub(crate) fn job_map(v: Value) -> Result<Vec<JobView>, Error> {
    let Some(Value::Object(jobs)) = v.get("jobs").cloned() else {
        return Err(Error::Decode("no \"jobs\" object in the list".into()));
    };
    jobs.into_iter().map(|(_, j)| view(j)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_job_comes_back_as_the_same_job() {
        let mut job = Job::new("every field", "echo hi");
        job.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
        job.retries = 3;
        job.epsilon = "PT5S".into();
        job.time_zone = "Europe/Berlin".into();
        job.overlap = kala_job::Overlap::Skip;
        job.parent_jobs = Some(vec!["p".into()]);
        job.dependent_jobs = Some(vec!["c".into()]);
        job.metadata.success_count = 4;
        job.metadata.last_success = Some("2030-01-01T00:00:00Z".parse().unwrap());
        job.next_run_at = Some("2030-01-01T01:00:00Z".parse().unwrap());
        let back = view(definition(&job)).unwrap().job;
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
        assert_eq!(parse_time(ZERO_TIME), Ok(None));
        assert!(parse_time("yesterday").is_err());
        assert!(view(serde_json::json!([1])).is_err());
    }
}
