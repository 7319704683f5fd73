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
