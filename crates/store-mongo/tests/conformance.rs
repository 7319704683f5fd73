//! The shared conformance suite against a MongoDB-wire server: secantusdb
//! started on a free loopback port, or the MongoDB in
//! `KALA_TEST_MONGO_URL`. Each test uses its own database and drops it.

use std::sync::Arc;

use kala_store::JobStore;
use kala_store_mongo::test_server::MongoUnderTest;
use kala_store_mongo::{MongoOptions, MongoStore, Transactions};

async fn suite(server: &MongoUnderTest, transactions: Transactions, bulk: usize) {
    let options = MongoOptions {
        address: server.address.clone(),
        database: format!("kala_test_{}", uuid::Uuid::new_v4().simple()),
        transactions,
        ..MongoOptions::default()
    };
    let open = || {
        let o = options.clone();
        async move {
            let s = MongoStore::connect(&o)
                .await
                .unwrap_or_else(|e| panic!("MongoDB at {:?}: {e}", o.address));
            Arc::new(s) as Arc<dyn JobStore>
        }
    };
    kala_store::conformance::run_all(open, bulk).await;
    let client = mongodb::Client::with_uri_str(&server.address)
        .await
        .expect("client");
    client
        .database(&options.database)
        .drop()
        .await
        .expect("drop the test database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_passes_the_conformance_suite() {
    let server = MongoUnderTest::start();
    eprintln!("MongoDB server under test: {}", server.kind);
    suite(&server, Transactions::Auto, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_without_transactions_passes_the_conformance_suite() {
    let server = MongoUnderTest::start();
    suite(&server, Transactions::Never, 10_000).await;
}
