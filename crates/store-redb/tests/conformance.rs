use std::sync::Arc;

use kala_store::{JobStore, conformance};
use kala_store_redb::RedbStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    conformance::run_all(
        || {
            let path = path.clone();
            async move { Arc::new(RedbStore::open_dir(&path).expect("open redb")) as Arc<dyn JobStore> }
        },
        100_000,
    )
    .await;
}
