//! A compact binary form of a [`Job`]: what the engine keeps in memory for
//! each job (one allocation, ~150 bytes for a typical job instead of
//! ~1 KB as a [`Job`] with its strings), and a record format for stores.
//!
//! Layout (all integers LEB128 varints, signed ones zigzag-encoded; strings
//! are a length and UTF-8 bytes; ids are 16 bytes for a canonical
//! lower-case UUID, else a string):
//!
//! ```text
//! id, flags: u16, name, command, owner, [dependent_jobs], [parent_jobs],
//! on_failure_job, schedule, retries, epsilon, template_delimiters,
//! job_type: u8, [remote_properties: JSON], time_zone, timeout,
//! retry_delay, overlap: u8, [notify: JSON], [publish: JSON], [run_on: JSON], success_count,
//! [last_success], error_count, [last_error], [last_attempted_run],
//! number_of_finished_runs, [next_run_at], scheduled_runs,
//! [last_scheduled_at], created_at, [disabled_at], [enabled_at]
//! ```
//!
//! `[x]`: present only when its flag is set. The id comes first so that
//! [`id_prefix`] finds it without decoding the rest. Decoding checks
//! every length and every string, so damaged bytes are an error, never a
//! panic; it is not a checksum (stores frame records with one).

use std::sync::Arc;

use jiff::Timestamp;

use crate::{Job, JobId, JobType, Metadata, NotifyTarget, Overlap, RemoteProperties};
use bytes::{Reader, put_id, put_json, put_opt_time, put_str, put_time, put_uint};

mod bytes;
#[cfg(test)]
mod tests;

/// Why bytes are not a packed job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packed job: {0}")]
pub struct DecodeError(String);

fn err(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

const DISABLED: u16 = 1;
const RESUME: u16 = 1 << 1;
const IS_DONE: u16 = 1 << 2;
const DEPENDENT: u16 = 1 << 3;
const PARENTS: u16 = 1 << 4;
const REMOTE: u16 = 1 << 5;
const NOTIFY: u16 = 1 << 6;
const LAST_SUCCESS: u16 = 1 << 7;
const LAST_ERROR: u16 = 1 << 8;
const LAST_ATTEMPT: u16 = 1 << 9;
const NEXT_RUN: u16 = 1 << 10;
const LAST_SCHEDULED: u16 = 1 << 11;
const DISABLED_AT: u16 = 1 << 12;
const ENABLED_AT: u16 = 1 << 13;
const PUBLISH: u16 = 1 << 14;
// All 16 flag bits are in use: a next optional field needs a new
// format (a version byte), not a flag.
const RUN_ON: u16 = 1 << 15;

const ID_UUID: u8 = 0;
const ID_TEXT: u8 = 1;

/// `job` packed.
pub fn encode(job: &Job) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + job.name.len() + job.command.len() + job.schedule.len());
    encode_into(job, &mut out);
    out
}

/// `job` packed, appended to `out`.
pub fn encode_into(job: &Job, out: &mut Vec<u8>) {
    let m = &job.metadata;
    let remote = *job.remote_properties != RemoteProperties::default();
    let flags = [
        (job.disabled, DISABLED),
        (job.resume_at_next_scheduled_time, RESUME),
        (job.is_done, IS_DONE),
        (job.dependent_jobs.is_some(), DEPENDENT),
        (job.parent_jobs.is_some(), PARENTS),
        (remote, REMOTE),
        (!job.notify.is_empty(), NOTIFY),
        (job.publish.is_some(), PUBLISH),
        (job.run_on.is_some(), RUN_ON),
        (m.last_success.is_some(), LAST_SUCCESS),
        (m.last_error.is_some(), LAST_ERROR),
        (m.last_attempted_run.is_some(), LAST_ATTEMPT),
        (job.next_run_at.is_some(), NEXT_RUN),
        (job.last_scheduled_at.is_some(), LAST_SCHEDULED),
        (job.disabled_at.is_some(), DISABLED_AT),
        (job.enabled_at.is_some(), ENABLED_AT),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0u16, |f, (_, bit)| f | bit);
    put_id(out, &job.id);
    out.extend_from_slice(&flags.to_le_bytes());
    put_str(out, &job.name);
    put_str(out, &job.command);
    put_str(out, &job.owner);
    for ids in [&job.dependent_jobs, &job.parent_jobs]
        .into_iter()
        .flatten()
    {
        put_uint(out, ids.len() as u64);
        for id in ids {
            put_id(out, id);
        }
    }
    put_str(out, &job.on_failure_job);
    put_str(out, &job.schedule);
    put_uint(out, job.retries);
    put_str(out, &job.epsilon);
    put_str(out, &job.template_delimiters);
    out.push(match job.job_type {
        JobType::Local => 0,
        JobType::Remote => 1,
        JobType::InProcess => 2,
        JobType::Publish => 3,
    });
    if remote {
        put_json(out, &*job.remote_properties);
    }
    put_str(out, &job.time_zone);
    put_str(out, &job.timeout);
    put_str(out, &job.retry_delay);
    out.push(match job.overlap {
        Overlap::Allow => 0,
        Overlap::Skip => 1,
    });
    if !job.notify.is_empty() {
        put_json(out, &job.notify);
    }
    if let Some(p) = &job.publish {
        put_json(out, &**p);
    }
    if let Some(r) = &job.run_on {
        put_json(out, &**r);
    }
    put_uint(out, m.success_count);
    put_opt_time(out, m.last_success);
    put_uint(out, m.error_count);
    put_opt_time(out, m.last_error);
    put_opt_time(out, m.last_attempted_run);
    put_uint(out, m.number_of_finished_runs);
    put_opt_time(out, job.next_run_at);
    put_uint(out, job.scheduled_runs);
    put_opt_time(out, job.last_scheduled_at);
    put_time(out, job.created_at);
    put_opt_time(out, job.disabled_at);
    put_opt_time(out, job.enabled_at);
}

/// The job in `bytes` (all of them).
pub fn decode(bytes: &[u8]) -> Result<Job, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let id = r.id()?;
    let flags = u16::from_le_bytes([r.byte()?, r.byte()?]);
    let on = |bit: u16| flags & bit != 0;
    let name = r.string()?;
    let command = r.string()?;
    let owner = r.string()?;
    let dependent_jobs = if on(DEPENDENT) { Some(r.ids()?) } else { None };
    let parent_jobs = if on(PARENTS) { Some(r.ids()?) } else { None };
    let on_failure_job = r.string()?;
    let schedule = r.string()?;
    let retries = r.uint()?;
    let epsilon = r.string()?;
    let template_delimiters = r.string()?;
    let job_type = match r.byte()? {
        0 => JobType::Local,
        1 => JobType::Remote,
        2 => JobType::InProcess,
        3 => JobType::Publish,
        t => return Err(err(format!("unknown job type {t}"))),
    };
    let remote_properties = if on(REMOTE) {
        Arc::new(r.json::<RemoteProperties>()?)
    } else {
        RemoteProperties::shared_default()
    };
    let time_zone = r.string()?;
    let timeout = r.string()?;
    let retry_delay = r.string()?;
    let overlap = match r.byte()? {
        0 => Overlap::Allow,
        1 => Overlap::Skip,
        o => return Err(err(format!("unknown overlap {o}"))),
    };
    let notify = if on(NOTIFY) {
        r.json::<Vec<NotifyTarget>>()?
    } else {
        Vec::new()
    };
    let publish = if on(PUBLISH) {
        Some(Box::new(r.json::<crate::Publish>()?))
    } else {
        None
    };
    let run_on = if on(RUN_ON) {
        Some(Box::new(r.json::<crate::RunOn>()?))
    } else {
        None
    };
    let metadata = r.metadata(flags)?;
    let next_run_at = r.opt_time(on(NEXT_RUN))?;
    let scheduled_runs = r.uint()?;
    let last_scheduled_at = r.opt_time(on(LAST_SCHEDULED))?;
    let created_at = r.time()?;
    let disabled_at = r.opt_time(on(DISABLED_AT))?;
    let enabled_at = r.opt_time(on(ENABLED_AT))?;
    if r.at != bytes.len() {
        return Err(err(format!("{} bytes after the job", bytes.len() - r.at)));
    }
    Ok(Job {
        id,
        name,
        command,
        owner,
        disabled: on(DISABLED),
        dependent_jobs,
        parent_jobs,
        on_failure_job,
        schedule,
        retries,
        epsilon,
        template_delimiters,
        resume_at_next_scheduled_time: on(RESUME),
        job_type,
        remote_properties,
        time_zone,
        timeout,
        retry_delay,
        overlap,
        notify,
        publish,
        run_on,
        metadata,
        next_run_at,
        is_done: on(IS_DONE),
        scheduled_runs,
        last_scheduled_at,
        disabled_at,
        enabled_at,
        created_at,
    })
}

/// What scheduling reads of a packed job, borrowed from its bytes: enough
/// to parse its plan and compute its next run without decoding (or
/// allocating) the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<'a> {
    /// The id's packed bytes (see [`encode_id`]); [`decode_id`] gives
    /// the text.
    pub id: &'a [u8],
    pub disabled: bool,
    pub resume_at_next_scheduled_time: bool,
    pub is_done: bool,
    /// It has at least one parent.
    pub is_child: bool,
    pub timing: crate::Timing<'a>,
    pub metadata: Metadata,
    pub next_run_at: Option<Timestamp>,
    pub last_scheduled_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
    pub enabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// The [`View`] of a packed job (every byte is still checked).
pub fn view(bytes: &[u8]) -> Result<View<'_>, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.id_len()?;
    let id = r.take(n)?;
    let flags = u16::from_le_bytes([r.byte()?, r.byte()?]);
    let on = |bit: u16| flags & bit != 0;
    for _ in 0..3 {
        r.str()?;
    }
    let mut is_child = false;
    for list in [DEPENDENT, PARENTS] {
        if on(list) {
            let count = r.len()?;
            if list == PARENTS {
                is_child = count > 0;
            }
            for _ in 0..count {
                let n = r.id_len()?;
                r.take(n)?;
            }
        }
    }
    r.str()?;
    let schedule = r.str()?;
    r.uint()?;
    let epsilon = r.str()?;
    r.str()?;
    if r.byte()? > 3 {
        return Err(err("unknown job type"));
    }
    if on(REMOTE) {
        let n = r.len()?;
        r.take(n)?;
    }
    let time_zone = r.str()?;
    let timeout = r.str()?;
    let retry_delay = r.str()?;
    if r.byte()? > 1 {
        return Err(err("unknown overlap"));
    }
    if on(NOTIFY) {
        let n = r.len()?;
        r.take(n)?;
    }
    for bit in [PUBLISH, RUN_ON] {
        if on(bit) {
            let n = r.len()?;
            r.take(n)?;
        }
    }
    let metadata = r.metadata(flags)?;
    let next_run_at = r.opt_time(on(NEXT_RUN))?;
    r.uint()?;
    let last_scheduled_at = r.opt_time(on(LAST_SCHEDULED))?;
    let created_at = r.time()?;
    let disabled_at = r.opt_time(on(DISABLED_AT))?;
    let enabled_at = r.opt_time(on(ENABLED_AT))?;
    if r.at != bytes.len() {
        return Err(err(format!("{} bytes after the job", bytes.len() - r.at)));
    }
    Ok(View {
        id,
        disabled: on(DISABLED),
        resume_at_next_scheduled_time: on(RESUME),
        is_done: on(IS_DONE),
        is_child,
        timing: crate::Timing {
            schedule,
            time_zone,
            epsilon,
            timeout,
            retry_delay,
        },
        metadata,
        next_run_at,
        last_scheduled_at,
        disabled_at,
        enabled_at,
        created_at,
    })
}

/// Whether a packed job is disabled, and its counters, without decoding
/// its strings (for totals over every job).
pub fn decode_counters(bytes: &[u8]) -> Result<(bool, Metadata), DecodeError> {
    view(bytes).map(|v| (v.disabled, v.metadata))
}

/// The packed form of an id alone, as it starts a packed job: compare it
/// with [`id_prefix`] to find a job by id without decoding it.
pub fn encode_id(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    put_id(&mut out, id);
    out
}

/// The bytes of the id that starts a packed job (see [`encode_id`]);
/// empty if `bytes` does not start with one.
pub fn id_prefix(bytes: &[u8]) -> &[u8] {
    let mut r = Reader { bytes, at: 0 };
    match r.id_len() {
        Ok(n) => &bytes[..n],
        Err(_) => &[],
    }
}

/// The id of a packed job, decoding nothing else.
pub fn decode_id(bytes: &[u8]) -> Result<JobId, DecodeError> {
    Reader { bytes, at: 0 }.id()
}
