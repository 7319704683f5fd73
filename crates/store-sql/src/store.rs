//! [`SqlStore`]: every query of the SQL backends, written once.
//!
//! Owns: the `JobStore` implementation (batches, reads, retention, claims,
//! running the migrations of `migrate` at connect) over any [`Dialect`],
//! and the statements of one batch (`write`); `commit` groups them.
//! Must not: contain a database's own syntax; ask the dialect.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::{decode, encode_string};
use kala_store::{
    ALL_JOBS, AuditEntry, Batch, Claim, JobChange, JobStore, Notice, OpenRun, Result, Retention,
    StoreError, ns_i64, oldest_first, soonest,
};
use sqlx::migrate::Migrate;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row, Type,
};

use crate::batch::EncodedBatch;
use crate::dialect::{Dialect, RowsAffected};
use crate::error::{abandoned, map_err};
use crate::group::{Lookup, Queue, Write};
use crate::migrate::migrator;

/// Rows per multi-row statement (2–3 bound values each: far below every
/// database's limit of 65,535 parameters).
pub(crate) const CHUNK: usize = 2_000;

/// The run rows of `jobs` beyond the newest `keep` each, as `SELECT seq`.
const RUNS_BEYOND: &str = "SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY job_id \
     ORDER BY ran_at DESC, seq DESC) AS rn FROM kala_runs";

/// A [`JobStore`] on the database `D` speaks.
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D::DB>,
    /// Woken when another instance committed a change (PostgreSQL's
    /// `LISTEN`); `None` where the database has no such thing.
    pub(crate) signal: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Batches waiting for a writer (group commit, see `group`).
    writes: Arc<Queue<Write>>,
    /// Job reads waiting for a reader (one statement for those waiting).
    reads: Arc<Queue<Lookup>>,
    dialect: PhantomData<D>,
}

/// Appends `IN (?, ?, …)` with `ids` bound.
pub(crate) fn push_in<'a, DB: Database>(q: &mut QueryBuilder<DB>, ids: &'a [String])
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
    i64: for<'q> Encode<'q, D::DB> + for<'r> Decode<'r, D::DB> + Type<D::DB>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
    <D::DB as Database>::QueryResult: RowsAffected,
{
    /// Connects (see the dialect's options) and applies the migrations.
    pub async fn connect(options: &D::Options) -> Result<SqlStore<D>> {
        let pool = D::connect(options).await?;
        // Instances starting at once on a new database race on the
        // migrations (sqlx's lock does not hold on every server: MariaDB
        // answers a duplicate key in the migrations table): the loser
        // tries again and finds them applied.
        let mut tries = 0;
        loop {
            match migrator::<D>().run(&pool).await {
                Ok(()) => break,
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::debug!(error = %e, "migrations raced with another instance; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
                }
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "{} migrations: {e}",
                        D::SYNTAX.name
                    )));
                }
            }
        }
        let signal = D::listen(&pool).await;
        Ok(SqlStore {
            pool,
            signal,
            writes: Arc::default(),
            reads: Arc::default(),
            dialect: PhantomData,
        })
    }

    /// The pool, for tools and tests.
    pub fn pool(&self) -> &Pool<D::DB> {
        &self.pool
    }

    /// Inserts or replaces jobs (ids in id order, JSON at the same index).
    async fn upsert(
        tx: &mut sqlx::Transaction<'_, D::DB>,
        ids: &[String],
        jobs: &[String],
    ) -> std::result::Result<(), sqlx::Error> {
        for (ids, jobs) in ids.chunks(CHUNK).zip(jobs.chunks(CHUNK)) {
            let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_jobs (id, job) ");
            q.push_values(ids.iter().zip(jobs), |mut row, (id, job)| {
                row.push_bind(id.as_str()).push_bind(job.as_str());
            });
            q.push(D::SYNTAX.upsert_job);
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Applies changes to the stored jobs: their rows are locked (in id
    /// order), decoded, changed and written back in this transaction, so
    /// that no change another instance commits meanwhile is lost.
    async fn update_jobs(
        tx: &mut sqlx::Transaction<'_, D::DB>,
        chunk: &[(String, Vec<JobChange>)],
    ) -> std::result::Result<(), sqlx::Error> {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let mut q = QueryBuilder::<D::DB>::new("SELECT id, job FROM kala_jobs WHERE id");
        push_in(&mut q, &ids);
        q.push(" ORDER BY id FOR UPDATE");
        let rows = q.build().fetch_all(&mut **tx).await?;
        let changes: std::collections::HashMap<&str, &Vec<JobChange>> =
            chunk.iter().map(|(id, c)| (id.as_str(), c)).collect();
        let (mut put_ids, mut put_jobs) = (Vec::new(), Vec::new());
        for row in rows {
            let id: String = row.try_get(0)?;
            let json: String = row.try_get(1)?;
            let mut job: Job =
                decode(&id, json.as_bytes()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            for c in changes.get(id.as_str()).into_iter().flat_map(|c| c.iter()) {
                c.apply(&mut job);
            }
            put_jobs.push(encode_string(&job).map_err(|e| sqlx::Error::Decode(Box::new(e)))?);
            put_ids.push(id);
        }
        Self::upsert(tx, &put_ids, &put_jobs).await
    }

    /// Appends change rows for `ids` and wakes the other instances at
    /// commit (where the database can).
    async fn announce(
        tx: &mut sqlx::Transaction<'_, D::DB>,
        ids: &[String],
        now: i64,
    ) -> std::result::Result<(), sqlx::Error> {
        for chunk in ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_changes (job_id, at) ");
            q.push_values(chunk, |mut row, id| {
                row.push_bind(id.as_str()).push_bind(now);
            });
            q.build().execute(&mut **tx).await?;
        }
        if !ids.is_empty()
            && let Some(notify) = D::SYNTAX.notify
        {
            QueryBuilder::<D::DB>::new(notify)
                .build()
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Writes one batch (or a group merged into one) in `tx`.
    pub(crate) async fn write(
        tx: &mut sqlx::Transaction<'_, D::DB>,
        b: &EncodedBatch,
    ) -> std::result::Result<(), sqlx::Error> {
        for table in [
            "kala_jobs WHERE id",
            "kala_runs WHERE job_id",
            "kala_claims WHERE job_id",
            "kala_notices WHERE job_id",
        ] {
            for chunk in b.delete.chunks(CHUNK) {
                let mut q = QueryBuilder::<D::DB>::new(format!("DELETE FROM {table}"));
                push_in(&mut q, chunk);
                q.build().execute(&mut **tx).await?;
            }
        }
        Self::upsert(tx, &b.put_ids, &b.put_jobs).await?;
        for chunk in b.update.chunks(CHUNK) {
            Self::update_jobs(tx, chunk).await?;
        }
        let runs: Vec<_> = b.run_job_ids.iter().zip(&b.run_at).zip(&b.runs).collect();
        for chunk in runs.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_runs (job_id, ran_at, run) ");
            q.push_values(chunk, |mut row, ((id, at), run)| {
                row.push_bind(id.as_str())
                    .push_bind(**at)
                    .push_bind(run.as_str());
            });
            q.build().execute(&mut **tx).await?;
        }
        if let Some(keep) = b.keep_runs {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            for chunk in b.touched.chunks(CHUNK) {
                let mut q = match D::SYNTAX.trim_runs {
                    Some([first, cut, last]) => {
                        let mut q = QueryBuilder::<D::DB>::new(first);
                        q.push_values(chunk, |mut row, id| {
                            row.push_bind(id.as_str());
                        });
                        q.push(cut).push_bind(keep).push(last);
                        q
                    }
                    None => {
                        let (before, after) = D::SYNTAX.delete_runs_by_seq;
                        let mut q = QueryBuilder::<D::DB>::new(before);
                        q.push(RUNS_BEYOND).push(" WHERE job_id");
                        push_in(&mut q, chunk);
                        q.push(") x WHERE rn > ").push_bind(keep).push(after);
                        q
                    }
                };
                q.build().execute(&mut **tx).await?;
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
            q.build().execute(&mut **tx).await?;
        }
        for chunk in b.end.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_open_runs WHERE run_id");
            push_in(&mut q, chunk);
            q.build().execute(&mut **tx).await?;
        }
        for chunk in b.notices.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new(
                "INSERT INTO kala_notices (id, job_id, pending, next_at, done_at, notice) ",
            );
            q.push_values(chunk, |mut row, (id, job, pending, next, done, json)| {
                row.push_bind(id.as_str())
                    .push_bind(job.as_str())
                    .push_bind(*pending)
                    .push_bind(*next)
                    .push_bind(*done)
                    .push_bind(json.as_str());
            });
            q.push(D::SYNTAX.upsert_notice);
            q.build().execute(&mut **tx).await?;
        }
        Self::insert_audit(tx, &b.audit).await?;
        Self::announce(tx, &b.changed, b.now).await?;
        Ok(())
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
    i64: for<'q> Encode<'q, D::DB> + for<'r> Decode<'r, D::DB> + Type<D::DB>,
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
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lookup = Lookup {
            id: id.to_string(),
            reply,
        };
        if self.reads.push(lookup) {
            tokio::spawn(Self::drain_reads(
                self.pool.clone(),
                Arc::clone(&self.reads),
            ));
        }
        answer.await.map_err(|_| abandoned::<D>("read"))?
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = EncodedBatch::new(&batch)?;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        if self.writes.push(Write { batch, reply }) {
            tokio::spawn(Self::drain_writes(
                self.pool.clone(),
                Arc::clone(&self.writes),
            ));
        }
        outcome.await.map_err(|_| abandoned::<D>("write"))?
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

    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()> {
        let rows = crate::batch::encode_audit(&audit)?;
        let mut tx = self.pool.begin().await.map_err(map_err::<D>)?;
        Self::insert_audit(&mut tx, &rows)
            .await
            .map_err(map_err::<D>)?;
        for sql in D::SYNTAX.delete_all.iter() {
            QueryBuilder::<D::DB>::new(*sql)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(map_err::<D>)?;
        }
        Self::announce(&mut tx, &[ALL_JOBS.to_string()], ns_i64(Timestamp::now())?)
            .await
            .map_err(map_err::<D>)?;
        tx.commit().await.map_err(map_err::<D>)
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        self.keyed_json("SELECT run_id, entry FROM kala_open_runs")
            .await
    }

    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        let mut q = QueryBuilder::<D::DB>::new(
            "SELECT id, notice FROM kala_notices WHERE pending = 1 ORDER BY next_at, id LIMIT ",
        );
        q.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let out = self.keyed_rows(&mut q).await?;
        Ok(soonest(out, limit))
    }

    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>> {
        let mut q =
            QueryBuilder::<D::DB>::new("SELECT id, notice FROM kala_notices WHERE job_id = ");
        q.push_bind(job_id);
        let mut out = self.keyed_rows(&mut q).await?;
        oldest_first(&mut out);
        Ok(out)
    }

    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_page(before, limit).await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        self.prune_audit_rows(before).await
    }

    async fn prune_notices(&self, before: Timestamp) -> Result<u64> {
        let mut q =
            QueryBuilder::<D::DB>::new("DELETE FROM kala_notices WHERE pending = 0 AND done_at < ");
        q.push_bind(ns_i64(before)?);
        self.execute(&mut q).await
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

    fn coordination(&self) -> Option<&dyn kala_store::Coordination> {
        Some(self)
    }
}
