//! [`MongoStore`]: the `JobStore` on MongoDB — batches (one transaction
//! where the server has them), reads, retention, claims.
//!
//! Owns: every query. Must not: parse addresses (`address`).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::{Batch, Claim, JobStore, OpenRun, Result, Retention, StoreError, ns_i64};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{
    Acknowledgment, ClientOptions, Credential, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{Client, ClientSession, Collection, IndexModel};

use crate::address::{MongoOptions, Transactions};
use crate::codec::{decode_job, from_doc, job_doc, to_doc};
use crate::error::{error_code, map_err};

/// Runs one driver action inside the session when there is one.
macro_rules! exec {
    ($action:expr, $session:expr) => {
        match $session.as_deref_mut() {
            Some(s) => $action.session(s).await,
            None => $action.await,
        }
    };
}

pub struct MongoStore {
    client: Client,
    jobs: Collection<Document>,
    runs: Collection<Document>,
    claims: Collection<Document>,
    open_runs: Collection<Document>,
    transactions: bool,
}

impl MongoStore {
    /// Connects (failing if no server answers now), creates the indexes.
    pub async fn connect(options: &MongoOptions) -> Result<MongoStore> {
        let uri = options.uri()?;
        let mut co = ClientOptions::parse(&uri)
            .await
            .map_err(|e| StoreError::Backend(format!("--jobdb-address {uri:?}: {e}")))?;
        if !options.username.is_empty() {
            co.credential = Some(
                Credential::builder()
                    .username(options.username.clone())
                    .password((!options.password.is_empty()).then(|| options.password.clone()))
                    .build(),
            );
        }
        co.app_name = Some("kala".into());
        co.server_selection_timeout = Some(options.server_selection_timeout);
        co.connect_timeout = Some(Duration::from_secs(2));
        co.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        );
        let client = Client::with_options(co).map_err(map_err)?;
        let name = if options.database.is_empty() {
            "kala"
        } else {
            options.database.as_str()
        };
        let db = client.database(name);
        let hello = db.run_command(doc! { "hello": 1 }).await.map_err(map_err)?;
        let clustered =
            hello.get_str("setName").is_ok() || hello.get_str("msg").ok() == Some("isdbgrid");
        let transactions = options.transactions == Transactions::Auto && clustered;
        let store = MongoStore {
            jobs: db.collection("jobs"),
            runs: db.collection("runs"),
            claims: db.collection("claims"),
            open_runs: db.collection("open_runs"),
            client,
            transactions,
        };
        store
            .runs
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "job_id": 1, "ran_at": 1 })
                    .options(IndexOptions::builder().name("job_time".to_string()).build())
                    .build(),
            )
            .await
            .map_err(map_err)?;
        store
            .runs
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "ran_at": 1 })
                    .options(IndexOptions::builder().name("time".to_string()).build())
                    .build(),
            )
            .await
            .map_err(map_err)?;
        tracing::info!(database = name, transactions, "mongo store connected");
        Ok(store)
    }

    /// Whether batches run as transactions on this server.
    pub fn uses_transactions(&self) -> bool {
        self.transactions
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
        mut session: Option<&mut ClientSession>,
    ) -> mongodb::error::Result<()> {
        let mut new = Vec::new();
        let mut replaced = Vec::new();
        let mut seen = HashSet::new();
        // The last put of an id wins.
        for job in batch.put.iter().rev() {
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
    ) -> mongodb::error::Result<()> {
        let mut session = self.client.start_session().await?;
        let mut attempt = 0;
        loop {
            session.start_transaction().await?;
            match self.write(batch, existing, Some(&mut session)).await {
                Ok(()) => {}
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    if e.contains_label("TransientTransactionError") && attempt < 3 {
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
            let mut commits = 0;
            loop {
                match session.commit_transaction().await {
                    Ok(()) => return Ok(()),
                    Err(e) if e.contains_label("UnknownTransactionCommitResult") && commits < 3 => {
                        commits += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Keeps the newest `keep` run records of `job_id`; returns how many
    /// were dropped.
    async fn trim(&self, job_id: &str, keep: usize) -> Result<u64> {
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
}

#[async_trait]
impl JobStore for MongoStore {
    fn name(&self) -> &'static str {
        "mongo"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        let mut cursor = self.jobs.find(doc! {}).await.map_err(map_err)?;
        let mut jobs = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            jobs.push(decode_job(d)?);
        }
        Ok(jobs)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let d = self
            .jobs
            .find_one(doc! { "_id": id })
            .await
            .map_err(map_err)?;
        d.map(decode_job).transpose()
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = batch.put.iter().map(|j| j.id.as_str()).collect();
        let existing = if ids.is_empty() {
            HashSet::new()
        } else {
            self.existing_ids(&ids).await?
        };
        let written = if self.transactions {
            self.write_in_transaction(&batch, &existing).await
        } else {
            self.write(&batch, &existing, None).await
        };
        written.map_err(map_err)?;
        if let Some(keep) = batch.keep_runs {
            let touched: HashSet<&str> = batch.runs.iter().map(|r| r.job_id.as_str()).collect();
            for id in touched {
                self.trim(id, keep).await?;
            }
        }
        Ok(())
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let find = self
            .runs
            .find(doc! { "job_id": job_id })
            .sort(doc! { "ran_at": -1, "_id": -1 });
        let mut cursor = match limit {
            Some(l) => find.limit(l as i64).await,
            None => find.await,
        }
        .map_err(map_err)?;
        let mut runs = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let mut d: Document = cursor.deserialize_current().map_err(map_err)?;
            let run = match d.remove("run") {
                Some(Bson::Document(r)) => r,
                _ => {
                    return Err(StoreError::Corrupt {
                        key: job_id.to_string(),
                        reason: "run document without a `run` field".into(),
                    });
                }
            };
            runs.push(from_doc(job_id, run)?);
        }
        runs.reverse();
        Ok(runs)
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut dropped = 0;
        if let Some(cutoff) = retention.max_age.and_then(|a| now.checked_sub(a).ok()) {
            dropped += self
                .runs
                .delete_many(doc! { "ran_at": { "$lt": ns_i64(cutoff)? } })
                .await
                .map_err(map_err)?
                .deleted_count;
        }
        if let Some(keep) = retention.max_per_job {
            let ids = self
                .runs
                .distinct("job_id", doc! {})
                .await
                .map_err(map_err)?;
            for id in ids {
                if let Bson::String(id) = id {
                    dropped += self.trim(&id, keep).await?;
                }
            }
        }
        self.claims
            .delete_many(doc! { "expires_at": { "$lte": ns_i64(now)? } })
            .await
            .map_err(map_err)?;
        Ok(dropped)
    }

    async fn delete_all(&self) -> Result<()> {
        for c in [&self.jobs, &self.runs, &self.claims, &self.open_runs] {
            c.delete_many(doc! {}).await.map_err(map_err)?;
        }
        Ok(())
    }

    async fn open_runs(&self) -> Result<Vec<OpenRun>> {
        let mut cursor = self.open_runs.find(doc! {}).await.map_err(map_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            let id = d.get_str("_id").unwrap_or("(no _id)").to_string();
            let entry = d.get_document("entry").cloned().unwrap_or_default();
            out.push(from_doc(&id, entry)?);
        }
        Ok(out)
    }

    async fn claim(&self, claim: Claim) -> Result<bool> {
        let at = ns_i64(claim.scheduled_at)?;
        let key = format!("{}|{at}", claim.job_id);
        let filter = doc! {
            "_id": &key,
            "$or": [ { "owner": &claim.owner }, { "expires_at": { "$lte": ns_i64(Timestamp::now())? } } ],
        };
        let update = doc! { "$set": {
            "job_id": &claim.job_id,
            "scheduled_at": at,
            "owner": &claim.owner,
            "expires_at": ns_i64(claim.expires_at)?,
        } };
        match self
            .claims
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else holds an unexpired claim: the upsert collided
            // with their document.
            Err(e) if error_code(&e) == Some(11000) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn close(&self) -> Result<()> {
        self.client.clone().shutdown().await;
        Ok(())
    }
}
