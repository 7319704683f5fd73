//! [`MongoStore`]: the `JobStore` on MongoDB — connecting and indexes,
//! reads, retention, claims.
//!
//! Owns: every query but a batch's writes (`batch`). Must not: parse
//! addresses (`address`).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::{
    AuditEntry, Batch, Claim, JobStore, Notice, OpenRun, Result, Retention, StoreError, ns_i64,
};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{
    Acknowledgment, ClientOptions, Credential, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{Client, Collection, IndexModel};

use crate::address::{MongoOptions, Transactions};
use crate::codec::{decode_job, from_doc};
use crate::error::{error_code, map_err};

pub struct MongoStore {
    pub(crate) client: Client,
    pub(crate) jobs: Collection<Document>,
    pub(crate) runs: Collection<Document>,
    pub(crate) claims: Collection<Document>,
    pub(crate) open_runs: Collection<Document>,
    pub(crate) notices: Collection<Document>,
    pub(crate) audit: Collection<Document>,
    pub(crate) nodes: Collection<Document>,
    pub(crate) leases: Collection<Document>,
    pub(crate) changes: Collection<Document>,
    pub(crate) counters: Collection<Document>,
    pub(crate) transactions: bool,
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
            notices: db.collection("notices"),
            audit: db.collection("audit"),
            nodes: db.collection("nodes"),
            leases: db.collection("leases"),
            changes: db.collection("changes"),
            counters: db.collection("counters"),
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
        for (keys, name) in [
            (doc! { "pending": 1, "next_at": 1 }, "pending_due"),
            (doc! { "job_id": 1 }, "job"),
        ] {
            store
                .notices
                .create_index(
                    IndexModel::builder()
                        .keys(keys)
                        .options(IndexOptions::builder().name(name.to_string()).build())
                        .build(),
                )
                .await
                .map_err(map_err)?;
        }
        store
            .audit
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "at": 1 })
                    .options(IndexOptions::builder().name("time".to_string()).build())
                    .build(),
            )
            .await
            .map_err(map_err)?;
        tracing::info!(database = name, transactions, "mongo store connected");
        Ok(store)
    }

    /// Appends one change (outside a batch: `delete_all`).
    async fn announce(&self, id: &str) -> Result<()> {
        let seq = self.reserve_changes(1).await?;
        let at = ns_i64(Timestamp::now())?;
        self.changes
            .insert_one(doc! { "_id": seq, "job_id": id, "at": at })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Whether batches run as transactions on this server.
    pub fn uses_transactions(&self) -> bool {
        self.transactions
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
        self.apply_batch(batch).await
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

    /// Job data goes; nodes, leases and the change sequence stay (a lease
    /// token must never go back), and followers hear "reload everything".
    async fn delete_all(&self, audit: Vec<AuditEntry>) -> Result<()> {
        for c in [
            &self.jobs,
            &self.runs,
            &self.claims,
            &self.open_runs,
            &self.notices,
        ] {
            c.delete_many(doc! {}).await.map_err(map_err)?;
        }
        self.insert_audit(&audit).await?;
        if self.transactions {
            self.announce(kala_store::ALL_JOBS).await?;
        }
        Ok(())
    }

    async fn audit(&self, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_page(before, limit).await
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64> {
        self.prune_audit_before(before).await
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

    async fn pending_notices(&self, limit: usize) -> Result<Vec<Notice>> {
        self.pending_notices_of(limit).await
    }

    async fn notices(&self, job_id: &str) -> Result<Vec<Notice>> {
        self.notices_of(job_id).await
    }

    async fn prune_notices(&self, before: Timestamp) -> Result<u64> {
        self.prune_notices_before(before).await
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

    /// Every write was awaited before: the driver need not wait for
    /// sessions or cursors another task may still hold (it did, for ever,
    /// when a task was cut off in the middle of a transaction).
    async fn close(&self) -> Result<()> {
        self.client.clone().shutdown().immediate(true).await;
        Ok(())
    }

    /// Several instances need transactions (a replica set): without them
    /// this is one instance's store.
    fn coordination(&self) -> Option<&dyn kala_store::Coordination> {
        self.transactions
            .then_some(self as &dyn kala_store::Coordination)
    }
}
