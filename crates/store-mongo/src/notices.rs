//! The notification outbox on MongoDB: collection `notices`, one document
//! per notice (`_id` its id, `job_id`, `pending`, `next_at` and `done_at`
//! in ns for the queries, `notice` the whole record).

use jiff::Timestamp;
use kala_store::{Notice, Result, ns_i64, oldest_first, soonest};
use mongodb::bson::{Document, doc};

use crate::codec::{from_doc, to_doc};
use crate::error::map_err;
use crate::store::MongoStore;

/// The stored document of a notice.
pub(crate) fn notice_doc(n: &Notice) -> Result<Document> {
    Ok(doc! {
        "_id": n.id.as_str(),
        "job_id": n.job_id.as_str(),
        "pending": n.is_pending(),
        "next_at": ns_i64(n.next_attempt_at)?,
        "done_at": n.done_at.map(ns_i64).transpose()?.unwrap_or(i64::MAX),
        "notice": to_doc(n)?,
    })
}

impl MongoStore {
    async fn find_notices(&self, filter: Document, limit: Option<i64>) -> Result<Vec<Notice>> {
        let mut find = self
            .notices
            .find(filter)
            .sort(doc! { "next_at": 1, "_id": 1 });
        if let Some(l) = limit {
            find = find.limit(l);
        }
        let mut cursor = find.await.map_err(map_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(map_err)? {
            let d: Document = cursor.deserialize_current().map_err(map_err)?;
            let id = d.get_str("_id").unwrap_or("(no _id)").to_string();
            let n = d.get_document("notice").cloned().unwrap_or_default();
            out.push(from_doc(&id, n)?);
        }
        Ok(out)
    }

    pub(crate) async fn pending_notices_of(&self, limit: usize) -> Result<Vec<Notice>> {
        let l = i64::try_from(limit).unwrap_or(i64::MAX);
        let out = self.find_notices(doc! { "pending": true }, Some(l)).await?;
        Ok(soonest(out, limit))
    }

    pub(crate) async fn notices_of(&self, job_id: &str) -> Result<Vec<Notice>> {
        let mut out = self.find_notices(doc! { "job_id": job_id }, None).await?;
        oldest_first(&mut out);
        Ok(out)
    }

    pub(crate) async fn prune_notices_before(&self, before: Timestamp) -> Result<u64> {
        let done = self
            .notices
            .delete_many(doc! { "pending": false, "done_at": { "$lt": ns_i64(before)? } })
            .await
            .map_err(map_err)?;
        Ok(done.deleted_count)
    }
}
