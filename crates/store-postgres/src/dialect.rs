//! What is PostgreSQL's own beyond its syntax (`Syntax::POSTGRES` in
//! kala-store-sql): connecting, with the schema created first when one is
//! named.
//!
//! Owns: [`PgDialect`]. Must not: contain a query kala-store-sql has.

use kala_store::Result;
use kala_store_sql::{Classify, Dialect, Syntax};
use std::sync::Arc;

use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Connection, Postgres};
use tokio::sync::Notify;

use crate::address::PostgresOptions;

/// PostgreSQL for [`kala_store_sql::SqlStore`].
pub struct PgDialect;

impl Dialect for PgDialect {
    type DB = Postgres;
    type Options = PostgresOptions;

    async fn connect(options: &PostgresOptions) -> Result<PgPool> {
        let map = kala_store_sql::map_err::<PgDialect>;
        let connect = options.connect_options()?;
        if let Some(schema) = &options.schema {
            // search_path names a schema that may not exist yet.
            let mut conn = sqlx::PgConnection::connect_with(&connect)
                .await
                .map_err(map)?;
            // IF NOT EXISTS is not safe against a concurrent create (two
            // instances starting at once on a new schema): the loser gets
            // a unique violation; the schema is there all the same.
            let created = sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut conn)
            .await;
            if let Err(e) = created {
                let exists: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                        .bind(schema)
                        .fetch_optional(&mut conn)
                        .await
                        .map_err(map)?;
                if exists.is_none() {
                    return Err(map(e));
                }
            }
            conn.close().await.map_err(map)?;
        }
        let target = format!(
            "{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        let pool = options.connect.pool::<PgDialect>(connect, &target).await?;
        // kala's tables grow from empty and churn (a job's row is
        // rewritten at every run): without autovacuum they are never
        // analyzed nor vacuumed. kala's hot statements do not depend on
        // statistics, but the tables bloat; say so once.
        // Only a warning: a server that will not say is not refused.
        let autovacuum: Option<String> = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&pool)
            .await
            .ok();
        if autovacuum.as_deref() == Some("off") {
            tracing::warn!(
                server = %target,
                "PostgreSQL's autovacuum is off: kala's tables (kala_jobs, kala_runs, …) are \
                 neither vacuumed nor analyzed and grow with dead rows; run VACUUM ANALYZE on \
                 them regularly, or turn autovacuum on"
            );
        }
        Ok(pool)
    }

    /// `LISTEN kala_changes` on a connection of its own: every commit
    /// that appended changes (`pg_notify` in the same transaction) wakes
    /// the follower at once. A lost connection also wakes it (a
    /// notification may have been missed; the follower polls anyway).
    async fn listen(pool: &PgPool) -> Option<Arc<Notify>> {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for changes; polling only");
                return None;
            }
        };
        if let Err(e) = listener.listen("kala_changes").await {
            tracing::warn!(error = %e, "cannot LISTEN for changes; polling only");
            return None;
        }
        let signal = Arc::new(Notify::new());
        let wake = signal.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(_) => wake.notify_one(),
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "LISTEN connection failed; retrying");
                        wake.notify_one();
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Some(signal)
    }

    const SYNTAX: Syntax = Syntax::POSTGRES;
    const CLASSIFY: Classify = crate::error::classify;
}
