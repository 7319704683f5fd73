//! The audit log's format 4: entries keyed by a `u128` and packed. A
//! format-3 store (text ids, framed JSON entries in `audit` and
//! `audit_recent`) is migrated when opened, entries equal and in order;
//! cursors of any text page as they did.

use jiff::Timestamp;
use kala_store::{AuditDiff, AuditEntry, Batch, JobStore, audit_id};
use kala_store_redb::RedbStore;
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AUDIT_V3: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
const AUDIT_RECENT_V3: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_recent");
const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit_log");

fn entry(i: usize, id: Option<&str>) -> AuditEntry {
    let at = Timestamp::from_second(1_800_000_000 + i as i64).expect("time");
    AuditEntry {
        id: id.map_or_else(|| audit_id(at), str::to_string),
        at,
        actor: format!("token-{i}"),
        source: "127.0.0.1:4000".into(),
        request_id: format!("req-{i}"),
        action: "create".into(),
        job_id: format!("job-{i}"),
        job_name: format!("nightly ✓ {i}"),
        owner: "team-a".into(),
        node: "n1".into(),
        diff: AuditDiff::from_value(
            &serde_json::json!({"name": {"after": format!("nightly ✓ {i}")}}),
        ),
    }
}

fn json(entries: &[AuditEntry]) -> serde_json::Value {
    serde_json::to_value(entries).expect("json")
}

/// A format-3 store at `path`: `main`'s entries in `audit`, `recent`'s in
/// `audit_recent`, as framed JSON under their text ids.
fn write_format_3(path: &std::path::Path, main: &[AuditEntry], recent: &[AuditEntry]) {
    let db = redb::Database::create(path).expect("db");
    let txn = db.begin_write().expect("txn");
    for (def, entries) in [(AUDIT_V3, main), (AUDIT_RECENT_V3, recent)] {
        let mut table = txn.open_table(def).expect("table");
        for e in entries {
            let bytes = kala_store::json::encode_framed(e).expect("frame");
            table
                .insert(e.id.as_str(), bytes.as_slice())
                .expect("insert");
        }
    }
    txn.open_table(META)
        .expect("meta")
        .insert("format", 3)
        .expect("format");
    txn.commit().expect("commit");
}

#[test]
fn a_format_3_audit_log_is_migrated_entries_equal_and_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("kala.redb");
    // Entries 0..5 in `audit`, 5..7 in `audit_recent`, as format 3 left
    // them; the last one with an id an embedder made up.
    let mut old: Vec<AuditEntry> = (0..7).map(|i| entry(i, None)).collect();
    old.push(entry(7, Some("zz-not-an-audit-id")));
    write_format_3(&path, &old[..5], &old[5..]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (all, page, next) = rt.block_on(async {
        let s = RedbStore::open_dir(dir.path()).expect("open migrates");
        let all = s.audit(None, 100).await.expect("read");
        let page = s.audit(Some(&old[4].id), 2).await.expect("page");
        // A new entry after the migration lands after the old ones.
        let new = entry(8, None);
        s.apply(Batch {
            audit: vec![new.clone()],
            ..Batch::default()
        })
        .await
        .expect("apply");
        let next = s.audit(None, 1).await.expect("read");
        s.close().await.expect("close");
        (all, page, (next, new))
    });
    // Newest first; the made-up id sorts last as text ("zz…"), so it is
    // the newest and got the key of the greatest id.
    assert_eq!(all.len(), 8);
    assert_eq!(all[0].id, "18446744073709551615-ffffffffffffffff");
    let mut expect: Vec<AuditEntry> = old[..7].iter().rev().cloned().collect();
    expect.insert(
        0,
        AuditEntry {
            id: all[0].id.clone(),
            ..old[7].clone()
        },
    );
    assert_eq!(json(&all), json(&expect));
    assert_eq!(json(&page), json(&[old[3].clone(), old[2].clone()]));
    let (latest, new) = next;
    assert_eq!(latest[0].id, all[0].id, "the made-up id still sorts last");
    assert!(all.iter().all(|e| e.id != new.id));

    let db = redb::Database::open(&path).expect("db");
    let txn = db.begin_read().expect("read");
    assert!(txn.open_table(AUDIT_V3).is_err(), "the old table is gone");
    assert!(
        txn.open_table(AUDIT_RECENT_V3).is_err(),
        "the old table is gone"
    );
    assert_eq!(
        txn.open_table(AUDIT)
            .expect("audit_log")
            .len()
            .expect("len"),
        8
    );
    assert_eq!(
        txn.open_table(META)
            .expect("meta")
            .get("format")
            .expect("get")
            .expect("format")
            .value(),
        4
    );
}

#[test]
fn an_entry_whose_id_is_not_an_audit_id_is_refused_with_its_batch() {
    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = RedbStore::open_dir(dir.path()).expect("open");
        let job = kala_job::Job::new("j", "true");
        let err = s
            .apply(Batch {
                put: vec![job.clone()],
                audit: vec![entry(1, Some("my-own-id"))],
                ..Batch::default()
            })
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("my-own-id"), "{err}");
        assert_eq!(s.get(&job.id).await.expect("get"), None, "nothing written");
        s.close().await.expect("close");
    });
}

#[test]
fn any_cursor_pages_as_text_order_would() {
    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = RedbStore::open_dir(dir.path()).expect("open");
        let entries: Vec<AuditEntry> = (0..5).map(|i| entry(i, None)).collect();
        s.apply(Batch {
            audit: entries.clone(),
            ..Batch::default()
        })
        .await
        .expect("apply");
        for cursor in [
            "",
            "0",
            "1",
            "~",
            "x",
            &entries[2].id,
            &entries[2].id[..25],
            "18446744073709551616",
        ] {
            let got: Vec<String> = s
                .audit(Some(cursor), 100)
                .await
                .expect("read")
                .into_iter()
                .map(|e| e.id)
                .collect();
            let want: Vec<String> = entries
                .iter()
                .rev()
                .filter(|e| e.id.as_str() < cursor)
                .map(|e| e.id.clone())
                .collect();
            assert_eq!(got, want, "cursor {cursor:?}");
        }
        s.close().await.expect("close");
    });
}

/// How long opening a format-3 store with `KALA_MIGRATE_ENTRIES` (default
/// 200,000) audit entries takes (the migration to format 4). A
/// measurement, not a check: `cargo test --release -p kala-store-redb
/// --test audit_format -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn migration_time() {
    let n: usize = std::env::var("KALA_MIGRATE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("kala.redb");
    let entries: Vec<AuditEntry> = (0..n).map(|i| entry(i, None)).collect();
    write_format_3(&path, &entries, &[]);
    let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let t = std::time::Instant::now();
    let s = RedbStore::open_dir(dir.path()).expect("open migrates");
    let took = t.elapsed();
    drop(s);
    let after = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{n} entries migrated in {took:?} ({:.1} µs each); file {:.1} → {:.1} MB",
        took.as_secs_f64() * 1e6 / n as f64,
        before as f64 / 1e6,
        after as f64 / 1e6
    );
}
