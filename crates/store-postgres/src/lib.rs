//! # kala-store-postgres
//!
//! A [`JobStore`] on PostgreSQL (`--jobdb=postgres`), through sqlx.
//!
//! * The schema (`migrations/`) is applied at start-up by sqlx's migrator,
//!   which records what it applied in `kala_migrations` (not sqlx's default
//!   `_sqlx_migrations`, so kala can share a database with an application
//!   that uses sqlx migrations of its own). Tables: `kala_jobs(id, job)`,
//!   `kala_runs(seq, job_id, ran_at, run)`, `kala_claims`.
//! * Every [`Batch`] is one transaction; jobs are upserted
//!   (`INSERT … ON CONFLICT DO UPDATE`, never Kala's racy read-then-write)
//!   in id order so that two batches cannot deadlock on each other, and a
//!   transaction that still loses a deadlock or serialisation race is
//!   retried.
//! * A write is acknowledged once PostgreSQL committed it (with the
//!   server's default `synchronous_commit = on`, that means flushed to WAL).
//! * The pool opens connections as needed: when the server goes away,
//!   calls fail with [`StoreError::Unavailable`] (HTTP 503) within
//!   [`PostgresOptions::acquire_timeout`], and they succeed again once it
//!   is back, with no restart of kala.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::decode;
use kala_store::sql::{EncodedBatch, retry_transient};
use kala_store::{Batch, Claim, JobStore, Result, Retention, StoreError, ns_i64};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Row, SqlSafeStr};

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Kala's form `host:port/db` (optionally `?sslmode=…`), or a full
    /// `postgres://` URL.
    pub address: String,
    /// Overrides the URL's user when not empty.
    pub username: String,
    /// Overrides the URL's password when not empty.
    pub password: String,
    /// Keep kala's tables in this schema (created if missing) instead of
    /// the connection's default search path.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// How long a call waits for a connection before it fails with
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            address: String::new(),
            username: String::new(),
            password: String::new(),
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl PostgresOptions {
    /// The connect options these settings describe (no I/O).
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let address = self.address.trim();
        if address.is_empty() {
            return Err(StoreError::Backend(
                "--jobdb-address is required for postgres: host:port/database or a postgres:// URL"
                    .into(),
            ));
        }
        let url = if address.starts_with("postgres://") || address.starts_with("postgresql://") {
            address.to_string()
        } else {
            format!("postgres://{address}")
        };
        let mut opts = PgConnectOptions::from_str(&url).map_err(|e| {
            StoreError::Backend(format!("--jobdb-address {address:?} is not usable: {e}"))
        })?;
        if !self.username.is_empty() {
            opts = opts.username(&self.username);
        }
        if !self.password.is_empty() {
            opts = opts.password(&self.password);
        }
        if let Some(schema) = &self.schema {
            check_identifier(schema)?;
            opts = opts.options([("search_path", schema.as_str())]);
        }
        Ok(opts.application_name("kala"))
    }
}

/// Schema names go into SQL text; allow only plain identifiers.
fn check_identifier(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "schema {name:?}: use letters, digits and _ only"
        )))
    }
}

/// The migrations, compiled into the binary.
pub fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../migrations/0001_init.sql").into_sql_str(),
        false,
    )]);
    m.dangerous_set_table_name("kala_migrations");
    m
}

pub struct PostgresStore {
    pool: PgPool,
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(format!("postgres: {e}")),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Class 08: connection exception; 57P01-57P03: the server is
            // shutting down or starting up.
            if code.starts_with("08") || code.starts_with("57P") {
                StoreError::Unavailable(format!("postgres: {e}"))
            } else {
                StoreError::Backend(format!("postgres: {e}"))
            }
        }
        _ => StoreError::Backend(format!("postgres: {e}")),
    }
}

/// Deadlock or serialisation failure: the transaction can be retried.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01") | Some("40001")))
}

impl PostgresStore {
    /// Connects, creates the schema if asked, applies the migrations.
    pub async fn connect(options: &PostgresOptions) -> Result<PostgresStore> {
        let connect = options.connect_options()?;
        if let Some(schema) = &options.schema {
            // search_path names a schema that may not exist yet.
            let mut conn = sqlx::PgConnection::connect_with(&connect)
                .await
                .map_err(map_err)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut conn)
            .await
            .map_err(map_err)?;
            conn.close().await.map_err(map_err)?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("postgres migrations: {e}")))?;
        Ok(PostgresStore { pool })
    }

    /// The pool, for tools and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply_once(&self, b: &EncodedBatch) -> std::result::Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if !b.delete.is_empty() {
            for sql in [
                "DELETE FROM kala_jobs WHERE id = ANY($1)",
                "DELETE FROM kala_runs WHERE job_id = ANY($1)",
                "DELETE FROM kala_claims WHERE job_id = ANY($1)",
            ] {
                sqlx::query(sql).bind(&b.delete).execute(&mut *tx).await?;
            }
        }
        for (ids, jobs) in b.put_ids.chunks(5_000).zip(b.put_jobs.chunks(5_000)) {
            sqlx::query(
                "INSERT INTO kala_jobs (id, job) SELECT * FROM UNNEST($1::text[], $2::text[]) \
                 ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job",
            )
            .bind(ids)
            .bind(jobs)
            .execute(&mut *tx)
            .await?;
        }
        if !b.runs.is_empty() {
            sqlx::query(
                "INSERT INTO kala_runs (job_id, ran_at, run) \
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[])",
            )
            .bind(&b.run_job_ids)
            .bind(&b.run_at)
            .bind(&b.runs)
            .execute(&mut *tx)
            .await?;
            if let Some(keep) = b.keep_runs {
                sqlx::query(
                    "DELETE FROM kala_runs WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() \
                     OVER (PARTITION BY job_id ORDER BY ran_at DESC, seq DESC) AS rn \
                     FROM kala_runs WHERE job_id = ANY($1)) x WHERE rn > $2)",
                )
                .bind(&b.touched)
                .bind(keep as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query("SELECT id, job FROM kala_jobs")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let id: &str = row.try_get(0).map_err(map_err)?;
                let job: &str = row.try_get(1).map_err(map_err)?;
                decode(id, job.as_bytes())
            })
            .collect()
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT job FROM kala_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let job: &str = row.try_get(0).map_err(map_err)?;
                decode(id, job.as_bytes()).map(Some)
            }
        }
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = EncodedBatch::new(&batch)?;
        retry_transient(retryable, || self.apply_once(&encoded))
            .await
            .map_err(map_err)
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT run FROM kala_runs WHERE job_id = $1 ORDER BY ran_at DESC, seq DESC LIMIT $2",
        )
        .bind(job_id)
        .bind(limit.map(|l| l as i64))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut runs = rows
            .iter()
            .map(|row| {
                let run: &str = row.try_get(0).map_err(map_err)?;
                decode(job_id, run.as_bytes())
            })
            .collect::<Result<Vec<RunRecord>>>()?;
        runs.reverse();
        Ok(runs)
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut dropped = 0;
        if let Some(cutoff) = retention.max_age.and_then(|a| now.checked_sub(a).ok()) {
            dropped += sqlx::query("DELETE FROM kala_runs WHERE ran_at < $1")
                .bind(ns_i64(cutoff)?)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
        }
        if let Some(keep) = retention.max_per_job {
            dropped += sqlx::query(
                "DELETE FROM kala_runs WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() \
                 OVER (PARTITION BY job_id ORDER BY ran_at DESC, seq DESC) AS rn FROM kala_runs) x \
                 WHERE rn > $1)",
            )
            .bind(keep as i64)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        }
        sqlx::query("DELETE FROM kala_claims WHERE expires_at <= $1")
            .bind(ns_i64(now)?)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(dropped)
    }

    async fn delete_all(&self) -> Result<()> {
        sqlx::query("TRUNCATE kala_jobs, kala_runs, kala_claims")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn claim(&self, claim: Claim) -> Result<bool> {
        let won = sqlx::query(
            "INSERT INTO kala_claims (job_id, scheduled_at, owner, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job_id, scheduled_at) DO UPDATE \
             SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
             WHERE kala_claims.owner = EXCLUDED.owner OR kala_claims.expires_at <= $5 \
             RETURNING 1",
        )
        .bind(&claim.job_id)
        .bind(ns_i64(claim.scheduled_at)?)
        .bind(&claim.owner)
        .bind(ns_i64(claim.expires_at)?)
        .bind(ns_i64(Timestamp::now())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(won.is_some())
    }

    async fn close(&self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let o = |a: &str| PostgresOptions {
            address: a.into(),
            ..PostgresOptions::default()
        };
        assert!(o("").connect_options().is_err());
        let c = o("127.0.0.1:5432/test?sslmode=disable")
            .connect_options()
            .unwrap();
        assert_eq!(c.get_host(), "127.0.0.1");
        assert_eq!(c.get_port(), 5432);
        assert_eq!(c.get_database(), Some("test"));
        let c = PostgresOptions {
            username: "kala".into(),
            ..o("postgres://someone@db.example:6543/jobs")
        }
        .connect_options()
        .unwrap();
        assert_eq!(c.get_username(), "kala");
        assert_eq!(c.get_port(), 6543);
        let bad = PostgresOptions {
            schema: Some("x; DROP TABLE y".into()),
            ..o("h:1/d")
        };
        assert!(bad.connect_options().is_err());
    }
}
