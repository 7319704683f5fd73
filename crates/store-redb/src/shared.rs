//! What readers and the writer thread share: the open database (swapped
//! out while the file is reopened after an I/O error) and the problem
//! `/healthz` reports while writes fail.
//!
//! Owns: [`Shared`], opening the file, classifying a failed commit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kala_store::{Result, StoreError};
use redb::Database;

use crate::{META, backend};

/// What readers and the writer thread share.
pub(crate) struct Shared {
    pub path: PathBuf,
    /// `None` once closed (so the file lock goes with `close()` even while
    /// other owners still hold the store), and while the writer reopens
    /// the file after an I/O error.
    pub db: std::sync::RwLock<Option<Arc<Database>>>,
    /// Why writes fail now (the disk is full, an I/O error), until a
    /// commit succeeds again; what `/healthz` reports.
    pub problem: Mutex<Option<String>>,
}

/// While writes fail, the writer tries to reopen the file and commit a
/// probe this often, so that the store recovers once space is back even
/// when nobody writes.
pub(crate) const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn open_database(path: &Path) -> Result<Database> {
    Database::builder()
        .set_cache_size(8 << 20)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                "cannot open {}: another process (a kala-server?) has it open. The embedded store \
                 is for one process; to run several instances on one store, use PostgreSQL, \
                 MySQL or Redis (see \"Running several instances\" in the README)",
                path.display()
            )),
            e => StoreError::Backend(format!("cannot open {}: {e}", path.display())),
        })
}

/// A failed commit as the caller should see it. redb reports the first
/// I/O error of a commit as such and every later one as "Previous I/O
/// error" until the database is reopened.
pub(crate) fn commit_error(e: StoreError, problem: Option<&str>) -> StoreError {
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
    pub fn current(&self) -> Option<Arc<Database>> {
        self.db.read().ok().and_then(|g| g.clone())
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    pub fn set_problem(&self, p: Option<String>) {
        if let Ok(mut g) = self.problem.lock() {
            if g.is_some() && p.is_none() {
                tracing::info!(path = %self.path.display(), "the store accepts writes again");
            }
            *g = p;
        }
    }

    /// Closes and reopens the file (redb refuses every write after an I/O
    /// error until then). Readers see "unavailable" meanwhile.
    pub fn reopen(&self) -> bool {
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
    pub fn probe(&self) -> Result<()> {
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
