//! The writer thread: every batch waiting in its queue goes into one
//! transaction and one commit (group commit); after an I/O error it
//! reopens the file and probes until commits succeed again.
//!
//! Owns: the queue's message types, `writer_loop`, the commit of a group,
//! run trimming and pruning. Must not: be called from async code except
//! through the queue.

use std::sync::mpsc;

use jiff::Timestamp;
use kala_store::{Claim, Result, Retention, StoreError};
use redb::{Database, ReadableTable, ReadableTableMetadata};
use tokio::sync::oneshot;

use crate::audit::AuditTables;
use crate::shared::{PROBE_EVERY, Shared, commit_error};
use crate::{CLAIMS, DUE, JOBS, NOTICES, OPEN_RUNS, PENDING, RUNS, backend};

/// The most batches folded into one commit.
const MAX_GROUP: usize = 4096;

/// A write already encoded, so the writer thread only touches tables.
pub(crate) struct Encoded {
    pub put: Vec<(String, Vec<u8>)>,
    pub delete: Vec<String>,
    pub runs: Vec<(String, i128, Vec<u8>)>,
    pub keep_runs: Option<usize>,
    /// Run journal entries: run id → framed entry.
    pub begin: Vec<(String, Vec<u8>)>,
    pub end: Vec<String>,
    /// Notices: (job id, notice id, next attempt in ns while pending,
    /// framed notice).
    pub notices: Vec<(String, String, Option<i128>, Vec<u8>)>,
    /// Audit entries: key → packed entry (`audit_record`).
    pub audit: Vec<(u128, Vec<u8>)>,
}

pub(crate) enum Op {
    Apply(Encoded),
    Prune(Retention, Timestamp),
    /// With the audit entries to write in the same commit.
    DeleteAll(Vec<(u128, Vec<u8>)>),
    Claim(Claim),
    PruneNotices(Timestamp),
    PruneAudit(Timestamp),
}

pub(crate) enum Reply {
    Done,
    Pruned(u64),
    Claimed(bool),
}

pub(crate) struct Msg {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Reply>>,
}

pub(crate) fn writer_loop(shared: &Shared, rx: mpsc::Receiver<Msg>) {
    loop {
        let failing = shared.problem().is_some();
        let first = if failing {
            match rx.recv_timeout(PROBE_EVERY) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        if failing {
            shared.reopen();
        }
        let Some(first) = first else {
            // Nobody wrote: see whether the file takes writes again.
            if shared.probe().is_ok() {
                shared.set_problem(None);
            }
            continue;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let outcome = match shared.current() {
            Some(db) => commit_group(&db, &group),
            None => Err(StoreError::Unavailable("the store is reopening".into())),
        };
        match outcome {
            Ok(replies) => {
                shared.set_problem(None);
                for (m, r) in group.into_iter().zip(replies) {
                    let _ = m.reply.send(Ok(r));
                }
            }
            Err(e) => {
                let e = commit_error(e, shared.problem().as_deref());
                tracing::error!(error = %e, batches = group.len(), "store commit failed; nothing of it was written");
                if matches!(e, StoreError::Full(_) | StoreError::Unavailable(_)) {
                    let why = match &e {
                        StoreError::Full(_) => {
                            "disk full: writes fail until space is freed".to_string()
                        }
                        other => other.to_string(),
                    };
                    shared.set_problem(Some(why));
                }
                let msg = e.to_string();
                for m in group {
                    let _ = m.reply.send(Err(match &e {
                        StoreError::Full(w) => StoreError::Full(w.clone()),
                        StoreError::Unavailable(w) => StoreError::Unavailable(w.clone()),
                        _ => StoreError::Backend(msg.clone()),
                    }));
                }
            }
        }
    }
}

fn commit_group(db: &Database, group: &[Msg]) -> Result<Vec<Reply>> {
    let txn = db.begin_write().map_err(backend)?;
    let mut replies = Vec::with_capacity(group.len());
    {
        let mut jobs = txn.open_table(JOBS).map_err(backend)?;
        let mut runs = txn.open_table(RUNS).map_err(backend)?;
        let mut claims = txn.open_table(CLAIMS).map_err(backend)?;
        let mut open = txn.open_table(OPEN_RUNS).map_err(backend)?;
        let mut notices = txn.open_table(NOTICES).map_err(backend)?;
        let mut pending = txn.open_table(PENDING).map_err(backend)?;
        let mut due = txn.open_table(DUE).map_err(backend)?;
        let mut audit = AuditTables::open(&txn)?;
        // The group's audit entries, appended together at its end.
        let mut entries: Vec<&(u128, Vec<u8>)> = Vec::new();
        for m in group {
            let reply = match &m.op {
                Op::Apply(e) => {
                    for id in &e.delete {
                        jobs.remove(id.as_str()).map_err(backend)?;
                        runs.retain_in(
                            (id.as_str(), i128::MIN)..=(id.as_str(), i128::MAX),
                            |_, _| false,
                        )
                        .map_err(backend)?;
                        claims
                            .retain_in(
                                (id.as_str(), i128::MIN)..=(id.as_str(), i128::MAX),
                                |_, _| false,
                            )
                            .map_err(backend)?;
                        let end = format!("{id}\0");
                        let range = (id.as_str(), "")..(end.as_str(), "");
                        notices
                            .retain_in(range.clone(), |_, _| false)
                            .map_err(backend)?;
                        let mut gone = Vec::new();
                        for entry in due.range(range.clone()).map_err(backend)? {
                            let (k, v) = entry.map_err(backend)?;
                            gone.push((v.value(), k.value().1.to_string()));
                        }
                        for (at, nid) in gone {
                            pending
                                .remove((at, id.as_str(), nid.as_str()))
                                .map_err(backend)?;
                        }
                        due.retain_in(range, |_, _| false).map_err(backend)?;
                    }
                    for (job, id, next, bytes) in &e.notices {
                        let key = (job.as_str(), id.as_str());
                        notices.insert(key, bytes.as_slice()).map_err(backend)?;
                        let was = due.get(key).map_err(backend)?.map(|v| v.value());
                        if let Some(at) = was {
                            pending
                                .remove((at, job.as_str(), id.as_str()))
                                .map_err(backend)?;
                        }
                        match next {
                            Some(at) => {
                                due.insert(key, *at).map_err(backend)?;
                                pending
                                    .insert((*at, job.as_str(), id.as_str()), ())
                                    .map_err(backend)?;
                            }
                            None => {
                                due.remove(key).map_err(backend)?;
                            }
                        }
                    }
                    for (id, bytes) in &e.put {
                        jobs.insert(id.as_str(), bytes.as_slice())
                            .map_err(backend)?;
                    }
                    let mut touched: Vec<&str> = Vec::new();
                    for (id, at, bytes) in &e.runs {
                        runs.insert((id.as_str(), *at), bytes.as_slice())
                            .map_err(backend)?;
                        if !touched.contains(&id.as_str()) {
                            touched.push(id.as_str());
                        }
                    }
                    if let Some(keep) = e.keep_runs {
                        for id in touched {
                            trim_job_runs(&mut runs, id, keep)?;
                        }
                    }
                    for (id, bytes) in &e.begin {
                        open.insert(id.as_str(), bytes.as_slice())
                            .map_err(backend)?;
                    }
                    for id in &e.end {
                        open.remove(id.as_str()).map_err(backend)?;
                    }
                    entries.extend(&e.audit);
                    Reply::Done
                }
                Op::Prune(retention, now) => {
                    Reply::Pruned(prune(&mut runs, &mut claims, *retention, *now)?)
                }
                Op::DeleteAll(audited) => {
                    entries.extend(audited);
                    jobs.retain(|_, _| false).map_err(backend)?;
                    runs.retain(|_, _| false).map_err(backend)?;
                    claims.retain(|_, _| false).map_err(backend)?;
                    open.retain(|_, _| false).map_err(backend)?;
                    notices.retain(|_, _| false).map_err(backend)?;
                    pending.retain(|_, _| false).map_err(backend)?;
                    due.retain(|_, _| false).map_err(backend)?;
                    Reply::Done
                }
                Op::PruneNotices(before) => {
                    let before = *before;
                    let n = notices.len().map_err(backend)?;
                    // A notice that does not decode stays (verify names it).
                    notices
                        .retain(|(_, id), v| {
                            kala_store::json::decode_framed::<kala_store::Notice>(id, v)
                                .map_or(true, |n| {
                                    n.is_pending() || n.done_at.is_none_or(|d| d >= before)
                                })
                        })
                        .map_err(backend)?;
                    Reply::Pruned(n - notices.len().map_err(backend)?)
                }
                Op::PruneAudit(before) => {
                    Reply::Pruned(audit.prune(crate::audit_record::time_bound(*before))?)
                }
                Op::Claim(c) => {
                    let key = (c.job_id.as_str(), c.scheduled_at.as_nanosecond());
                    let now = Timestamp::now().as_nanosecond();
                    let held = match claims.get(key).map_err(backend)? {
                        Some(v) => {
                            let (owner, exp) = v.value();
                            exp > now && owner != c.owner
                        }
                        None => false,
                    };
                    if !held {
                        claims
                            .insert(key, (c.owner.as_str(), c.expires_at.as_nanosecond()))
                            .map_err(backend)?;
                    }
                    Reply::Claimed(!held)
                }
            };
            replies.push(reply);
        }
        audit.append(&entries)?;
    }
    txn.commit().map_err(backend)?;
    Ok(replies)
}

fn trim_job_runs(
    runs: &mut redb::Table<(&str, i128), &[u8]>,
    id: &str,
    keep: usize,
) -> Result<u64> {
    let count = runs
        .range((id, i128::MIN)..=(id, i128::MAX))
        .map_err(backend)?
        .count();
    let extra = count.saturating_sub(keep);
    if extra == 0 {
        return Ok(0);
    }
    let mut seen = 0usize;
    runs.retain_in((id, i128::MIN)..=(id, i128::MAX), |_, _| {
        seen += 1;
        seen > extra
    })
    .map_err(backend)?;
    Ok(extra as u64)
}

fn prune(
    runs: &mut redb::Table<(&str, i128), &[u8]>,
    claims: &mut redb::Table<(&str, i128), (&str, i128)>,
    retention: Retention,
    now: Timestamp,
) -> Result<u64> {
    let mut dropped = 0u64;
    if let Some(cutoff) = retention.max_age.and_then(|age| now.checked_sub(age).ok()) {
        let cutoff = cutoff.as_nanosecond();
        let before = runs.len().map_err(backend)?;
        runs.retain(|(_, at), _| at >= cutoff).map_err(backend)?;
        dropped += before - runs.len().map_err(backend)?;
    }
    if let Some(keep) = retention.max_per_job {
        // Walk job by job: each job's runs are one contiguous range.
        let mut ids: Vec<String> = Vec::new();
        for entry in runs.iter().map_err(backend)? {
            let (k, _) = entry.map_err(backend)?;
            let id = k.value().0;
            if ids.last().map(String::as_str) != Some(id) {
                ids.push(id.to_string());
            }
        }
        for id in ids {
            dropped += trim_job_runs(runs, &id, keep)?;
        }
    }
    let now = now.as_nanosecond();
    claims.retain(|_, (_, exp)| exp > now).map_err(backend)?;
    Ok(dropped)
}
