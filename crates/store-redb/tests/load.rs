//! The start-up read is split over threads by ranges of ids: every job
//! comes back exactly once, whatever its id looks like.

use kala_store::{Batch, JobStore};
use kala_store_redb::RedbStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_is_loaded_once_whatever_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(dir.path()).unwrap();
    let prefixes = [
        "", "0", "7", "8", "f", "F", "g", "z", "~", "é", "A-", "ffff", "80",
    ];
    let mut ids = Vec::new();
    for (k, p) in prefixes.iter().cycle().take(13_000).enumerate() {
        ids.push(format!("{p}{k:05}"));
    }
    ids.push(uuid::Uuid::new_v4().to_string());
    let jobs = ids
        .iter()
        .map(|id| {
            let mut j = kala_job::Job::new(format!("job {id}"), "true");
            j.id = id.clone();
            j
        })
        .collect();
    store
        .apply(Batch {
            put: jobs,
            ..Batch::default()
        })
        .await
        .unwrap();
    let mut loaded: Vec<String> = store
        .load_all()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    loaded.sort();
    ids.sort();
    assert_eq!(loaded, ids);
}
