//! [`SqlStore`]: every query of the SQL backends, written once.
//!
//! Owns: the `JobStore` implementation (batches, reads, retention, claims,
//! migrations) over any [`Dialect`].
//! Must not: contain a database's own syntax; ask the dialect.

use std::marker::PhantomData;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::decode;
use kala_store::{Batch, Claim, JobStore, OpenRun, Result, Retention, StoreError, ns_i64};
use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row,
    SqlSafeStr, Type,
};

use crate::batch::{EncodedBatch, retry_transient};
use crate::dialect::{Dialect, RowsAffected};
use crate::error::{map_err, retryable};

/// Rows per multi-row statement (2–3 bound values each: far below every
/// database's limit of 65,535 parameters).
const CHUNK: usize = 2_000;

/// The run rows of `jobs` beyond the newest `keep` each, as `SELECT seq`.
const RUNS_BEYOND: &str = "SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY job_id \
     ORDER BY ran_at DESC, seq DESC) AS rn FROM kala_runs";

/// The migrations, compiled into the binary and recorded in
/// `kala_migrations` (not sqlx's default `_sqlx_migrations`, so kala can
/// share a database with an application that uses sqlx migrations).
pub fn migrator<D: Dialect>() -> Migrator {
    let mut m = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            D::SYNTAX.schema.into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "open runs".into(),
            MigrationType::Simple,
            D::SYNTAX.open_runs.into_sql_str(),
            false,
        ),
    ]);
    m.dangerous_set_table_name("kala_migrations");
    m
}

/// A [`JobStore`] on the database `D` speaks.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::DB>,
    dialect: PhantomData<D>,
}

/// Appends `IN (?, ?, …)` with `ids` bound.
fn push_in<'a, DB: Database>(q: &mut QueryBuilder<DB>, ids: &'a [String])
where
    &'a str: for<'q> Encode<'q, DB> + Type<DB>,
{
    q.push(" IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    q.push(")");
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Connection: Migrate,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'a, 'q> &'a str: Encode<'q, D::DB> + Type<D::DB>,
    String: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    i64: for<'q> Encode<'q, D::DB> + Type<D::DB>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
    <D::DB as Database>::QueryResult: RowsAffected,
{
    /// Connects (see the dialect's options) and applies the migrations.
    pub async fn connect(options: &D::Options) -> Result<SqlStore<D>> {
        let pool = D::connect(options).await?;
        migrator::<D>()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("{} migrations: {e}", D::SYNTAX.name)))?;
        Ok(SqlStore {
            pool,
            dialect: PhantomData,
        })
    }

    /// The pool, for tools and tests.
    pub fn pool(&self) -> &Pool<D::DB> {
        &self.pool
    }

    async fn apply_once(&self, b: &EncodedBatch) -> std::result::Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for table in [
            "kala_jobs WHERE id",
            "kala_runs WHERE job_id",
            "kala_claims WHERE job_id",
        ] {
            for chunk in b.delete.chunks(CHUNK) {
                let mut q = QueryBuilder::<D::DB>::new(format!("DELETE FROM {table}"));
                push_in(&mut q, chunk);
                q.build().execute(&mut *tx).await?;
            }
        }
        for (ids, jobs) in b.put_ids.chunks(CHUNK).zip(b.put_jobs.chunks(CHUNK)) {
            let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_jobs (id, job) ");
            q.push_values(ids.iter().zip(jobs), |mut row, (id, job)| {
                row.push_bind(id.as_str()).push_bind(job.as_str());
            });
            q.push(D::SYNTAX.upsert_job);
            q.build().execute(&mut *tx).await?;
        }
        let runs: Vec<_> = b.run_job_ids.iter().zip(&b.run_at).zip(&b.runs).collect();
        for chunk in runs.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_runs (job_id, ran_at, run) ");
            q.push_values(chunk, |mut row, ((id, at), run)| {
                row.push_bind(id.as_str())
                    .push_bind(**at)
                    .push_bind(run.as_str());
            });
            q.build().execute(&mut *tx).await?;
        }
        if let Some(keep) = b.keep_runs {
            for chunk in b.touched.chunks(CHUNK) {
                let (before, after) = D::SYNTAX.delete_runs_by_seq;
                let mut q = QueryBuilder::<D::DB>::new(before);
                q.push(RUNS_BEYOND).push(" WHERE job_id");
                push_in(&mut q, chunk);
                q.push(") x WHERE rn > ")
                    .push_bind(i64::try_from(keep).unwrap_or(i64::MAX))
                    .push(after);
                q.build().execute(&mut *tx).await?;
            }
        }
        for chunk in b.begin.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new(
                "INSERT INTO kala_open_runs (run_id, job_id, node, entry) ",
            );
            q.push_values(chunk, |mut row, (run_id, job_id, node, entry)| {
                row.push_bind(run_id.as_str())
                    .push_bind(job_id.as_str())
                    .push_bind(node.as_str())
                    .push_bind(entry.as_str());
            });
            q.build().execute(&mut *tx).await?;
        }
        for chunk in b.end.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_open_runs WHERE run_id");
            push_in(&mut q, chunk);
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Every row of `sql` (`SELECT key, json …`), decoded; damage is
    /// named by the row's key.
    async fn keyed_json<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
    ) -> Result<Vec<T>> {
        let rows = QueryBuilder::<D::DB>::new(sql)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(map_err::<D>)?;
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(map_err::<D>)?;
                let json: String = row.try_get(1).map_err(map_err::<D>)?;
                decode(&key, json.as_bytes())
            })
            .collect()
    }

    async fn execute(&self, q: &mut QueryBuilder<D::DB>) -> Result<u64> {
        let done = q.build().execute(&self.pool).await.map_err(map_err::<D>)?;
        Ok(done.rows())
    }
}

#[async_trait]
impl<D: Dialect> JobStore for SqlStore<D>
where
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Connection: Migrate,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    for<'a, 'q> &'a str: Encode<'q, D::DB> + Type<D::DB>,
    String: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    i64: for<'q> Encode<'q, D::DB> + Type<D::DB>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
    <D::DB as Database>::QueryResult: RowsAffected,
{
    fn name(&self) -> &'static str {
        D::SYNTAX.name
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        self.keyed_json("SELECT id, job FROM kala_jobs").await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let mut q = QueryBuilder::<D::DB>::new("SELECT job FROM kala_jobs WHERE id = ");
        q.push_bind(id);
        let row = q
            .build()
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err::<D>)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let job: String = row.try_get(0).map_err(map_err::<D>)?;
                decode(id, job.as_bytes()).map(Some)
            }
        }
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = EncodedBatch::new(&batch)?;
        retry_transient(retryable::<D>, || self.apply_once(&encoded))
            .await
            .map_err(map_err::<D>)
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let mut q = QueryBuilder::<D::DB>::new("SELECT run FROM kala_runs WHERE job_id = ");
        q.push_bind(job_id)
            .push(" ORDER BY ran_at DESC, seq DESC LIMIT ")
            .push_bind(limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX)));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(map_err::<D>)?;
        let mut runs = rows
            .iter()
            .map(|row| {
                let run: String = row.try_get(0).map_err(map_err::<D>)?;
                decode(job_id, run.as_bytes())
            })
            .collect::<Result<Vec<RunRecord>>>()?;
        runs.reverse();
        Ok(runs)
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut dropped = 0;
        if let Some(cutoff) = retention.max_age.and_then(|a| now.checked_sub(a).ok()) {
            let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_runs WHERE ran_at < ");
            q.push_bind(ns_i64(cutoff)?);
            dropped += self.execute(&mut q).await?;
        }
        if let Some(keep) = retention.max_per_job {
            let (before, after) = D::SYNTAX.delete_runs_by_seq;
            let mut q = QueryBuilder::<D::DB>::new(before);
            q.push(RUNS_BEYOND)
                .push(") x WHERE rn > ")
                .push_bind(i64::try_from(keep).unwrap_or(i64::MAX))
                .push(after);
            dropped += self.execute(&mut q).await?;
        }
        let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_claims WHERE expires_at <= ");
        q.push_bind(ns_i64(now)?);
        self.execute(&mut q).await?;
        Ok(dropped)
    }

    async fn delete_all(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(map_err::<D>)?;
        for sql in D::SYNTAX.delete_all.iter() {
            QueryBuilder::<D::DB>::new(*sql)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(map_err::<D>)?;
        }
        tx.commit().await.map_err(map_err::<D>)
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        self.keyed_json("SELECT run_id, entry FROM kala_open_runs")
            .await
    }

    /// Insert the claim if nobody holds the point; otherwise take it over
    /// only if it is ours (a renewal) or expired.
    async fn claim(&self, claim: Claim) -> Result<bool> {
        let scheduled = ns_i64(claim.scheduled_at)?;
        let expires = ns_i64(claim.expires_at)?;
        let (before, after) = D::SYNTAX.insert_if_absent;
        let mut q = QueryBuilder::<D::DB>::new(before);
        q.push("INTO kala_claims (job_id, scheduled_at, owner, expires_at) VALUES (");
        q.separated(", ")
            .push_bind(claim.job_id.as_str())
            .push_bind(scheduled)
            .push_bind(claim.owner.as_str())
            .push_bind(expires);
        q.push(")").push(after);
        if self.execute(&mut q).await? == 1 {
            return Ok(true);
        }
        let mut q = QueryBuilder::<D::DB>::new("UPDATE kala_claims SET owner = ");
        q.push_bind(claim.owner.as_str())
            .push(", expires_at = ")
            .push_bind(expires)
            .push(" WHERE job_id = ")
            .push_bind(claim.job_id.as_str())
            .push(" AND scheduled_at = ")
            .push_bind(scheduled)
            .push(" AND (owner = ")
            .push_bind(claim.owner.as_str())
            .push(" OR expires_at <= ")
            .push_bind(ns_i64(Timestamp::now())?)
            .push(")");
        Ok(self.execute(&mut q).await? == 1)
    }

    async fn close(&self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }
}
