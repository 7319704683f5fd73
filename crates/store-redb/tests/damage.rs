//! Damaged files: refused with an error naming the file, never a panic and
//! never a silently empty store.

use kala_store::{Batch, JobStore};
use kala_store_redb::RedbStore;
use redb::ReadableDatabase;

fn filled(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let s = RedbStore::open_dir(dir).expect("open");
        let jobs = (0..n)
            .map(|k| kala_job::Job::new(format!("job {k}"), "true"))
            .collect();
        s.apply(Batch {
            put: jobs,
            ..Batch::default()
        })
        .await
        .expect("fill");
        s.close().await.expect("close");
    });
    dir.join("kala.redb")
}

#[test]
fn an_empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kala.redb");
    std::fs::write(&path, b"").unwrap();
    let e = RedbStore::open_dir(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("empty (0 bytes)"), "{e}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
}

#[test]
fn zeroed_pages_are_an_error_not_a_panic() {
    for page in 0..12u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = filled(dir.path(), 2000);
        let len = std::fs::metadata(&path).unwrap().len();
        let at = page * 4096;
        if at + 4096 > len {
            break;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize..(at + 4096) as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcome = std::panic::catch_unwind(|| {
            rt.block_on(async {
                match RedbStore::open_dir(dir.path()) {
                    Err(e) => Err(e.to_string()),
                    Ok(s) => s
                        .load_all()
                        .await
                        .map(|j| j.len())
                        .map_err(|e| e.to_string()),
                }
            })
        });
        match outcome {
            Err(_) => panic!("page {page}: opening or loading panicked"),
            Ok(Ok(n)) => assert_eq!(n, 2000, "page {page}: jobs silently lost"),
            Ok(Err(e)) => assert!(e.contains("kala.redb"), "page {page}: {e}"),
        }
    }
}

const JOBS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("jobs");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

/// One changed byte inside a stored job is caught by its checksum and
/// reported with the job's id; the job is never served.
#[test]
fn a_changed_byte_in_a_record_is_reported_by_id() {
    use redb::ReadableTable;
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 10);
    let victim = {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let victim;
        {
            let mut jobs = txn.open_table(JOBS).unwrap();
            let (id, mut bytes) = {
                let (k, v) = jobs.iter().unwrap().nth(3).unwrap().unwrap();
                (k.value().to_string(), v.value().to_vec())
            };
            let at = bytes.len() / 2;
            bytes[at] ^= 0x20;
            jobs.insert(id.as_str(), bytes.as_slice()).unwrap();
            victim = id;
        }
        txn.commit().unwrap();
        victim
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(async { RedbStore::open_dir(dir.path()).unwrap().load_all().await })
        .unwrap_err()
        .to_string();
    assert!(e.contains(&victim) && e.contains("checksum"), "{e}");
}

/// A store written before checksums (format 1: plain JSON values) is
/// migrated when opened, and every job is still there.
#[test]
fn a_format_1_store_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kala.redb");
    let job = kala_job::Job::new("old", "true");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut jobs = txn.open_table(JOBS).unwrap();
            let json = serde_json::to_vec(&job).unwrap();
            jobs.insert(job.id.as_str(), json.as_slice()).unwrap();
            txn.open_table(META).unwrap().insert("format", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let loaded = rt.block_on(async {
        let s = RedbStore::open_dir(dir.path()).unwrap();
        let jobs = s.load_all().await.unwrap();
        s.close().await.unwrap();
        jobs
    });
    assert_eq!(loaded, vec![job]);
}

/// A store of format 2 (framed JSON jobs) is migrated to packed job
/// records when opened: every job is still there, equal, and its record
/// on disk is now the packed one.
#[test]
fn a_format_2_store_is_migrated_to_packed_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kala.redb");
    let mut job = kala_job::Job::new("old ✓", "echo hi");
    job.schedule = "R/2030-01-01T00:00:00Z/PT1H".into();
    job.metadata.success_count = 3;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut jobs = txn.open_table(JOBS).unwrap();
            let framed = kala_store::json::encode_framed(&job).unwrap();
            jobs.insert(job.id.as_str(), framed.as_slice()).unwrap();
            txn.open_table(META).unwrap().insert("format", 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let loaded = rt.block_on(async {
        let s = RedbStore::open_dir(dir.path()).unwrap();
        let jobs = s.load_all().await.unwrap();
        s.close().await.unwrap();
        jobs
    });
    assert_eq!(loaded, vec![job.clone()]);
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let raw = txn
        .open_table(JOBS)
        .unwrap()
        .get(job.id.as_str())
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(raw[0], 3, "a packed record");
    assert_eq!(kala_job::packed::decode(&raw[5..]).unwrap(), job);
    let format = txn
        .open_table(META)
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(format, 4);
}

/// Enough jobs for the parallel read (one thread per core, by id range):
/// `load_packed` hands over every record, each the packed job `load_all`
/// decodes.
#[test]
fn load_packed_returns_every_job_packed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = RedbStore::open_dir(dir.path()).unwrap();
        let jobs: Vec<kala_job::Job> = (0..12_000)
            .map(|k| kala_job::Job::new(format!("j{k}"), "true"))
            .collect();
        s.apply(Batch {
            put: jobs.clone(),
            ..Batch::default()
        })
        .await
        .unwrap();
        let mut packed: Vec<kala_job::Job> = s
            .load_packed()
            .await
            .unwrap()
            .iter()
            .map(|b| kala_job::packed::decode(b).unwrap())
            .collect();
        let mut all = s.load_all().await.unwrap();
        packed.sort_by(|a, b| a.id.cmp(&b.id));
        all.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(packed.len(), 12_000);
        assert_eq!(packed, all);
        s.close().await.unwrap();
    });
}
