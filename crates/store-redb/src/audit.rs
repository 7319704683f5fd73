//! The audit log's two tables: `audit` holds the log, `audit_recent` the
//! last few entries of commits that wrote only a few.
//!
//! Why two: every commit copies the path from the root to each leaf it
//! changes (copy-on-write), so an entry appended to the big `audit` tree
//! costs a commit that tree's depth in page writes (three or more), and a
//! change made alone (one client, one create) paid them for its one entry:
//! 10.3 page writes per commit instead of 7.5 without the log. A commit
//! with at most [`SMALL`] entries appends them to the small
//! `audit_recent` (one leaf), and the commit that brings it to [`FOLD`]
//! entries moves them all into `audit` at once, next to each other (8.7
//! page writes per commit, one create at a time). A larger commit (many
//! clients at once share one) writes straight to `audit` and leaves
//! `audit_recent` alone: moving entries costs the writer thread time,
//! which is what bounds a busy server. An entry is in exactly one of the
//! two, written in the same commit as its change either way; reads merge
//! them by id.
//!
//! Owns: the two tables' definitions, [`AuditTables`] (writes, in the
//! writer thread's transaction), [`read`]. Must not: decode entries.

use kala_store::Result;
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use crate::backend;

pub(crate) const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
pub(crate) const AUDIT_RECENT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_recent");

/// A commit with at most this many entries writes them to `audit_recent`.
pub(crate) const SMALL: usize = 2;

/// How many entries `audit_recent` gathers before they move (about one
/// leaf page of entries).
pub(crate) const FOLD: u64 = 8;

/// Both tables, open in a write transaction.
pub(crate) struct AuditTables<'t> {
    main: Table<'t, &'static str, &'static [u8]>,
    recent: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> AuditTables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(AuditTables {
            main: txn.open_table(AUDIT).map_err(backend)?,
            recent: txn.open_table(AUDIT_RECENT).map_err(backend)?,
        })
    }

    /// Appends one commit's entries (id → framed entry).
    pub(crate) fn append(&mut self, entries: &[&(String, Vec<u8>)]) -> Result<()> {
        if entries.len() > SMALL {
            for (id, bytes) in entries {
                self.main
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            return Ok(());
        }
        for (id, bytes) in entries {
            self.recent
                .insert(id.as_str(), bytes.as_slice())
                .map_err(backend)?;
        }
        if self.recent.len().map_err(backend)? >= FOLD {
            self.fold()?;
        }
        Ok(())
    }

    /// Moves every entry of `audit_recent` into `audit`.
    fn fold(&mut self) -> Result<()> {
        let mut moved = Vec::new();
        for entry in self.recent.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            moved.push((k.value().to_string(), v.value().to_vec()));
        }
        for (id, bytes) in &moved {
            self.main
                .insert(id.as_str(), bytes.as_slice())
                .map_err(backend)?;
        }
        self.recent.retain(|_, _| false).map_err(backend)?;
        Ok(())
    }

    /// Deletes the entries whose id sorts before `cutoff`; how many.
    pub(crate) fn prune(&mut self, cutoff: &str) -> Result<u64> {
        let mut n = 0;
        for table in [&mut self.main, &mut self.recent] {
            let before = table.len().map_err(backend)?;
            table
                .retain_in::<&str, _>(..cutoff, |_, _| false)
                .map_err(backend)?;
            n += before - table.len().map_err(backend)?;
        }
        Ok(n)
    }
}

/// Up to `limit` entries with ids before `before` (all when `None`),
/// newest first, from both tables.
pub(crate) fn read(
    txn: &ReadTransaction,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for def in [AUDIT, AUDIT_RECENT] {
        let table = txn.open_table(def).map_err(backend)?;
        let range = match before {
            Some(b) => table.range(..b),
            None => table.range::<&str>(..),
        }
        .map_err(backend)?;
        for entry in range.rev().take(limit) {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
    }
    out.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    fn entry(i: usize) -> (String, Vec<u8>) {
        (format!("{i:020}"), format!("entry {i}").into_bytes())
    }

    fn commit(db: &Database, entries: &[(String, Vec<u8>)]) {
        let txn = db.begin_write().expect("begin");
        {
            let mut t = AuditTables::open(&txn).expect("open");
            t.append(&entries.iter().collect::<Vec<_>>())
                .expect("append");
        }
        txn.commit().expect("commit");
    }

    fn counts(db: &Database) -> (u64, u64) {
        let txn = db.begin_read().expect("read");
        let main = txn.open_table(AUDIT).expect("audit").len().expect("len");
        let recent = txn
            .open_table(AUDIT_RECENT)
            .expect("recent")
            .len()
            .expect("len");
        (main, recent)
    }

    #[test]
    fn small_commits_gather_in_recent_and_move_together_reads_see_one_log() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("a.redb")).expect("db");
        // Seven commits of one entry each stay in audit_recent.
        for i in 0..7 {
            commit(&db, &[entry(i)]);
        }
        assert_eq!(counts(&db), (0, 7));
        // The eighth moves all eight.
        commit(&db, &[entry(7)]);
        assert_eq!(counts(&db), (8, 0));
        // Two more small commits (one of SMALL entries), then a larger
        // one goes straight to the log, leaving the small ones where they
        // are.
        commit(&db, &[entry(8)]);
        commit(&db, &[entry(9), entry(10)]);
        let big: Vec<_> = (11..11 + SMALL + 1).map(entry).collect();
        commit(&db, &big);
        assert_eq!(counts(&db), (8 + SMALL as u64 + 1, 3));

        // Reads merge both, newest first, across pages.
        let txn = db.begin_read().expect("read");
        let all = read(&txn, None, 100).expect("read");
        let ids: Vec<usize> = all.iter().map(|(k, _)| k.parse().expect("id")).collect();
        assert_eq!(ids, (0..11 + SMALL + 1).rev().collect::<Vec<_>>());
        let page = read(&txn, Some(&entry(12).0), 4).expect("page");
        let ids: Vec<usize> = page.iter().map(|(k, _)| k.parse().expect("id")).collect();
        assert_eq!(ids, vec![11, 10, 9, 8], "a page spans both tables");
        assert_eq!(page[0].1, b"entry 11");
        drop(txn);

        // Pruning takes from both.
        let txn = db.begin_write().expect("begin");
        let pruned = {
            let mut t = AuditTables::open(&txn).expect("open");
            t.prune(&entry(9).0).expect("prune")
        };
        txn.commit().expect("commit");
        assert_eq!(pruned, 9, "0..=7 from the log, 8 from recent");
        assert_eq!(counts(&db), (SMALL as u64 + 1, 2));
    }
}
