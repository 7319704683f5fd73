//! The audit log's queries: entries are inserted in the transaction of
//! their change (a batch's, or `delete_all`'s), paged newest first by id,
//! and pruned by time. Nothing updates them.
//!
//! Owns: `kala_audit`'s statements, and the row readers every query
//! of the store shares (`keyed_json`, `keyed_rows`, `execute`).

use jiff::Timestamp;
use kala_store::json::decode;
use kala_store::{AuditEntry, Result, ns_i64};
use sqlx::migrate::Migrate;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type,
};

use crate::dialect::{Dialect, RowsAffected};
use crate::error::map_err;
use crate::store::{CHUNK, SqlStore};

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
    /// Inserts `rows` ((id, at ns, JSON)) in `tx`.
    pub(crate) async fn insert_audit(
        tx: &mut sqlx::Transaction<'_, D::DB>,
        rows: &[(String, i64, String)],
    ) -> std::result::Result<(), sqlx::Error> {
        for chunk in rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<D::DB>::new("INSERT INTO kala_audit (id, at, entry) ");
            q.push_values(chunk, |mut row, (id, at, json)| {
                row.push_bind(id.as_str())
                    .push_bind(*at)
                    .push_bind(json.as_str());
            });
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(crate) async fn audit_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let mut q = QueryBuilder::<D::DB>::new("SELECT id, entry FROM kala_audit");
        if let Some(b) = before {
            q.push(" WHERE id < ").push_bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.keyed_rows(&mut q).await
    }

    pub(crate) async fn prune_audit_rows(&self, before: Timestamp) -> Result<u64> {
        let mut q = QueryBuilder::<D::DB>::new("DELETE FROM kala_audit WHERE at < ");
        q.push_bind(ns_i64(before).unwrap_or(i64::MAX));
        self.execute(&mut q).await
    }

    /// Every row of `sql` (`SELECT key, json …`), decoded; damage is
    /// named by the row's key.
    pub(crate) async fn keyed_json<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
    ) -> Result<Vec<T>> {
        self.keyed_rows(&mut QueryBuilder::<D::DB>::new(sql)).await
    }

    /// [`Self::keyed_json`] for a built query.
    pub(crate) async fn keyed_rows<T: serde::de::DeserializeOwned>(
        &self,
        q: &mut QueryBuilder<D::DB>,
    ) -> Result<Vec<T>> {
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(map_err::<D>)?;
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(map_err::<D>)?;
                let json: String = row.try_get(1).map_err(map_err::<D>)?;
                decode(&key, json.as_bytes())
            })
            .collect()
    }

    pub(crate) async fn execute(&self, q: &mut QueryBuilder<D::DB>) -> Result<u64> {
        let done = q.build().execute(&self.pool).await.map_err(map_err::<D>)?;
        Ok(done.rows())
    }
}
