use std::sync::Arc;

use kala_store::{JobStore, MemoryStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    conformance::run_all(|| async { store.clone() }, 100_000).await;
}

#[tokio::test]
async fn shared_memory_store_passes_the_suite_with_the_cluster_checks() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::shared());
    assert!(store.coordination().is_some());
    conformance::run_all(|| async { store.clone() }, 1_000).await;
}
