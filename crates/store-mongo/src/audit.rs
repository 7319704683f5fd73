//! The audit log on MongoDB: collection `audit`, one document per entry
//! (`_id` its id, which sorts in time order; `at` in ns for pruning;
//! `entry` the whole record). Entries are inserted with their batch and
//! never updated.

use jiff::Timestamp;
use kala_store::{AuditEntry, Result, ns_i64};
use mongodb::bson::{Document, doc};

use crate::error::map_err;
use crate::store::MongoStore;

/// The stored documents of `audit`.
pub(crate) fn audit_docs(audit: &[AuditEntry]) -> Result<Vec<Document>> {
    audit
        .iter()
        .map(|e| {
            Ok(doc! {
                "_id": e.id.as_str(),
                "at": ns_i64(e.at)?,
                // As JSON text: a diff's numbers and nulls come back as
                // they went in.
                "entry": serde_json::to_string(e).map_err(|x| kala_store::StoreError::Backend(x.to_string()))?,
            })
        })
        .collect()
}

impl MongoStore {
    pub(crate) async fn audit_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let filter = match before {
            Some(b) => doc! { "_id": { "$lt": b } },
            None => doc! {},
        };
        let mut cursor = self
            .audit
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            let id = d.get_str("_id").unwrap_or("(no _id)").to_string();
            let text = d.get_str("entry").unwrap_or_default();
            out.push(kala_store::json::decode(&id, text.as_bytes())?);
        }
        Ok(out)
    }

    pub(crate) async fn prune_audit_before(&self, before: Timestamp) -> Result<u64> {
        let done = self
            .audit
            .delete_many(doc! { "at": { "$lt": ns_i64(before).unwrap_or(i64::MAX) } })
            .await
            .map_err(map_err)?;
        Ok(done.deleted_count)
    }

    pub(crate) async fn insert_audit(&self, audit: &[AuditEntry]) -> Result<()> {
        if audit.is_empty() {
            return Ok(());
        }
        self.audit
            .insert_many(audit_docs(audit)?)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
