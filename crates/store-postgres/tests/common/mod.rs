//! What the PostgreSQL tests share: where the server is
//! (`KALA_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`)
//! and the options of a store in a fresh schema of its own.

use kala_store_postgres::{ConnectOptions, PostgresOptions};

pub fn url() -> String {
    std::env::var("KALA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new schema's name and the options of a store in it.
pub fn fresh_schema() -> (String, PostgresOptions) {
    let schema = format!("kala_test_{}", uuid::Uuid::new_v4().simple());
    let options = PostgresOptions {
        connect: ConnectOptions {
            address: url(),
            ..ConnectOptions::default()
        },
        schema: Some(schema.clone()),
    };
    (schema, options)
}
