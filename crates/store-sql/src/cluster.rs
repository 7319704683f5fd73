//! [`Coordination`] on SQL: nodes, leases and changes in three tables
//! (migration 3).
//!
//! Owns: the cluster queries. Leases are kept in one transaction per round
//! that locks the lease rows (`FOR UPDATE`), so two instances cannot take
//! one partition; a fenced batch holds its lease row with a share lock
//! (see `store`), so a lease cannot change hands while a run that proved
//! it begins.
//! Must not: decide who owns what (the engine does).

use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId};
use kala_store::json::{decode, encode_string};
use kala_store::{Coordination, Lease, LeaseRequest, NodeInfo, Result, ns_i64};
use sqlx::migrate::Migrate;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type,
};

use crate::dialect::{Dialect, RowsAffected};
use crate::error::map_err;
use crate::store::{CHUNK, SqlStore, push_in};

fn ts(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl<D: Dialect> Coordination for SqlStore<D>
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
    async fn heartbeat(&self, node: &NodeInfo) -> Result<Vec<NodeInfo>> {
        let info = encode_string(node)?;
        let expires = ns_i64(node.expires_at)?;
        let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_nodes (name, expires_at, info) ");
        q.push_values([()], |mut row, ()| {
            row.push_bind(node.name.as_str())
                .push_bind(expires)
                .push_bind(info.as_str());
        });
        q.push(D::SYNTAX.upsert_node);
        self.execute(&mut q).await?;
        let forget = ns_i64(node.heartbeat_at - SignedDuration::from_hours(1))?;
        let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_nodes WHERE expires_at < ");
        q.push_bind(forget);
        self.execute(&mut q).await?;
        self.keyed_json("SELECT name, info FROM kala_nodes").await
    }

    async fn leave(&self, node: &str) -> Result<()> {
        let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_nodes WHERE name = ");
        q.push_bind(node);
        self.execute(&mut q).await?;
        let mut q =
            QueryBuilder::<D::DB>::new("UPDATE kala_leases SET expires_at = 0 WHERE owner = ");
        q.push_bind(node);
        self.execute(&mut q).await?;
        Ok(())
    }

    async fn lease(&self, req: LeaseRequest) -> Result<Vec<Lease>> {
        let until = ns_i64(req.now + req.ttl)?;
        let map = map_err::<D>;
        // Only the rows this round may change are locked.
        let mut touch: Vec<u32> = req.take.iter().chain(&req.release).copied().collect();
        touch.sort_unstable();
        touch.dedup();
        let mut tx = self.pool().begin().await.map_err(map)?;
        let Locked {
            mut leases,
            mut locked,
            mut renew_only,
        } = lock_leases::<D>(&mut tx, &touch, &req.node)
            .await
            .map_err(map)?;
        let missing: Vec<u32> = req
            .take
            .iter()
            .copied()
            .filter(|p| !leases.iter().any(|l| l.partition == *p))
            .collect();
        if !missing.is_empty() {
            let (before, after) = D::SYNTAX.insert_if_absent;
            let mut q = QueryBuilder::<D::DB>::new(before);
            q.push("INTO kala_leases (part, owner, token, expires_at) ");
            q.push_values(&missing, |mut row, p| {
                row.push_bind(i64::from(*p))
                    .push_bind("")
                    .push_bind(0i64)
                    .push_bind(0i64);
            });
            q.push(after);
            q.build().execute(&mut *tx).await.map_err(map)?;
            Locked {
                leases,
                locked,
                renew_only,
            } = lock_leases::<D>(&mut tx, &touch, &req.node)
                .await
                .map_err(map)?;
        }
        let mut renew = Vec::new();
        for l in leases.iter_mut() {
            // A row another transaction holds (a fenced batch, another
            // round) is left as it is this round, as last committed.
            if !locked.contains(&l.partition) {
                continue;
            }
            // Locked to renew, and changed hands meanwhile: left as it is.
            if renew_only.contains(&l.partition) && l.owner != req.node {
                continue;
            }
            if req.take.contains(&l.partition) && l.takeable(&req) {
                if l.owner == req.node {
                    renew.push(l.partition);
                } else {
                    l.owner = req.node.clone();
                    l.token += 1;
                    let mut q = QueryBuilder::<D::DB>::new("UPDATE kala_leases SET owner = ");
                    q.push_bind(req.node.as_str())
                        .push(", token = ")
                        .push_bind(i64::try_from(l.token).unwrap_or(i64::MAX))
                        .push(", expires_at = ")
                        .push_bind(until)
                        .push(" WHERE part = ")
                        .push_bind(i64::from(l.partition));
                    q.build().execute(&mut *tx).await.map_err(map)?;
                }
                l.expires_at = ts(until);
            } else if req.release.contains(&l.partition) && l.owner == req.node {
                l.expires_at = Timestamp::UNIX_EPOCH;
            }
        }
        for (set, parts) in [
            (until, renew),
            (
                0,
                req.release
                    .iter()
                    .copied()
                    .filter(|p| !req.take.contains(p) && locked.contains(p))
                    .collect(),
            ),
        ] {
            if parts.is_empty() {
                continue;
            }
            let ids: Vec<String> = parts.iter().map(u32::to_string).collect();
            let mut q = QueryBuilder::<D::DB>::new("UPDATE kala_leases SET expires_at = ");
            q.push_bind(set)
                .push(" WHERE owner = ")
                .push_bind(req.node.as_str())
                .push(" AND part IN (");
            q.push(ids.join(", ")).push(")");
            q.build().execute(&mut *tx).await.map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(leases)
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        let rows = QueryBuilder::<D::DB>::new(
            "SELECT part, owner, token, expires_at FROM kala_leases ORDER BY part",
        )
        .build()
        .fetch_all(self.pool())
        .await
        .map_err(map_err::<D>)?;
        rows.iter()
            .map(|r| lease_of::<D>(r).map_err(map_err::<D>))
            .collect()
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<(u64, JobId)>> {
        let mut q = QueryBuilder::<D::DB>::new("SELECT seq, job_id FROM kala_changes WHERE seq > ");
        q.push_bind(i64::try_from(after).unwrap_or(i64::MAX))
            .push(" ORDER BY seq LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = q
            .build()
            .fetch_all(self.pool())
            .await
            .map_err(map_err::<D>)?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get(0)?;
                let id: String = r.try_get(1)?;
                Ok((u(seq), id))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(map_err::<D>)
    }

    async fn last_change(&self) -> Result<u64> {
        let row = QueryBuilder::<D::DB>::new("SELECT COALESCE(MAX(seq), 0) FROM kala_changes")
            .build()
            .fetch_one(self.pool())
            .await
            .map_err(map_err::<D>)?;
        let seq: i64 = row.try_get(0).map_err(map_err::<D>)?;
        Ok(u(seq))
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<()> {
        let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_changes WHERE at < ");
        q.push_bind(ns_i64(before)?);
        self.execute(&mut q).await.map(|_| ())
    }

    async fn get_many(&self, ids: &[JobId]) -> Result<Vec<Job>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("SELECT id, job FROM kala_jobs WHERE id");
            push_in(&mut q, chunk);
            let rows = q
                .build()
                .fetch_all(self.pool())
                .await
                .map_err(map_err::<D>)?;
            for row in rows {
                let id: String = row.try_get(0).map_err(map_err::<D>)?;
                let json: String = row.try_get(1).map_err(map_err::<D>)?;
                out.push(decode(&id, json.as_bytes())?);
            }
        }
        Ok(out)
    }

    fn change_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.signal.clone()
    }
}

fn lease_of<D: Dialect>(r: &<D::DB as Database>::Row) -> std::result::Result<Lease, sqlx::Error>
where
    String: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    i64: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
{
    let (part, owner, token, expires): (i64, String, i64, i64) =
        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
    Ok(Lease {
        partition: u32::try_from(part).unwrap_or(u32::MAX),
        owner,
        token: u(token),
        expires_at: ts(expires),
    })
}

/// Every lease row as last committed, and which of the rows of `touch`
/// (the partitions a round may change) this transaction now holds locked
/// until it ends. Only those are locked, so a round stalled in the middle
/// (its instance cut off) holds nothing another instance's fenced batch
/// needs; and a row another transaction holds is passed over, not waited
/// for: an instance cut off in the middle of a fenced batch holds its
/// share lock until the server ends its session, and no round of a
/// healthy instance may wait for that.
async fn lock_leases<D: Dialect>(
    tx: &mut sqlx::Transaction<'_, D::DB>,
    touch: &[u32],
    node: &str,
) -> std::result::Result<Locked, sqlx::Error>
where
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    <D::DB as Database>::Arguments: IntoArguments<D::DB>,
    String: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    i64: for<'r> Decode<'r, D::DB> + Type<D::DB>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
{
    // Every row as last committed: which of `touch` this node holds.
    let rows = QueryBuilder::<D::DB>::new(
        "SELECT part, owner, token, expires_at FROM kala_leases ORDER BY part",
    )
    .build()
    .fetch_all(&mut **tx)
    .await?;
    let mut all = rows
        .iter()
        .map(lease_of::<D>)
        .collect::<Result<Vec<_>, _>>()?;
    let (mine, theirs): (Vec<u32>, Vec<u32>) = touch
        .iter()
        .partition(|p| all.iter().any(|l| l.partition == **p && l.owner == node));
    let mut out = Locked::default();
    for (parts, lock, own) in [
        (mine, D::SYNTAX.renew_lock, true),
        (theirs, D::SYNTAX.skip_locked, false),
    ] {
        if parts.is_empty() {
            continue;
        }
        let list: Vec<String> = parts.iter().map(u32::to_string).collect();
        let mut q = QueryBuilder::<D::DB>::new(
            "SELECT part, owner, token, expires_at FROM kala_leases WHERE part IN (",
        );
        q.push(list.join(", ")).push(") ORDER BY part");
        q.push(lock);
        for r in q.build().fetch_all(&mut **tx).await? {
            let l = lease_of::<D>(&r)?;
            out.locked.insert(l.partition);
            if own {
                out.renew_only.insert(l.partition);
            }
            // The locked row is the latest committed version.
            if let Some(slot) = all.iter_mut().find(|x| x.partition == l.partition) {
                *slot = l;
            } else {
                all.push(l);
            }
        }
    }
    all.sort_by_key(|l| l.partition);
    out.leases = all;
    Ok(out)
}

/// The lease rows of a round: every one (as last committed, or as
/// locked), which this round locked, and which of those it locked only
/// to renew or release ([`crate::Syntax::renew_lock`]: a change of hands
/// must not happen under that lock).
#[derive(Default)]
struct Locked {
    leases: Vec<Lease>,
    locked: std::collections::HashSet<u32>,
    renew_only: std::collections::HashSet<u32>,
}
