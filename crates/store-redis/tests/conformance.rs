//! The shared conformance suite against the real Redis on this machine
//! (`KALA_TEST_REDIS`, default 127.0.0.1:6379), under a fresh key prefix.
//! If Redis cannot be reached the test fails: it never passes silently.

use std::sync::Arc;

use kala_store::JobStore;
use kala_store_redis::{RedisOptions, RedisStore};

fn options(prefix: &str) -> RedisOptions {
    RedisOptions {
        address: std::env::var("KALA_TEST_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into()),
        prefix: prefix.into(),
        ..RedisOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_the_conformance_suite() {
    let prefix = format!("kala-test-{}", uuid::Uuid::new_v4().simple());
    let open = || {
        let o = options(&prefix);
        async move {
            let s = RedisStore::connect(&o).await.unwrap_or_else(|e| {
                panic!("Redis at {:?} is needed for this test: {e}", o.address)
            });
            Arc::new(s) as Arc<dyn JobStore>
        }
    };
    kala_store::conformance::run_all(open, 100_000).await;
}
