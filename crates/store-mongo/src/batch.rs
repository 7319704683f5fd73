//! Batches on MongoDB: one transaction where the server has them (with
//! retries of transient conflicts), plain writes where it has none; the
//! change sequence numbers a batch takes; trimming run history.
//!
//! Owns: every write of a batch. Must not: read more than the ids a batch
//! puts (to tell new jobs from replaced ones).

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use kala_store::{Batch, Result, StoreError, ns_i64};
use mongodb::ClientSession;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

use crate::codec::{decode_job, job_doc, to_doc};
use crate::error::map_err;
use crate::store::MongoStore;

/// Runs one driver action inside the session when there is one.
macro_rules! exec {
    ($action:expr, $session:expr) => {
        match $session.as_deref_mut() {
            Some(s) => $action.session(s).await,
            None => $action.await,
        }
    };
}

/// A batch whose fence did not hold (carried through the driver's error).
#[derive(Debug)]
pub(crate) struct FencedMarker(pub String);

impl std::fmt::Display for FencedMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FencedMarker {}

impl MongoStore {
    /// Takes `n` numbers of the change sequence (one atomic `$inc`,
    /// outside any transaction); returns the first. Numbers of a batch
    /// that then fails are a gap, and a batch may commit after one with a
    /// later number: followers re-read across gaps for a while.
    pub(crate) async fn reserve_changes(&self, n: usize) -> Result<i64> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let counter = self
            .counters
            .find_one_and_update(doc! { "_id": "changeseq" }, doc! { "$inc": { "seq": n } })
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)?;
        let last = counter
            .and_then(|d| {
                d.get_i64("seq")
                    .ok()
                    .or_else(|| d.get_i32("seq").ok().map(i64::from))
            })
            .unwrap_or(n);
        Ok(last - n + 1)
    }

    async fn existing_ids(&self, ids: &[&str]) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(10_000) {
            let mut cursor = self
                .jobs
                .find(doc! { "_id": { "$in": chunk } })
                .projection(doc! { "_id": 1 })
                .await
                .map_err(map_err)?;
            while cursor.advance().await.map_err(map_err)? {
                let d: Document = cursor.deserialize_current().map_err(map_err)?;
                if let Ok(id) = d.get_str("_id") {
                    found.insert(id.to_string());
                }
            }
        }
        Ok(found)
    }

    /// The writes of one batch, in the session when there is one.
    async fn write(
        &self,
        batch: &Batch,
        existing: &HashSet<String>,
        changes_from: Option<i64>,
        mut session: Option<&mut ClientSession>,
    ) -> mongodb::error::Result<()> {
        let custom = |e: StoreError| mongodb::error::Error::custom(e.to_string());
        // The fence: the lease must still be this node's, with this token,
        // unexpired; it is written (a counter) so that a lease change in
        // another transaction conflicts with this one.
        if let Some(f) = &batch.fence {
            let held = exec!(
                self.leases.find_one_and_update(
                    doc! {
                        "_id": i64::from(f.partition),
                        "owner": &f.node,
                        "token": i64::try_from(f.token).unwrap_or(i64::MAX),
                        "expires_at": { "$gt": ns_i64(f.now).map_err(custom)? },
                    },
                    doc! { "$inc": { "fenced": 1i64 } },
                ),
                session
            )?;
            if held.is_none() {
                return Err(mongodb::error::Error::custom(FencedMarker(format!(
                    "{} no longer holds the lease of partition {} with token {}",
                    f.node, f.partition, f.token
                ))));
            }
        }
        // Jobs changed in place: read in the transaction, changed, written
        // back (a concurrent write of the same job is a write conflict).
        for id in batch.updated_in_place() {
            let Some(d) = exec!(self.jobs.find_one(doc! { "_id": id }), session)? else {
                continue;
            };
            let mut job = decode_job(d).map_err(custom)?;
            batch.apply_updates(&mut job);
            let d = job_doc(&job).map_err(custom)?;
            exec!(self.jobs.replace_one(doc! { "_id": id }, d), session)?;
        }
        let puts = batch.puts_updated();
        // The changes, with the numbers `apply` took from the counter
        // before the transaction (a hot counter inside every transaction
        // made concurrent writers conflict without end).
        if let Some(first) = changes_from {
            let at = ns_i64(Timestamp::now()).map_err(custom)?;
            let docs: Vec<Document> = batch
                .changed_ids()
                .iter()
                .enumerate()
                .map(|(i, id)| doc! { "_id": first + i as i64, "job_id": id.as_str(), "at": at })
                .collect();
            if !docs.is_empty() {
                exec!(self.changes.insert_many(docs), session)?;
            }
        }
        let mut new = Vec::new();
        let mut replaced = Vec::new();
        let mut seen = HashSet::new();
        // The last put of an id wins.
        for job in puts.iter().rev() {
            if !seen.insert(job.id.as_str()) {
                continue;
            }
            let d = job_doc(job).map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
            if existing.contains(&job.id) {
                replaced.push((job.id.as_str(), d));
            } else {
                new.push(d);
            }
        }
        if !new.is_empty() {
            exec!(self.jobs.insert_many(new), session)?;
        }
        for (id, d) in replaced {
            exec!(
                self.jobs.replace_one(doc! { "_id": id }, d).upsert(true),
                session
            )?;
        }
        if !batch.runs.is_empty() {
            let mut docs = Vec::with_capacity(batch.runs.len());
            for run in &batch.runs {
                let encoded = to_doc(run)
                    .and_then(|d| Ok((ns_i64(run.ran_at)?, d)))
                    .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
                docs.push(
                    doc! { "job_id": run.job_id.as_str(), "ran_at": encoded.0, "run": encoded.1 },
                );
            }
            exec!(self.runs.insert_many(docs), session)?;
        }
        if !batch.delete.is_empty() {
            let ids: Vec<&str> = batch.delete.iter().map(String::as_str).collect();
            exec!(
                self.jobs.delete_many(doc! { "_id": { "$in": &ids } }),
                session
            )?;
            exec!(
                self.runs.delete_many(doc! { "job_id": { "$in": &ids } }),
                session
            )?;
            exec!(
                self.claims.delete_many(doc! { "job_id": { "$in": &ids } }),
                session
            )?;
            exec!(
                self.notices.delete_many(doc! { "job_id": { "$in": &ids } }),
                session
            )?;
        }
        for n in &batch.notices {
            let d = crate::notices::notice_doc(n)
                .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
            exec!(
                self.notices
                    .replace_one(doc! { "_id": n.id.as_str() }, d)
                    .upsert(true),
                session
            )?;
        }
        if !batch.audit.is_empty() {
            let docs = crate::audit::audit_docs(&batch.audit)
                .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
            exec!(self.audit.insert_many(docs), session)?;
        }
        if !batch.begin.is_empty() {
            let mut docs = Vec::with_capacity(batch.begin.len());
            for open in &batch.begin {
                let entry =
                    to_doc(open).map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
                docs.push(doc! { "_id": open.run_id.as_str(), "entry": entry });
            }
            exec!(self.open_runs.insert_many(docs), session)?;
        }
        if !batch.end.is_empty() {
            exec!(
                self.open_runs
                    .delete_many(doc! { "_id": { "$in": &batch.end } }),
                session
            )?;
        }
        Ok(())
    }

    async fn write_in_transaction(
        &self,
        batch: &Batch,
        existing: &HashSet<String>,
        changes_from: Option<i64>,
    ) -> mongodb::error::Result<()> {
        let mut session = self.client.start_session().await?;
        let mut attempt = 0;
        loop {
            session.start_transaction().await?;
            match self
                .write(batch, existing, changes_from, Some(&mut session))
                .await
            {
                Ok(()) => {}
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    // Write conflicts (two instances on one job or on the
                    // change counter) are transient: try again.
                    if e.contains_label("TransientTransactionError") && attempt < 100 {
                        attempt += 1;
                        // Jittered back-off, so that many writers on one
                        // document (the change counter) do not collide
                        // again in lockstep.
                        let jitter = u64::from(Timestamp::now().subsec_nanosecond().unsigned_abs())
                            % (2 * attempt.min(25) + 1);
                        tokio::time::sleep(Duration::from_millis(jitter)).await;
                        continue;
                    }
                    return Err(e);
                }
            }
            let mut commits = 0;
            let conflict = loop {
                match session.commit_transaction().await {
                    Ok(()) => return Ok(()),
                    Err(e) if e.contains_label("UnknownTransactionCommitResult") && commits < 3 => {
                        commits += 1;
                    }
                    // A conflict found at commit: the whole transaction
                    // again, as for one found while writing.
                    Err(e) if e.contains_label("TransientTransactionError") && attempt < 100 => {
                        break e;
                    }
                    Err(e) => return Err(e),
                }
            };
            attempt += 1;
            tracing::debug!(error = %conflict, "transaction conflicted at commit; trying again");
            let jitter = u64::from(Timestamp::now().subsec_nanosecond().unsigned_abs())
                % (2 * attempt.min(25) + 1);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
    }

    /// Keeps the newest `keep` run records of `job_id`; returns how many
    /// were dropped.
    pub(crate) async fn trim(&self, job_id: &str, keep: usize) -> Result<u64> {
        let mut cursor = self
            .runs
            .find(doc! { "job_id": job_id })
            .sort(doc! { "ran_at": -1, "_id": -1 })
            .skip(keep as u64)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        let mut old = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            if let Some(id) = d.get("_id") {
                old.push(id.clone());
            }
        }
        if old.is_empty() {
            return Ok(0);
        }
        Ok(self
            .runs
            .delete_many(doc! { "_id": { "$in": old } })
            .await
            .map_err(map_err)?
            .deleted_count)
    }

    /// Applies `batch`: in one transaction where the server has them.
    pub(crate) async fn apply_batch(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = batch.put.iter().map(|j| j.id.as_str()).collect();
        let existing = if ids.is_empty() {
            HashSet::new()
        } else {
            self.existing_ids(&ids).await?
        };
        if !self.transactions && (batch.fence.is_some() || !batch.update.is_empty()) {
            return Err(StoreError::Backend(
                "mongo: fenced batches and job updates need transactions (a replica set)".into(),
            ));
        }
        let changed = batch.changed_ids().len();
        let written = if self.transactions {
            let from = if changed > 0 {
                Some(self.reserve_changes(changed).await?)
            } else {
                None
            };
            self.write_in_transaction(&batch, &existing, from).await
        } else {
            self.write(&batch, &existing, None, None).await
        };
        if let Err(e) = &written
            && let Some(f) = e.get_custom::<FencedMarker>()
        {
            return Err(StoreError::Fenced(f.0.clone()));
        }
        written.map_err(map_err)?;
        if let Some(keep) = batch.keep_runs {
            let touched: HashSet<&str> = batch.runs.iter().map(|r| r.job_id.as_str()).collect();
            for id in touched {
                self.trim(id, keep).await?;
            }
        }
        Ok(())
    }
}
