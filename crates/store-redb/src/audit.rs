//! The audit log's two tables: `audit_log` holds the log,
//! `audit_log_recent` the last few entries of commits that wrote only a
//! few.
//!
//! Why two: every commit copies the path from the root to each leaf it
//! changes (copy-on-write), so an entry appended to the big log's tree
//! costs a commit that tree's depth in page writes (three or more), and a
//! change made alone (one client, one create) paid them for its one entry:
//! 10.3 page writes per commit instead of 7.5 without the log. A commit
//! with at most [`SMALL`] entries appends them to the small recent table
//! (one leaf), and the commit that brings it to [`FOLD`] entries, or past
//! one leaf, moves them all into the log at once, next to each other (8.7
//! page writes per commit, one create at a time). A larger commit (many
//! clients at once share one) writes straight to the log and leaves the
//! recent table alone: moving entries costs the writer thread time, which
//! is what bounds a busy server. An entry is in exactly one of the two,
//! written in the same commit as its change either way; reads merge them
//! by id.
//!
//! Keys are entry ids as `u128`s and values packed entries
//! (`audit_record`); format 3 kept both as text in `audit` and
//! `audit_recent`, which [`migrate`] moves into these tables.
//!
//! Owns: the tables' definitions, [`AuditTables`] (writes, in the
//! writer thread's transaction), [`read`], [`migrate`]. Must not: decode
//! entries (but for the migration).

use kala_store::{Result, StoreError};
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use crate::{audit_record, backend};

pub(crate) const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit_log");
pub(crate) const AUDIT_RECENT: TableDefinition<u128, &[u8]> =
    TableDefinition::new("audit_log_recent");

/// Format 3's tables: entry id as text → framed JSON entry.
const AUDIT_V3: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
const AUDIT_RECENT_V3: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_recent");

/// A commit with at most this many entries writes them to
/// `audit_log_recent`.
pub(crate) const SMALL: usize = 2;

/// The most entries `audit_log_recent` gathers before they move; they move
/// earlier when they no longer fit its one leaf (packed entries of
/// creates are ~250 bytes, so ~15 fit a 4 KiB page).
pub(crate) const FOLD: u64 = 16;

/// Both tables, open in a write transaction.
pub(crate) struct AuditTables<'t> {
    main: Table<'t, u128, &'static [u8]>,
    recent: Table<'t, u128, &'static [u8]>,
}

impl<'t> AuditTables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(AuditTables {
            main: txn.open_table(AUDIT).map_err(backend)?,
            recent: txn.open_table(AUDIT_RECENT).map_err(backend)?,
        })
    }

    /// Appends one commit's entries (key → packed entry).
    pub(crate) fn append(&mut self, entries: &[&(u128, Vec<u8>)]) -> Result<()> {
        if entries.len() > SMALL {
            for (k, bytes) in entries {
                self.main.insert(*k, bytes.as_slice()).map_err(backend)?;
            }
            return Ok(());
        }
        for (k, bytes) in entries {
            self.recent.insert(*k, bytes.as_slice()).map_err(backend)?;
        }
        let n = self.recent.len().map_err(backend)?;
        if n >= FOLD || (n > 1 && self.recent.stats().map_err(backend)?.tree_height() > 1) {
            self.fold()?;
        }
        Ok(())
    }

    /// Moves every entry of `audit_log_recent` into `audit_log`.
    fn fold(&mut self) -> Result<()> {
        let mut moved = Vec::new();
        for entry in self.recent.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            moved.push((k.value(), v.value().to_vec()));
        }
        for (k, bytes) in &moved {
            self.main.insert(*k, bytes.as_slice()).map_err(backend)?;
        }
        self.recent.retain(|_, _| false).map_err(backend)?;
        Ok(())
    }

    /// Deletes the entries whose key is before `cutoff`; how many.
    pub(crate) fn prune(&mut self, cutoff: u128) -> Result<u64> {
        let mut n = 0;
        for table in [&mut self.main, &mut self.recent] {
            let before = table.len().map_err(backend)?;
            table
                .retain_in::<u128, _>(..cutoff, |_, _| false)
                .map_err(backend)?;
            n += before - table.len().map_err(backend)?;
        }
        Ok(n)
    }
}

/// Up to `limit` entries with keys before `upper` (all when `None`),
/// newest first, from both tables.
pub(crate) fn read(
    txn: &ReadTransaction,
    upper: Option<u128>,
    limit: usize,
) -> Result<Vec<(u128, Vec<u8>)>> {
    let mut out: Vec<(u128, Vec<u8>)> = Vec::new();
    for def in [AUDIT, AUDIT_RECENT] {
        let table = txn.open_table(def).map_err(backend)?;
        let range = match upper {
            Some(b) => table.range(..b),
            None => table.range::<u128>(..),
        }
        .map_err(backend)?;
        for entry in range.rev().take(limit) {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value(), v.value().to_vec()));
        }
    }
    out.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    out.truncate(limit);
    Ok(out)
}

/// Format 3 → 4, inside the opening transaction: every entry of the old
/// tables (id as text → framed JSON) is packed into the new ones under
/// its id's key, and the old tables go (all or nothing; a damaged entry
/// stops the opening with its id, as a read would). An id of another
/// form than `audit_id`'s (only an embedder could have written one) takes
/// the first free key where it sorts, and that key's id from then on.
pub(crate) fn migrate(txn: &WriteTransaction) -> Result<u64> {
    let mut moved = 0;
    let mut main = txn.open_table(AUDIT).map_err(backend)?;
    for def in [AUDIT_V3, AUDIT_RECENT_V3] {
        let mut entries = Vec::new();
        {
            let old = txn.open_table(def).map_err(backend)?;
            for entry in old.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let e: kala_store::AuditEntry =
                    kala_store::json::decode_framed(&format!("audit/{}", k.value()), v.value())?;
                entries.push(e);
            }
        }
        for e in entries {
            // An id of audit_id's form is its own bound.
            let mut k = audit_record::bound(&e.id).unwrap_or(u128::MAX);
            while main.get(k).map_err(backend)?.is_some() {
                k = k.checked_add(1).ok_or_else(|| StoreError::Corrupt {
                    key: format!("audit/{}", e.id),
                    reason: "no free key after it for its made-up id".into(),
                })?;
            }
            main.insert(k, audit_record::encode(&e).as_slice())
                .map_err(backend)?;
            moved += 1;
        }
        txn.delete_table(def).map_err(backend)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    fn entry(i: usize) -> (u128, Vec<u8>) {
        (i as u128, format!("entry {i}").into_bytes())
    }

    fn commit(db: &Database, entries: &[(u128, Vec<u8>)]) {
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
        let f = FOLD as usize;
        // FOLD - 1 commits of one small entry each stay in audit_log_recent.
        for i in 0..f - 1 {
            commit(&db, &[entry(i)]);
        }
        assert_eq!(counts(&db), (0, FOLD - 1));
        // The next moves them all.
        commit(&db, &[entry(f - 1)]);
        assert_eq!(counts(&db), (FOLD, 0));
        // Two more small commits (one of SMALL entries), then a larger
        // one goes straight to the log, leaving the small ones where they
        // are.
        commit(&db, &[entry(f)]);
        commit(&db, &[entry(f + 1), entry(f + 2)]);
        let big: Vec<_> = (f + 3..f + 3 + SMALL + 1).map(entry).collect();
        commit(&db, &big);
        assert_eq!(counts(&db), (FOLD + SMALL as u64 + 1, 3));

        // Reads merge both, newest first, across pages.
        let txn = db.begin_read().expect("read");
        let all = read(&txn, None, 100).expect("read");
        let ids: Vec<usize> = all.iter().map(|(k, _)| *k as usize).collect();
        assert_eq!(ids, (0..f + 3 + SMALL + 1).rev().collect::<Vec<_>>());
        let page = read(&txn, Some(entry(f + 4).0), 4).expect("page");
        let ids: Vec<usize> = page.iter().map(|(k, _)| *k as usize).collect();
        assert_eq!(
            ids,
            vec![f + 3, f + 2, f + 1, f],
            "a page spans both tables"
        );
        assert_eq!(page[0].1, format!("entry {}", f + 3).into_bytes());
        drop(txn);

        // Pruning takes from both.
        let txn = db.begin_write().expect("begin");
        let pruned = {
            let mut t = AuditTables::open(&txn).expect("open");
            t.prune(entry(f + 1).0).expect("prune")
        };
        txn.commit().expect("commit");
        assert_eq!(pruned, FOLD + 1, "0..FOLD from the log, FOLD from recent");
        assert_eq!(counts(&db), (SMALL as u64 + 1, 2));
    }

    /// Large entries move as soon as they no longer fit one leaf, so a
    /// lone change never copies more than audit_log_recent's one page.
    #[test]
    fn recent_moves_once_it_outgrows_one_leaf() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("a.redb")).expect("db");
        let mut moved_at = None;
        for i in 0..FOLD as usize {
            commit(&db, &[(i as u128, vec![b'x'; 1500])]);
            if counts(&db).1 == 0 {
                moved_at = Some(i + 1);
                break;
            }
        }
        let n = moved_at.expect("moved before FOLD entries");
        assert!((2..=4).contains(&n), "moved after {n} entries of 1.5 KB");
        assert_eq!(counts(&db), (n as u64, 0));
    }
}
