//! # kala-job
//!
//! The job as Kala's API sees it, and everything that can be said about a
//! job without running it: defaults, validation, the wire format (Kala's
//! exact JSON, see [`wire`]), and the parent/child dependency graph
//! ([`graph`]). No I/O happens here.

pub mod graph;
pub mod notify;
pub mod packed;
pub mod placement;
pub mod publish;
mod remote;
mod timing;
pub mod wire;

use jiff::Timestamp;
use kala_schedule::{Schedule, Zone};
use serde::{Deserialize, Serialize};

pub use kala_schedule;
pub use notify::{NotifyOn, NotifyTarget};
pub use placement::RunOn;
pub use publish::Publish;
pub use remote::RemoteProperties;
use remote::shared_remote;
pub use timing::{Plan, Timing};

/// A job id: a UUID string for jobs created over the API.
pub type JobId = String;

/// 0 = local command, 1 = remote HTTP request (Kala's numbering), plus
/// in-process handlers for programs that embed the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum JobType {
    #[default]
    Local,
    Remote,
    /// Runs a handler registered with the engine under `command`.
    InProcess,
    /// Publishes a message to a named broker (kala's type 3, see
    /// [`Publish`]).
    Publish,
}

impl JobType {
    pub fn code(self) -> i64 {
        match self {
            JobType::Local => 0,
            JobType::Remote => 1,
            JobType::InProcess => 2,
            JobType::Publish => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<JobType> {
        match code {
            0 => Some(JobType::Local),
            1 => Some(JobType::Remote),
            2 => Some(JobType::InProcess),
            3 => Some(JobType::Publish),
            _ => None,
        }
    }
}

/// What to do when a run falls due while the previous run of the same job
/// is still going.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Start the new run anyway.
    #[default]
    Allow,
    /// Skip it (recorded as a skipped run).
    Skip,
}

/// Run counters (Kala's `metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub success_count: u64,
    pub last_success: Option<Timestamp>,
    /// Every failed attempt, retries included.
    pub error_count: u64,
    pub last_error: Option<Timestamp>,
    pub last_attempted_run: Option<Timestamp>,
    pub number_of_finished_runs: u64,
}

/// A job: its definition (what the user asked for) and its state (what
/// the scheduler has done with it). Both are persisted together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    pub command: String,
    pub owner: String,
    pub disabled: bool,
    /// Children, in the order they were created (FIFO). `None` until the
    /// first child is linked, `Some([])` after the last one is removed.
    pub dependent_jobs: Option<Vec<JobId>>,
    pub parent_jobs: Option<Vec<JobId>>,
    pub on_failure_job: String,
    pub schedule: String,
    pub retries: u64,
    pub epsilon: String,
    pub template_delimiters: String,
    pub resume_at_next_scheduled_time: bool,
    pub job_type: JobType,
    /// Shared: every job without remote settings points at one empty
    /// value (8 bytes each instead of 136); change it with
    /// `Arc::make_mut`.
    #[serde(deserialize_with = "shared_remote")]
    pub remote_properties: std::sync::Arc<RemoteProperties>,
    // Extensions past Kala.
    /// IANA zone for zoneless starts and cron expressions.
    #[serde(default)]
    pub time_zone: String,
    /// ISO 8601 duration; a local run is killed (its process group) after it.
    #[serde(default)]
    pub timeout: String,
    /// ISO 8601 duration before the first retry, doubled for each next one.
    #[serde(default)]
    pub retry_delay: String,
    #[serde(default)]
    pub overlap: Overlap,
    /// Who hears about this job's runs (see [`NotifyTarget`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,
    /// A publish job's message (type 3); `None` for every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Box<Publish>>,
    /// Which instances run the job's points (by their tags); `None`: the
    /// instance holding the job's partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_on: Option<Box<RunOn>>,

    // State.
    pub metadata: Metadata,
    pub next_run_at: Option<Timestamp>,
    pub is_done: bool,
    /// Scheduled runs consumed toward the schedule's repeat count.
    #[serde(default)]
    pub scheduled_runs: u64,
    /// The schedule point the last scheduled run was for.
    #[serde(default)]
    pub last_scheduled_at: Option<Timestamp>,
    /// When the job was last disabled (the first disable of a stretch);
    /// `None` if never (a job created disabled counts from `created_at`).
    /// Points before it fell while the job was enabled: each gets a run
    /// or a record; points from it to `enabled_at` get Kala's one
    /// catch-up run. See [`Job::disabled_stretch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
    /// When the job was enabled after `disabled_at`; `None` while it is
    /// disabled (or was never disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A validation failure, naming the field: `schedule: start … is in the past`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct JobError {
    pub field: String,
    pub message: String,
}

impl JobError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Job {
    /// A job with Kala's defaults and a fresh v4 UUID.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Job {
        Job {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            command: command.into(),
            owner: String::new(),
            disabled: false,
            dependent_jobs: None,
            parent_jobs: None,
            on_failure_job: String::new(),
            schedule: String::new(),
            retries: 0,
            epsilon: String::new(),
            template_delimiters: String::new(),
            resume_at_next_scheduled_time: false,
            job_type: JobType::Local,
            remote_properties: RemoteProperties::shared_default(),
            time_zone: String::new(),
            timeout: String::new(),
            retry_delay: String::new(),
            overlap: Overlap::Allow,
            notify: Vec::new(),
            publish: None,
            run_on: None,
            metadata: Metadata::default(),
            next_run_at: None,
            is_done: false,
            scheduled_runs: 0,
            last_scheduled_at: None,
            disabled_at: None,
            enabled_at: None,
            created_at: Timestamp::now(),
        }
    }

    /// Disables (`true`) or enables the job at `at`, keeping its last
    /// disabled stretch (see [`Job::disabled_stretch`]). Disabling a
    /// disabled job, or enabling an enabled one, changes nothing.
    pub fn set_disabled(&mut self, disabled: bool, at: Timestamp) {
        match (self.disabled, disabled) {
            (false, true) => {
                self.disabled_at = Some(at);
                self.enabled_at = None;
            }
            (true, false) => {
                let from = self.disabled_at.unwrap_or(self.created_at);
                self.disabled_at = Some(from);
                // Instances' clocks differ a little: never before it began.
                self.enabled_at = Some(at.max(from));
            }
            _ => {}
        }
        self.disabled = disabled;
    }

    /// The job's last disabled stretch: from when it was disabled to when
    /// it was enabled again (`None` while it is still disabled). A job
    /// created disabled counts from its creation. `None`: never disabled.
    pub fn disabled_stretch(&self) -> Option<(Timestamp, Option<Timestamp>)> {
        stretch(
            self.disabled,
            self.disabled_at,
            self.enabled_at,
            self.created_at,
        )
    }

    /// A child of other jobs: it runs after each successful parent run.
    pub fn is_child(&self) -> bool {
        self.parent_jobs.as_ref().is_some_and(|p| !p.is_empty())
    }

    pub fn children(&self) -> &[JobId] {
        self.dependent_jobs.as_deref().unwrap_or(&[])
    }

    pub fn parents(&self) -> &[JobId] {
        self.parent_jobs.as_deref().unwrap_or(&[])
    }

    /// The job's timing fields, borrowed.
    pub fn timing(&self) -> Timing<'_> {
        Timing {
            schedule: &self.schedule,
            time_zone: &self.time_zone,
            epsilon: &self.epsilon,
            timeout: &self.timeout,
            retry_delay: &self.retry_delay,
        }
    }

    /// The job's zone, if it names one.
    pub fn zone(&self) -> Result<Option<Zone>, JobError> {
        self.timing().zone()
    }

    /// The parsed schedule; `None` for one-off jobs and children.
    pub fn parsed_schedule(&self) -> Result<Option<Schedule>, JobError> {
        self.timing().parsed_schedule()
    }

    /// Parses every timing field (schedule in its zone, epsilon, timeout,
    /// retry delay) into what the engine schedules and runs by. A field
    /// that does not parse is an error naming it.
    pub fn plan(&self) -> Result<Plan, JobError> {
        self.timing().plan()
    }

    /// Checks everything that can be checked without other jobs and
    /// returns the job's [`Plan`]. `now` is used for the past-start rule
    /// (creation only; a reload skips it).
    pub fn validate(&self, now: Option<Timestamp>) -> Result<Plan, JobError> {
        if self.name.trim().is_empty() {
            return Err(JobError::new("name", "is required"));
        }
        match self.job_type {
            JobType::Local | JobType::InProcess => {
                if self.command.trim().is_empty() {
                    return Err(JobError::new(
                        "command",
                        "is required for a local job (type 0)",
                    ));
                }
            }
            JobType::Remote => {
                let url = self.remote_properties.url.trim();
                if url.is_empty() {
                    return Err(JobError::new(
                        "remote_properties.url",
                        "is required for a remote job (type 1)",
                    ));
                }
                if self.template_delimiters.is_empty()
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    return Err(JobError::new(
                        "remote_properties.url",
                        format!("{url:?} must start with http:// or https://"),
                    ));
                }
                let m = &self.remote_properties.method;
                if !m.bytes().all(|c| c.is_ascii_alphabetic()) {
                    return Err(JobError::new(
                        "remote_properties.method",
                        format!("{m:?} is not an HTTP method"),
                    ));
                }
                if let Some(codes) = &self.remote_properties.expected_response_codes
                    && let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c))
                {
                    return Err(JobError::new(
                        "remote_properties.expected_response_codes",
                        format!("{bad} is not an HTTP status code"),
                    ));
                }
            }
            JobType::Publish => match &self.publish {
                Some(p) => p.validate()?,
                None => {
                    return Err(JobError::new(
                        "publish",
                        "is required for a publish job (type 3): {\"broker\": …, \"to\": …}",
                    ));
                }
            },
        }
        if let Some(r) = &self.run_on {
            r.validate()?;
        }
        if self.publish.is_some() && self.job_type != JobType::Publish {
            return Err(JobError::new(
                "publish",
                "is only for a publish job (type 3)",
            ));
        }
        if !self.template_delimiters.is_empty() {
            let parts: Vec<&str> = self.template_delimiters.split(' ').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(JobError::new(
                    "TemplateDelimiters",
                    "must be two delimiters separated by one space, like \"{{ }}\"",
                ));
            }
        }
        notify::validate_targets("notify", &self.notify)?;
        let plan = self.plan()?;
        if let Some(cadence) = &plan.cadence
            && let (Some(now), Some(start)) = (now, cadence.start())
            && !self.is_child()
            && start < now
        {
            return Err(JobError::new(
                "schedule",
                format!("start {start} is in the past (now is {now})"),
            ));
        }
        Ok(plan)
    }
}

/// Why a run happened.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Parent,
    OnFailure,
    /// A one-off (empty schedule) job's single run.
    Once,
}

/// How a run ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Not attempted: later than `epsilon`, or overlapping with `overlap: skip`.
    Skipped,
    /// Begun and never finished: the server stopped (crash, kill, power
    /// loss) while it ran. Recorded at the next start from the run journal;
    /// its schedule point is not run again.
    Interrupted,
}

/// One run of a job (Kala's JobStat, with more detail).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub job_id: JobId,
    /// When the run began (wall clock).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub ran_at: Timestamp,
    /// The schedule point this run was for, if it came from the schedule.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub scheduled_at: Option<Timestamp>,
    pub trigger: Trigger,
    pub outcome: Outcome,
    /// Retries used.
    pub number_of_retries: u64,
    /// Nanoseconds from `ran_at` to the end of the last attempt.
    pub execution_duration: u64,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The tail of the combined output of the last attempt.
    pub output: String,
    /// The run's id: the `KALA_RUN_ID` its command saw (`Kala-Run-Id` of
    /// a remote call), the key of its journal entry, and what makes
    /// writing its record idempotent. A kala extension: absent from
    /// records written before it existed, and from Kala's stats shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The instance (`--node-name`) that ran it, or that recorded it
    /// (skipped, interrupted). A kala extension, as `run_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl RunRecord {
    pub fn success(&self) -> bool {
        self.outcome == Outcome::Succeeded
    }
}

#[cfg(test)]
mod tests;

/// [`Job::disabled_stretch`] from the fields it reads (shared with the
/// packed form's view).
pub fn stretch(
    disabled: bool,
    disabled_at: Option<Timestamp>,
    enabled_at: Option<Timestamp>,
    created_at: Timestamp,
) -> Option<(Timestamp, Option<Timestamp>)> {
    let from = disabled_at.unwrap_or(created_at);
    if disabled {
        Some((from, None))
    } else {
        enabled_at.map(|e| (from, Some(e)))
    }
}
