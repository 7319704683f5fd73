//! Output: a job, its stats and the app stats as Kala renders them.
//!
//! Owns: [`JobOut`], [`StatOut`], [`AppStats`] and the time format.
//! Must not: decode anything (that is `input`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Serialize, Serializer};

use crate::{Job, Overlap, RunRecord};

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

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Serialize)]
pub struct MetadataOut {
    pub success_count: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_time")]
    pub last_success: Option<Timestamp>,
    pub error_count: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_time")]
    pub last_error: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_time")]
    pub last_attempted_run: Option<Timestamp>,
    pub number_of_finished_runs: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Serialize)]
pub struct RemoteOut<'a> {
    pub url: &'a str,
    pub method: &'a str,
    pub body: &'a str,
    pub headers: &'a Option<BTreeMap<String, Vec<String>>>,
    pub timeout: i64,
    pub expected_response_codes: &'a Option<Vec<u16>>,
}

/// A job exactly as Kala renders it: Kala's keys in Kala's order, the run
/// counters under `metadata` only. kala's own fields appear only when the
/// job uses them (a time zone, timeout or retry delay that was set, an
/// overlap other than `allow`), so a job made of Kala's fields renders
/// with exactly Kala's keys.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
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
    // Extensions, only when used.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub time_zone: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub timeout: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub retry_delay: &'a str,
    #[serde(skip_serializing_if = "is_allow")]
    pub overlap: Overlap,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub notify: &'a [crate::NotifyTarget],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<&'a crate::Publish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_on: Option<&'a crate::RunOn>,
}

fn is_allow(o: &Overlap) -> bool {
    *o == Overlap::default()
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
            time_zone: &job.time_zone,
            timeout: &job.timeout,
            retry_delay: &job.retry_delay,
            overlap: job.overlap,
            notify: &job.notify,
            publish: job.publish.as_deref(),
            run_on: job.run_on.as_deref(),
        }
    }
}

/// A run as Kala's JobStat (snake_case only, as Kala sends it; the
/// README's `JobId`-style names are a documentation error of Kala's).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Serialize)]
pub struct StatOut<'a> {
    pub job_id: &'a str,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_ts")]
    pub ran_at: Timestamp,
    pub number_of_retries: u64,
    pub success: bool,
    pub execution_duration: u64,
}

impl<'a> StatOut<'a> {
    pub fn new(r: &'a RunRecord) -> StatOut<'a> {
        StatOut {
            job_id: &r.job_id,
            ran_at: r.ran_at,
            number_of_retries: r.number_of_retries,
            success: r.success(),
            execution_duration: r.execution_duration,
        }
    }
}

/// Kala's app-level stats (snake_case only, as Kala sends them).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppStats {
    pub active_jobs: u64,
    pub disabled_jobs: u64,
    pub jobs: u64,
    pub error_count: u64,
    pub success_count: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_time")]
    pub next_run_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_time")]
    pub last_attempted_run: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    #[serde(serialize_with = "ser_time")]
    pub created: Option<Timestamp>,
}
