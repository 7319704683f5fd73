//! Group commit and grouped reads: the writers that take every waiting
//! batch into one transaction (each batch's fence checked in it), and the
//! readers that answer every waiting `get` with one statement. The
//! queues are `group`'s; the statements of a batch are `store`'s.
//!
//! Owns: `SqlStore::{check_fences, apply_group_once, write_group,
//! drain_writes, drain_reads}`. Must not: contain a database's own
//! syntax; ask the dialect.

use std::sync::Arc;

use kala_store::json::decode;
use kala_store::{Result, StoreError};
use sqlx::migrate::Migrate;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row, Type,
};

use crate::batch::{EncodedBatch, retry_transient};
use crate::dialect::{Dialect, RowsAffected};
use crate::error::{copy_error, map_err, retryable, unavailable};
use crate::group::{Lookup, Queue, WorkerGuard, Write};
use crate::store::{SqlStore, push_in};

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
    /// Whether each fence holds, with the lease rows held until the
    /// transaction ends (so no lease can change hands before it
    /// commits): `Some(why)` at a fence's index when it does not. One
    /// statement for the whole group.
    async fn check_fences(
        tx: &mut sqlx::Transaction<'_, D::DB>,
        fences: &[&(i64, String, i64, i64)],
    ) -> std::result::Result<Vec<Option<String>>, sqlx::Error> {
        let mut parts: Vec<i64> = fences.iter().map(|f| f.0).collect();
        parts.sort_unstable();
        parts.dedup();
        let mut q = QueryBuilder::<D::DB>::new(
            "SELECT part, owner, token, expires_at FROM kala_leases WHERE part IN (",
        );
        let mut list = q.separated(", ");
        for part in &parts {
            list.push_bind(*part);
        }
        q.push(") ORDER BY part").push(D::SYNTAX.fence_lock);
        let mut leases = std::collections::HashMap::new();
        for row in q.build().fetch_all(&mut **tx).await? {
            let part: i64 = row.try_get(0)?;
            let lease: (String, i64, i64) = (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            leases.insert(part, lease);
        }
        Ok(fences
            .iter()
            .map(|(part, node, token, now)| match leases.get(part) {
                None => Some(format!("partition {part} has no lease")),
                Some((owner, t, expires)) if owner == node && t == token && expires > now => None,
                Some((owner, t, _)) => Some(format!(
                    "{node} no longer holds the lease of partition {part} with token {token} (it is {owner}'s, token {t})"
                )),
            })
            .collect())
    }

    /// One try of a group of batches (one transaction): each batch's
    /// verdict, `Some(why)` where its fence did not hold (nothing of that
    /// batch written); the others are written together.
    async fn apply_group_once(
        pool: &Pool<D::DB>,
        group: &[&EncodedBatch],
    ) -> std::result::Result<Vec<Option<String>>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        let fences: Vec<_> = group.iter().filter_map(|b| b.fence.as_ref()).collect();
        let mut fenced = if fences.is_empty() {
            Vec::new()
        } else {
            Self::check_fences(&mut tx, &fences).await?
        }
        .into_iter();
        let verdicts: Vec<Option<String>> = group
            .iter()
            .map(|b| b.fence.as_ref().and_then(|_| fenced.next().flatten()))
            .collect();
        let clear: Vec<&EncodedBatch> = group
            .iter()
            .zip(&verdicts)
            .filter(|(_, why)| why.is_none())
            .map(|(b, _)| *b)
            .collect();
        match clear.as_slice() {
            [] => {
                tx.rollback().await?;
                return Ok(verdicts);
            }
            [one] => Self::write(&mut tx, one).await?,
            many => Self::write(&mut tx, &EncodedBatch::merge(many)).await?,
        }
        tx.commit().await?;
        Ok(verdicts)
    }

    /// A group's batches, with their outcomes sent back. When the group's
    /// transaction fails for another reason than an unreachable database,
    /// each batch is tried alone, so that only a batch at fault fails.
    async fn write_group(pool: &Pool<D::DB>, group: Vec<Write>) {
        let batches: Vec<&EncodedBatch> = group.iter().map(|p| &p.batch).collect();
        let fenced =
            |verdict: Option<String>| verdict.map_or(Ok(()), |why| Err(StoreError::Fenced(why)));
        let outcome =
            retry_transient(retryable::<D>, || Self::apply_group_once(pool, &batches)).await;
        let results: Vec<Result<()>> = match outcome {
            Ok(verdicts) => verdicts.into_iter().map(fenced).collect(),
            Err(e) if batches.len() > 1 && !unavailable::<D>(&e) => {
                tracing::debug!(error = %e, batches = batches.len(), "a group commit failed; its batches are written one by one");
                let mut results = Vec::with_capacity(batches.len());
                for b in &batches {
                    let alone = [*b];
                    let one =
                        retry_transient(retryable::<D>, || Self::apply_group_once(pool, &alone))
                            .await;
                    results.push(match one {
                        Ok(mut v) => fenced(v.pop().flatten()),
                        Err(e) => Err(map_err::<D>(e)),
                    });
                }
                results
            }
            Err(e) => {
                let e = map_err::<D>(e);
                batches.iter().map(|_| Err(copy_error(&e))).collect()
            }
        };
        for (p, result) in group.into_iter().zip(results) {
            // A caller that stopped waiting no longer needs the outcome.
            let _ = p.reply.send(result);
        }
    }

    /// A writer: groups from the queue until it is empty.
    pub(crate) async fn drain_writes(pool: Pool<D::DB>, queue: Arc<Queue<Write>>) {
        let mut guard = WorkerGuard {
            queue: &queue,
            done: false,
        };
        let together = |a: &Write, b: &Write| {
            a.batch.keep_runs == b.batch.keep_runs
                && (D::SYNTAX.group_fenced || (a.batch.fence.is_none() && b.batch.fence.is_none()))
        };
        while let Some(group) = queue.take(together) {
            Self::write_group(&pool, group).await;
        }
        guard.done = true;
    }

    /// A reader: the jobs the lookups waiting together ask for, in one
    /// statement, until the queue is empty. Each lookup gets its own
    /// answer: a job that does not decode fails only its lookups.
    pub(crate) async fn drain_reads(pool: Pool<D::DB>, queue: Arc<Queue<Lookup>>) {
        let mut guard = WorkerGuard {
            queue: &queue,
            done: false,
        };
        while let Some(group) = queue.take(|_, _| true) {
            let mut ids: Vec<String> = group.iter().map(|l| l.id.clone()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut q = QueryBuilder::<D::DB>::new("SELECT id, job FROM kala_jobs WHERE id");
            push_in(&mut q, &ids);
            let found: std::result::Result<std::collections::HashMap<String, String>, _> =
                match q.build().fetch_all(&pool).await {
                    Ok(rows) => rows
                        .iter()
                        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                        .collect(),
                    Err(e) => Err(e),
                };
            match found {
                Ok(jobs) => {
                    for l in group {
                        let answer = jobs
                            .get(&l.id)
                            .map(|json| decode(&l.id, json.as_bytes()))
                            .transpose();
                        let _ = l.reply.send(answer);
                    }
                }
                Err(e) => {
                    let e = map_err::<D>(e);
                    for l in group {
                        let _ = l.reply.send(Err(copy_error(&e)));
                    }
                }
            }
        }
        guard.done = true;
    }
}
