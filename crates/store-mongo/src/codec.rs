//! Jobs and run records as BSON documents (a job's document is its
//! stored form with `_id` = its id).
//!
//! Owns: the conversions. Must not: do I/O.

use kala_job::Job;
use kala_store::{Result, StoreError};
use mongodb::bson::{self, Bson, Document, doc};

pub(crate) fn to_doc<T: serde::Serialize>(v: &T) -> Result<Document> {
    bson::serialize_to_document(v).map_err(|e| StoreError::Backend(format!("encoding BSON: {e}")))
}

pub(crate) fn from_doc<T: serde::de::DeserializeOwned>(key: &str, d: Document) -> Result<T> {
    bson::deserialize_from_document(d).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn job_doc(job: &Job) -> Result<Document> {
    let mut d = doc! { "_id": job.id.as_str() };
    d.extend(to_doc(job)?);
    Ok(d)
}

pub(crate) fn decode_job(mut d: Document) -> Result<Job> {
    let id = match d.remove("_id") {
        Some(Bson::String(s)) => s,
        _ => String::from("(no _id)"),
    };
    from_doc(&id, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_bson() {
        let job = kala_store::conformance::full_job();
        let back = decode_job(job_doc(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }
}
