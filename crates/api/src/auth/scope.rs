//! Job-level rights, checked by the handlers: a token limited to owners
//! sees and changes only their jobs (a job of another owner answers 404,
//! as a missing one: its existence is not told), creates jobs only for
//! them (403 naming the owner), and cannot delete every job. Jobs that
//! run local commands need `--allow-commands`' role (admin by default).
//!
//! Owns: [`visible`], [`check_create`], [`check_delete`],
//! [`check_delete_all`].

use kala_engine::EngineError;
use kala_job::{Job, JobType};

use super::{Principal, forbidden};
use crate::AppState;
use crate::error::ApiError;

fn not_found(id: &str) -> ApiError {
    EngineError::NotFound(id.to_string()).into()
}

/// Ok if the caller may see job `id` (which exists); 404 otherwise.
pub(crate) fn visible(s: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    if p.owners.is_none() {
        return Ok(());
    }
    match s.engine.get(id) {
        Some(job) if p.may_own(&job.owner) => Ok(()),
        _ => Err(not_found(id)),
    }
}

/// A create's rights: the owner (filled in for a token of one owner),
/// the jobs it names (parents, on-failure job), a local command.
pub(crate) fn check_create(s: &AppState, p: &Principal, job: &mut Job) -> Result<(), ApiError> {
    if job.job_type == JobType::Local && p.role < s.config.allow_commands {
        return Err(forbidden(format!(
            "type: jobs that run a local command (type 0) need the {} role; {} has {} (the server's --allow-commands)",
            s.config.allow_commands, p.name, p.role
        )));
    }
    let Some(owners) = &p.owners else {
        return Ok(());
    };
    if job.owner.is_empty() {
        match owners.as_ref() {
            [one] => job.owner.clone_from(one),
            many => {
                return Err(forbidden(format!(
                    "owner: {} may create jobs only for {}; name one in \"owner\"",
                    p.name,
                    many.join(", ")
                )));
            }
        }
    }
    if !p.may_own(&job.owner) {
        return Err(forbidden(format!(
            "owner: {} may not create jobs for owner {:?} (only for {})",
            p.name,
            job.owner,
            owners.join(", ")
        )));
    }
    // A job it may not see is, to it, a job that does not exist.
    for named in job
        .parent_jobs
        .iter()
        .flatten()
        .chain(Some(&job.on_failure_job).filter(|j| !j.is_empty()))
    {
        if s.engine.get(named).is_some_and(|j| !p.may_own(&j.owner)) {
            return Err(ApiError::bad_request(format!(
                "parent_jobs: no job with id {named}"
            )));
        }
    }
    Ok(())
}

/// A delete's rights: the job and every job deleted with it (the
/// children it leaves without a parent, as the engine's own
/// `plan_delete` finds them) must be the caller's to change.
pub(crate) fn check_delete(s: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    visible(s, p, id)?;
    if p.owners.is_none() {
        return Ok(());
    }
    let lookup = |x: &str| s.engine.get(x).map(|j| (*j).clone());
    let Some(plan) = kala_job::graph::plan_delete(id, lookup) else {
        return Err(not_found(id));
    };
    for gone in plan.deleted.iter().filter(|g| g.as_str() != id) {
        if let Some(job) = s.engine.get(gone)
            && !p.may_own(&job.owner)
        {
            return Err(forbidden(format!(
                "delete: job {id} would delete its dependent job {gone} of owner {:?}, which {} may not delete",
                job.owner, p.name
            )));
        }
    }
    Ok(())
}

/// Deleting every job is for callers not limited to owners.
pub(crate) fn check_delete_all(p: &Principal) -> Result<(), ApiError> {
    match &p.owners {
        Some(owners) => Err(forbidden(format!(
            "delete all: {} is limited to owners {} and may not delete every job",
            p.name,
            owners.join(", ")
        ))),
        None => Ok(()),
    }
}
