//! # kala-store-redb
//!
//! The embedded default store (Kala's BoltDB role): one redb file,
//! `kala.redb`, in the directory given by `--bolt-path`.
//!
//! Durability: redb commits are crash-safe (copy-on-write B-tree) and
//! fsynced. Writes go through one writer thread that drains every batch
//! waiting in its queue into a single transaction and commits once (group
//! commit), then acknowledges each caller: concurrent writers share an
//! fsync instead of queueing behind one each, and no caller hears `Ok`
//! before its batch is on disk.
//!
//! Layout (values are JSON framed with a version byte and a CRC-32, so
//! damage is detected; the JSON can be read with any redb tool):
//! * `jobs`:   job id → job, packed (`format::encode_job`)
//! * `runs`:   (job id, ran_at in ns) → run record; a job's runs are one
//!   contiguous key range, in time order
//! * `claims`: (job id, scheduled_at in ns) → (owner, expires_at in ns)
//! * `open_runs`: run id → the run journal's entry (`kala_store::OpenRun`)
//! * `notices`: (job id, notice id) → the notice (`kala_store::Notice`)
//! * `notice_due`: (job id, notice id) → next attempt in ns, for each
//!   notice still to deliver
//! * `pending_by_time`: (next attempt in ns, job id, notice id) → (): the
//!   same notices in the order they fall due
//! * `audit_log`: entry id as a `u128` (time ordered) → the audit entry
//!   (`kala_store::AuditEntry`), packed (`audit_record`)
//! * `audit_log_recent`: the same, for the entries of commits that wrote
//!   one or two, moved into `audit_log` sixteen at a time or once they
//!   outgrow one leaf (see `audit`)
//! * `meta`:   "format" → 4 (1: unframed JSON, 2: framed JSON jobs, 3:
//!   audit entries as JSON under text ids; all migrated when opened)
//!
//! Modules: this file ([`RedbStore`] and its reads), `writer` (the writer
//! thread and its commits), `audit` (the audit log's two tables),
//! `audit_record` (an entry's key and packed record),
//! `shared` (what readers and the writer share: reopening after an I/O
//! error, the health problem), `format` (the
//! record frame's migration, verification, start-up reads guarded against
//! redb's panics on damaged files).

mod audit;
mod audit_record;
mod format;
mod shared;
mod writer;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::{decode_framed as decode, encode_framed as encode};
use kala_store::{
    AuditEntry, Batch, Claim, JobStore, Notice, OpenRun, Result, Retention, StoreError,
    oldest_first, soonest,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::format::{
    FORMAT, decode_job, encode_job, guarded, migrate_to_framed, migrate_to_packed, read_all,
    read_all_packed,
};
use crate::shared::{Shared, open_database};
use crate::writer::{Encoded, Msg, Op, Reply, writer_loop};

pub use crate::format::Verified;

pub(crate) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
pub(crate) const RUNS: TableDefinition<(&str, i128), &[u8]> = TableDefinition::new("runs");
pub(crate) const CLAIMS: TableDefinition<(&str, i128), (&str, i128)> =
    TableDefinition::new("claims");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const OPEN_RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("open_runs");
pub(crate) const NOTICES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("notices");
pub(crate) const DUE: TableDefinition<(&str, &str), i128> = TableDefinition::new("notice_due");
pub(crate) const PENDING: TableDefinition<(i128, &str, &str), ()> =
    TableDefinition::new("pending_by_time");

/// The file name inside the `--bolt-path` directory.
pub const FILE_NAME: &str = "kala.redb";

pub(crate) fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub struct RedbStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl RedbStore {
    /// Opens (or creates) `kala.redb` in `dir`, creating `dir` if needed.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<RedbStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        RedbStore::open_file(dir.join(FILE_NAME))
    }

    /// Opens (or creates) the database file at `path`. A file that exists
    /// but is empty, or that redb cannot read (it panics on some damaged
    /// files), is an error naming the file, never a fresh empty store and
    /// never a panic.
    pub fn open_file(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref().to_path_buf();
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Backend(format!(
                "{}: the file is empty (0 bytes), so every job would be gone; move it away to start with an empty store",
                path.display()
            )));
        }
        guarded(&path, || RedbStore::open_checked(&path))
    }

    fn open_checked(path: &Path) -> Result<RedbStore> {
        let path = path.to_path_buf();
        let db = open_database(&path)?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(JOBS).map_err(backend)?;
            txn.open_table(RUNS).map_err(backend)?;
            txn.open_table(CLAIMS).map_err(backend)?;
            txn.open_table(OPEN_RUNS).map_err(backend)?;
            txn.open_table(NOTICES).map_err(backend)?;
            txn.open_table(PENDING).map_err(backend)?;
            txn.open_table(DUE).map_err(backend)?;
            txn.open_table(audit::AUDIT).map_err(backend)?;
            txn.open_table(audit::AUDIT_RECENT).map_err(backend)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            let format = meta.get("format").map_err(backend)?.map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", FORMAT).map_err(backend)?;
                }
                Some(v @ 1..=3) => {
                    drop(meta);
                    if v == 1 {
                        migrate_to_framed(&txn)?;
                    }
                    if v <= 2 {
                        migrate_to_packed(&txn)?;
                    }
                    let entries = audit::migrate(&txn)?;
                    let mut meta = txn.open_table(META).map_err(backend)?;
                    meta.insert("format", FORMAT).map_err(backend)?;
                    tracing::info!(path = %path.display(), from = v, audit_entries = entries, "store migrated to format 4 (checksummed, packed jobs and audit entries)");
                }
                Some(FORMAT) => {}
                Some(v) => {
                    return Err(StoreError::Backend(format!(
                        "{} has format {v}; this build reads formats 1 to {FORMAT}",
                        path.display()
                    )));
                }
            }
        }
        txn.commit().map_err(backend)?;
        let shared = Arc::new(Shared {
            path,
            db: std::sync::RwLock::new(Some(Arc::new(db))),
            problem: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel::<Msg>();
        let wshared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("kala-redb-writer".into())
            .spawn(move || writer_loop(&wshared, rx))
            .map_err(backend)?;
        Ok(RedbStore {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Reads every job and run record and checks each one's frame,
    /// checksum and JSON (`kala-server check`). Damage is listed by key,
    /// not returned as an error, so one bad record does not hide others.
    pub fn verify(&self) -> Result<Verified> {
        let db = self.db()?;
        guarded(&self.shared.path, || {
            let txn = db.begin_read().map_err(backend)?;
            let mut report = Verified::default();
            for entry in txn
                .open_table(JOBS)
                .map_err(backend)?
                .iter()
                .map_err(backend)?
            {
                let (k, v) = entry.map_err(backend)?;
                report.jobs += 1;
                if let Err(e) = decode_job(k.value(), v.value()) {
                    report.damaged.push(format!("job {}: {e}", k.value()));
                }
            }
            for entry in txn
                .open_table(RUNS)
                .map_err(backend)?
                .iter()
                .map_err(backend)?
            {
                let (k, v) = entry.map_err(backend)?;
                report.runs += 1;
                let (id, at) = k.value();
                if let Err(e) = decode::<RunRecord>(id, v.value()) {
                    report
                        .damaged
                        .push(format!("run of job {id} at {at} ns: {e}"));
                }
            }
            for entry in txn
                .open_table(OPEN_RUNS)
                .map_err(backend)?
                .iter()
                .map_err(backend)?
            {
                let (k, v) = entry.map_err(backend)?;
                report.open_runs += 1;
                if let Err(e) = decode::<OpenRun>(k.value(), v.value()) {
                    report.damaged.push(format!("open run {}: {e}", k.value()));
                }
            }
            Ok(report)
        })
    }

    fn db(&self) -> Result<Arc<Database>> {
        self.shared
            .current()
            .ok_or_else(|| StoreError::Unavailable("the store is closed or reopening".into()))
    }

    async fn send(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.tx.lock().map_err(backend)?;
            let tx = guard
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
            tx.send(Msg { op, reply })
                .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    fn read_job(&self, id: &str) -> Result<Option<Job>> {
        let txn = self.db()?.begin_read().map_err(backend)?;
        let table = txn.open_table(JOBS).map_err(backend)?;
        match table.get(id).map_err(backend)? {
            Some(v) => decode_job(id, v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn read_runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let txn = self.db()?.begin_read().map_err(backend)?;
        let table = txn.open_table(RUNS).map_err(backend)?;
        let range = table
            .range((job_id, i128::MIN)..=(job_id, i128::MAX))
            .map_err(backend)?;
        let mut out = Vec::new();
        match limit {
            None => {
                for entry in range {
                    let (_, v) = entry.map_err(backend)?;
                    out.push(decode(job_id, v.value())?);
                }
            }
            Some(limit) => {
                for entry in range.rev().take(limit) {
                    let (_, v) = entry.map_err(backend)?;
                    out.push(decode(job_id, v.value())?);
                }
                out.reverse();
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl JobStore for RedbStore {
    fn name(&self) -> &'static str {
        "redb"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        let db = self.db()?;
        let path = self.shared.path.clone();
        tokio::task::spawn_blocking(move || guarded(&path, || read_all(&db)))
            .await
            .map_err(backend)?
    }

    /// The records' packed bytes as they are (checked against their CRC):
    /// no decode, one copy.
    async fn load_packed(&self) -> Result<Vec<Box<[u8]>>> {
        let db = self.db()?;
        let path = self.shared.path.clone();
        tokio::task::spawn_blocking(move || guarded(&path, || read_all_packed(&db)))
            .await
            .map_err(backend)?
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        self.read_job(id)
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut put = Vec::with_capacity(batch.put.len());
        for j in &batch.put {
            put.push((j.id.clone(), encode_job(j)));
        }
        let mut runs = Vec::with_capacity(batch.runs.len());
        for r in &batch.runs {
            runs.push((r.job_id.clone(), r.ran_at.as_nanosecond(), encode(r)?));
        }
        let mut begin = Vec::with_capacity(batch.begin.len());
        for r in &batch.begin {
            begin.push((r.run_id.clone(), encode(r)?));
        }
        let mut notices = Vec::with_capacity(batch.notices.len());
        for n in &batch.notices {
            let due = n.is_pending().then(|| n.next_attempt_at.as_nanosecond());
            notices.push((n.job_id.clone(), n.id.clone(), due, encode(n)?));
        }
        let op = Op::Apply(Encoded {
            audit: encode_audit(&batch.audit)?,
            notices,
            put,
            delete: batch.delete,
            runs,
            keep_runs: batch.keep_runs,
            begin,
            end: batch.end,
        });
        self.send(op).await.map(|_| ())
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        self.read_runs(job_id, limit)
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        match self.send(Op::Prune(retention, now)).await? {
            Reply::Pruned(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()> {
        self.send(Op::DeleteAll(encode_audit(&audit)?))
            .await
            .map(|_| ())
    }

    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let txn = self.db()?.begin_read().map_err(backend)?;
        audit::read(&txn, before.and_then(audit_record::bound), limit)?
            .iter()
            .map(|(k, v)| audit_record::decode(*k, v))
            .collect()
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        match self.send(Op::PruneAudit(before)).await? {
            Reply::Pruned(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        let txn = self.db()?.begin_read().map_err(backend)?;
        let table = txn.open_table(OPEN_RUNS).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let txn = self.db()?.begin_read().map_err(backend)?;
        let pending = txn.open_table(PENDING).map_err(backend)?;
        let notices = txn.open_table(NOTICES).map_err(backend)?;
        let mut out = Vec::new();
        for entry in pending.iter().map_err(backend)?.take(limit) {
            let (k, _) = entry.map_err(backend)?;
            let (_, job, id) = k.value();
            if let Some(v) = notices.get((job, id)).map_err(backend)? {
                out.push(decode(id, v.value())?);
            }
        }
        Ok(soonest(out, limit))
    }

    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>> {
        let txn = self.db()?.begin_read().map_err(backend)?;
        let notices = txn.open_table(NOTICES).map_err(backend)?;
        let end = format!("{job_id}\0");
        let mut out: Vec<Notice> = Vec::new();
        for entry in notices
            .range((job_id, "")..(end.as_str(), ""))
            .map_err(backend)?
        {
            let (k, v) = entry.map_err(backend)?;
            out.push(decode(k.value().1, v.value())?);
        }
        oldest_first(&mut out);
        Ok(out)
    }

    async fn prune_notices(&self, before: Timestamp) -> Result<u64> {
        match self.send(Op::PruneNotices(before)).await? {
            Reply::Pruned(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn claim(&self, claim: Claim) -> Result<bool> {
        match self.send(Op::Claim(claim)).await? {
            Reply::Claimed(b) => Ok(b),
            _ => Ok(false),
        }
    }

    fn problem(&self) -> Option<String> {
        self.shared.problem()
    }

    async fn close(&self) -> Result<()> {
        // Dropping the sender ends the writer loop once the queue is empty.
        self.tx.lock().map_err(backend)?.take();
        let handle = self.writer.lock().map_err(backend)?.take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(backend)?
                .map_err(|_| StoreError::Backend("writer thread panicked".into()))?;
        }
        self.shared.db.write().map_err(backend)?.take();
        Ok(())
    }
}

/// Audit entries as (key, packed entry); an id not made by
/// `kala_store::audit_id` is refused (nothing of the batch is written).
fn encode_audit(audit: &[AuditEntry]) -> Result<Vec<(u128, Vec<u8>)>> {
    audit
        .iter()
        .map(|e| {
            let k = audit_record::key(&e.id).ok_or_else(|| {
                StoreError::Backend(format!(
                    "audit entry id {:?} is not of the form kala_store::audit_id makes",
                    e.id
                ))
            })?;
            Ok((k, audit_record::encode(e)))
        })
        .collect()
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut w) = self.writer.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }
}
