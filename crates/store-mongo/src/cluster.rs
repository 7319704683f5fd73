//! [`Coordination`] on MongoDB (with transactions, i.e. a replica set):
//! collections `nodes` (`_id` = name, `expires_at`, `info` JSON), `leases`
//! (`_id` = partition, `owner`, `token`, `expires_at`; a lease round is
//! one transaction), `changes` (`_id` = sequence, `job_id`, `at`), the
//! numbers taken from `counters/changeseq` by `$inc` before the batch's
//! transaction (so not in commit order: followers re-read across gaps).
//! Followers poll (change streams would need a real replica set's oplog).
//!
//! Owns: the cluster reads and writes. Must not: decide who owns what.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kala_job::{Job, JobId};
use kala_store::{Coordination, Lease, LeaseRequest, NodeInfo, Result, StoreError, ns_i64};
use mongodb::ClientSession;
use mongodb::bson::{Document, doc};

use crate::codec::decode_job;
use crate::error::map_err;
use crate::store::MongoStore;

fn int(d: &Document, k: &str) -> i64 {
    d.get_i64(k)
        .ok()
        .or_else(|| d.get_i32(k).ok().map(i64::from))
        .unwrap_or(0)
}

fn ts(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn lease_of(d: &Document) -> Lease {
    Lease {
        partition: u32::try_from(int(d, "_id")).unwrap_or(u32::MAX),
        owner: d.get_str("owner").unwrap_or("").to_string(),
        token: u64::try_from(int(d, "token")).unwrap_or(0),
        expires_at: ts(int(d, "expires_at")),
    }
}

impl MongoStore {
    async fn all_leases(
        &self,
        session: Option<&mut ClientSession>,
    ) -> mongodb::error::Result<Vec<Lease>> {
        let find = self.leases.find(doc! {}).sort(doc! { "_id": 1 });
        let mut out = Vec::new();
        match session {
            Some(s) => {
                let mut cursor = find.session(&mut *s).await?;
                while let Some(d) = cursor.next(&mut *s).await {
                    out.push(lease_of(&d?));
                }
            }
            None => {
                let mut cursor = find.await?;
                while cursor.advance().await? {
                    out.push(lease_of(&cursor.deserialize_current()?));
                }
            }
        }
        Ok(out)
    }

    /// One lease round in a transaction: `Ok(None)` when it lost a race
    /// (try again).
    async fn lease_once(&self, req: &LeaseRequest) -> mongodb::error::Result<Vec<Lease>> {
        let until = i64::try_from((req.now + req.ttl).as_nanosecond()).unwrap_or(i64::MAX);
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let result: mongodb::error::Result<Vec<Lease>> = async {
            let mut after = self.all_leases(Some(&mut session)).await?;
            for &p in &req.take {
                match after.iter_mut().find(|l| l.partition == p) {
                    None => {
                        self.leases
                            .insert_one(doc! { "_id": i64::from(p), "owner": &req.node, "token": 1i64, "expires_at": until })
                            .session(&mut session)
                            .await?;
                        after.push(Lease { partition: p, owner: req.node.clone(), token: 1, expires_at: ts(until) });
                    }
                    Some(l) if l.takeable(req) => {
                        let token = if l.owner == req.node { l.token } else { l.token + 1 };
                        self.leases
                            .update_one(
                                doc! { "_id": i64::from(p) },
                                doc! { "$set": { "owner": &req.node, "token": i64::try_from(token).unwrap_or(i64::MAX), "expires_at": until } },
                            )
                            .session(&mut session)
                            .await?;
                        l.owner = req.node.clone();
                        l.token = token;
                        l.expires_at = ts(until);
                    }
                    Some(_) => {}
                }
            }
            for &p in req.release.iter().filter(|p| !req.take.contains(p)) {
                if let Some(l) = after.iter_mut().find(|l| l.partition == p && l.owner == req.node) {
                    self.leases
                        .update_one(doc! { "_id": i64::from(p) }, doc! { "$set": { "expires_at": 0i64 } })
                        .session(&mut session)
                        .await?;
                    l.expires_at = Timestamp::UNIX_EPOCH;
                }
            }
            Ok(after)
        }
        .await;
        match result {
            Ok(mut after) => {
                session.commit_transaction().await?;
                after.sort_by_key(|l| l.partition);
                Ok(after)
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Coordination for MongoStore {
    async fn heartbeat(&self, node: &NodeInfo) -> Result<Vec<NodeInfo>> {
        let info = serde_json::to_string(node).map_err(|e| StoreError::Backend(e.to_string()))?;
        let expires = ns_i64(node.expires_at)?;
        self.nodes
            .replace_one(
                doc! { "_id": &node.name },
                doc! { "_id": &node.name, "expires_at": expires, "info": info },
            )
            .upsert(true)
            .await
            .map_err(map_err)?;
        let forget = ns_i64(node.heartbeat_at - SignedDuration::from_hours(1))?;
        self.nodes
            .delete_many(doc! { "expires_at": { "$lt": forget } })
            .await
            .map_err(map_err)?;
        let mut cursor = self.nodes.find(doc! {}).await.map_err(map_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            let name = d.get_str("_id").unwrap_or("").to_string();
            let info = d.get_str("info").unwrap_or("");
            out.push(serde_json::from_str(info).map_err(|e| StoreError::Corrupt {
                key: format!("nodes/{name}"),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    async fn leave(&self, node: &str) -> Result<()> {
        self.nodes
            .delete_one(doc! { "_id": node })
            .await
            .map_err(map_err)?;
        self.leases
            .update_many(
                doc! { "owner": node },
                doc! { "$set": { "expires_at": 0i64 } },
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn lease(&self, req: LeaseRequest) -> Result<Vec<Lease>> {
        for _ in 0..5 {
            match self.lease_once(&req).await {
                Ok(l) => return Ok(l),
                Err(e) if e.contains_label("TransientTransactionError") => continue,
                Err(e) => return Err(map_err(e)),
            }
        }
        // Lost every race: the leases as they are; the next round tries.
        self.leases().await
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.all_leases(None).await.map_err(map_err)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<(u64, JobId)>> {
        let mut cursor = self
            .changes
            .find(doc! { "_id": { "$gt": i64::try_from(after).unwrap_or(i64::MAX) } })
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            out.push((
                u64::try_from(int(&d, "_id")).unwrap_or(0),
                d.get_str("job_id").unwrap_or("").to_string(),
            ));
        }
        Ok(out)
    }

    async fn last_change(&self) -> Result<u64> {
        let d = self
            .counters
            .find_one(doc! { "_id": "changeseq" })
            .await
            .map_err(map_err)?;
        Ok(d.map_or(0, |d| u64::try_from(int(&d, "seq")).unwrap_or(0)))
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<()> {
        self.changes
            .delete_many(doc! { "at": { "$lt": ns_i64(before)? } })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn get_many(&self, ids: &[JobId]) -> Result<Vec<Job>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(10_000) {
            let mut cursor = self
                .jobs
                .find(doc! { "_id": { "$in": chunk } })
                .await
                .map_err(map_err)?;
            while cursor.advance().await.map_err(map_err)? {
                let d: Document = cursor.deserialize_current().map_err(map_err)?;
                out.push(decode_job(d)?);
            }
        }
        Ok(out)
    }
}
