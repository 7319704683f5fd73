//! The shared conformance suite against the real MariaDB/MySQL on this
//! machine (`KALA_TEST_MYSQL`, default `mysql://root@127.0.0.1:3306/test`),
//! in a fresh database that is dropped afterwards. If the server cannot be
//! reached the test fails.

use std::sync::Arc;

use kala_store::JobStore;
use kala_store_mysql::{ConnectOptions, MySqlOptions, MySqlStore};
use sqlx::Connection;

fn base_url() -> String {
    std::env::var("KALA_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_passes_the_conformance_suite() {
    let base = base_url();
    let db = format!("kala_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::MySqlConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("MySQL/MariaDB at {base:?} is needed for this test: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{db}`")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let url = format!(
        "{}/{db}",
        base.rsplit_once('/').map_or(base.as_str(), |p| p.0)
    );
    let options = MySqlOptions {
        connect: ConnectOptions {
            address: url,
            ..ConnectOptions::default()
        },
        ..MySqlOptions::default()
    };
    let open = || {
        let o = options.clone();
        async move {
            let s = MySqlStore::connect(&o)
                .await
                .unwrap_or_else(|e| panic!("MySQL at {:?}: {e}", o.connect.address));
            Arc::new(s) as Arc<dyn JobStore>
        }
    };
    kala_store::conformance::run_all(open, 100_000).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE `{db}`")))
        .execute(&mut admin)
        .await
        .expect("drop the test database");
}
