//! Damaged files: refused with an error naming the file, never a panic and
//! never a silently empty store.

use kala_store::{Batch, JobStore};
use kala_store_redb::RedbStore;

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
