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
//! Layout (all values JSON, so a file can be inspected with any redb tool):
//! * `jobs`:   job id → job
//! * `runs`:   (job id, ran_at in ns) → run record; a job's runs are one
//!   contiguous key range, in time order
//! * `claims`: (job id, scheduled_at in ns) → (owner, expires_at in ns)
//! * `meta`:   "format" → 1

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::{decode_framed as decode, encode_framed as encode, frame};
use kala_store::{Batch, Claim, JobStore, Result, Retention, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const RUNS: TableDefinition<(&str, i128), &[u8]> = TableDefinition::new("runs");
const CLAIMS: TableDefinition<(&str, i128), (&str, i128)> = TableDefinition::new("claims");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The file name inside the `--bolt-path` directory.
pub const FILE_NAME: &str = "kala.redb";

/// The most batches folded into one commit.
const MAX_GROUP: usize = 4096;

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A write already encoded, so the writer thread only touches tables.
struct Encoded {
    put: Vec<(String, Vec<u8>)>,
    delete: Vec<String>,
    runs: Vec<(String, i128, Vec<u8>)>,
    keep_runs: Option<usize>,
}

enum Op {
    Apply(Encoded),
    Prune(Retention, Timestamp),
    DeleteAll,
    Claim(Claim),
}

enum Reply {
    Done,
    Pruned(u64),
    Claimed(bool),
}

struct Msg {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

pub struct RedbStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The file's format: 1 stored plain JSON values; 2 frames each value with
/// a version byte and a CRC-32 (`kala_store::json::encode_framed`).
const FORMAT: u64 = 2;

/// Format 1 → 2, inside the opening transaction: every job and run value
/// is framed (all or nothing).
fn migrate_to_framed(txn: &redb::WriteTransaction) -> Result<()> {
    let mut jobs = txn.open_table(JOBS).map_err(backend)?;
    let mut framed = Vec::new();
    for entry in jobs.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        framed.push((k.value().to_string(), frame(v.value())?));
    }
    for (k, v) in &framed {
        jobs.insert(k.as_str(), v.as_slice()).map_err(backend)?;
    }
    let mut runs = txn.open_table(RUNS).map_err(backend)?;
    let mut framed = Vec::new();
    for entry in runs.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        let (id, at) = k.value();
        framed.push((id.to_string(), at, frame(v.value())?));
    }
    for (id, at, v) in &framed {
        runs.insert((id.as_str(), *at), v.as_slice())
            .map_err(backend)?;
    }
    Ok(())
}

/// What [`RedbStore::verify`] found.
#[derive(Debug, Default)]
pub struct Verified {
    pub jobs: usize,
    pub runs: usize,
    /// One line per damaged record, naming it.
    pub damaged: Vec<String>,
}

/// What readers and the writer thread share.
struct Shared {
    path: PathBuf,
    /// `None` once closed (so the file lock goes with `close()` even while
    /// other owners still hold the store), and while the writer reopens
    /// the file after an I/O error.
    db: std::sync::RwLock<Option<Arc<Database>>>,
    /// Why writes fail now (the disk is full, an I/O error), until a
    /// commit succeeds again; what `/healthz` reports.
    problem: Mutex<Option<String>>,
}

/// While writes fail, the writer tries to reopen the file and commit a
/// probe this often, so that the store recovers once space is back even
/// when nobody writes.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

fn open_database(path: &Path) -> Result<Database> {
    Database::builder()
        .set_cache_size(8 << 20)
        .create(path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))
}

/// A failed commit as the caller should see it. redb reports the first
/// I/O error of a commit as such and every later one as "Previous I/O
/// error" until the database is reopened.
fn commit_error(e: StoreError, problem: Option<&str>) -> StoreError {
    let msg = e.to_string();
    let full = msg.contains("os error 28") || msg.contains("No space left");
    if full || problem.is_some_and(|p| p.starts_with("disk full")) {
        StoreError::Full("the disk holding the store has no space left".into())
    } else if msg.contains("I/O error") {
        StoreError::Unavailable(format!("the store's file cannot be written: {msg}"))
    } else {
        e
    }
}

impl Shared {
    fn current(&self) -> Option<Arc<Database>> {
        self.db.read().ok().and_then(|g| g.clone())
    }

    fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    fn set_problem(&self, p: Option<String>) {
        if let Ok(mut g) = self.problem.lock() {
            if g.is_some() && p.is_none() {
                tracing::info!(path = %self.path.display(), "the store accepts writes again");
            }
            *g = p;
        }
    }

    /// Closes and reopens the file (redb refuses every write after an I/O
    /// error until then). Readers see "unavailable" meanwhile.
    fn reopen(&self) -> bool {
        let old = match self.db.write() {
            Ok(mut g) => g.take(),
            Err(_) => return false,
        };
        if let Some(mut old) = old {
            // In-flight reads hold clones for a moment; the file lock goes
            // with the last one.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if std::time::Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(still) => {
                        if let Ok(mut g) = self.db.write() {
                            *g = Some(still);
                        }
                        return false;
                    }
                }
            }
        }
        match open_database(&self.path) {
            Ok(db) => {
                if let Ok(mut g) = self.db.write() {
                    *g = Some(Arc::new(db));
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "reopening the store failed; trying again");
                false
            }
        }
    }

    /// A tiny commit: does the file take writes again?
    fn probe(&self) -> Result<()> {
        let db = self
            .current()
            .ok_or_else(|| StoreError::Unavailable("the store is reopening".into()))?;
        let txn = db.begin_write().map_err(backend)?;
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            meta.insert("probe", 1).map_err(backend)?;
        }
        txn.commit().map_err(backend)
    }
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
            let mut meta = txn.open_table(META).map_err(backend)?;
            let format = meta.get("format").map_err(backend)?.map(|v| v.value());
            match format {
                None => {
                    meta.insert("format", FORMAT).map_err(backend)?;
                }
                Some(1) => {
                    drop(meta);
                    migrate_to_framed(&txn)?;
                    let mut meta = txn.open_table(META).map_err(backend)?;
                    meta.insert("format", FORMAT).map_err(backend)?;
                    tracing::info!(path = %path.display(), "store migrated to format 2 (checksummed records)");
                }
                Some(FORMAT) => {}
                Some(v) => {
                    return Err(StoreError::Backend(format!(
                        "{} has format {v}; this build reads formats 1 and {FORMAT}",
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
                if let Err(e) = decode::<Job>(k.value(), v.value()) {
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
            Some(v) => decode(id, v.value()).map(Some),
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

fn writer_loop(shared: &Shared, rx: mpsc::Receiver<Msg>) {
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
                    Reply::Done
                }
                Op::Prune(retention, now) => {
                    Reply::Pruned(prune(&mut runs, &mut claims, *retention, *now)?)
                }
                Op::DeleteAll => {
                    jobs.retain(|_, _| false).map_err(backend)?;
                    runs.retain(|_, _| false).map_err(backend)?;
                    claims.retain(|_, _| false).map_err(backend)?;
                    Reply::Done
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

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        self.read_job(id)
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut put = Vec::with_capacity(batch.put.len());
        for j in &batch.put {
            put.push((j.id.clone(), encode(j)?));
        }
        let mut runs = Vec::with_capacity(batch.runs.len());
        for r in &batch.runs {
            runs.push((r.job_id.clone(), r.ran_at.as_nanosecond(), encode(r)?));
        }
        let op = Op::Apply(Encoded {
            put,
            delete: batch.delete,
            runs,
            keep_runs: batch.keep_runs,
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

    async fn delete_all(&self) -> Result<()> {
        self.send(Op::DeleteAll).await.map(|_| ())
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

/// Every job, in one read transaction.
/// Runs `f` (opening or reading the whole file, at start-up), turning a
/// panic inside redb — it raises some on damaged files, e.g. "entered
/// unreachable code" on a zeroed page — into an error naming the file.
/// The panic hook is silenced meanwhile so that the operator gets one line.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    out.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(StoreError::Backend(format!(
            "{}: the file is damaged (redb: {why}); restore it from a backup or move it away",
            path.display()
        )))
    })
}

fn read_all(db: &Database) -> Result<Vec<Job>> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(JOBS).map_err(backend)?;
    let mut out = Vec::with_capacity(usize::try_from(table.len().map_err(backend)?).unwrap_or(0));
    for entry in table.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}
