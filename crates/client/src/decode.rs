//! Between the wire and the job model: a job's definition as a create
//! body, and a job read back (Kala's keys, counters under `metadata`,
//! Go's zero time for "never") as a [`kala_job::Job`].

use jiff::Timestamp;
use kala_job::Job;
use kala_job::wire::{JobOut, job_from_rendered, parse_kala_time};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{Error, JobStat, JobView};

/// Kala's time: RFC 3339, or the zero time for "never".
pub(crate) fn kala_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let s = String::deserialize(d)?;
    parse_kala_time(&s).map_err(serde::de::Error::custom)
}

/// The create body of `job`: its definition in Kala's keys (the server
/// ignores the state keys it also renders).
pub(crate) fn definition(job: &Job) -> Value {
    serde_json::to_value(JobOut::new(job, None)).unwrap_or_default()
}

/// A rendered job back into the model, with its stats.
pub(crate) fn view(v: Value) -> Result<JobView, Error> {
    let stats = match v.get("stats") {
        Some(s @ Value::Array(_)) => {
            Some(Vec::<JobStat>::deserialize(s).map_err(|e| Error::Decode(format!("stats: {e}")))?)
        }
        _ => None,
    };
    let job = job_from_rendered(v).map_err(|e| Error::Decode(format!("job: {e}")))?;
    Ok(JobView { job, stats })
}

/// `{"jobs": {id: job}}` into views, in id order.
pub(crate) fn job_map(v: Value) -> Result<Vec<JobView>, Error> {
    let Some(Value::Object(jobs)) = v.get("jobs").cloned() else {
        return Err(Error::Decode("no \"jobs\" object in the list".into()));
    };
    jobs.into_iter().map(|(_, j)| view(j)).collect()
}
