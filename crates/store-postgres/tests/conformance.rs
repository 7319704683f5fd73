//! The shared conformance suite against the real PostgreSQL on this
//! machine (`KALA_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`), in a fresh schema that is
//! dropped afterwards. If PostgreSQL cannot be reached the test fails.

use std::sync::Arc;

use kala_store::JobStore;
use kala_store_postgres::PostgresStore;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let (schema, options) = common::fresh_schema();
    let open = || {
        let o = options.clone();
        async move {
            let s = PostgresStore::connect(&o).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {:?} is needed for this test: {e}",
                    o.connect.address
                )
            });
            Arc::new(s) as Arc<dyn JobStore>
        }
    };
    kala_store::conformance::run_all(open, 100_000).await;

    // Migrations are idempotent, and the schema goes away afterwards.
    let s = PostgresStore::connect(&options).await.expect("reconnect");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(s.pool())
    .await
    .expect("drop the test schema");
    s.close().await.expect("close");
}
