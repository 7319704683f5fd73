//! What a SQL database must provide for [`crate::SqlStore`] to run on it.
//!
//! Owns: the [`Dialect`] trait, [`ErrorClass`], [`RowsAffected`] and the
//! connection settings every SQL backend shares ([`ConnectOptions`]).
//! Must not: contain SQL (that is `syntax` and `store`).

use std::future::Future;
use std::time::Duration;

use kala_store::{Result, StoreError};
use sqlx::{Database, Pool};

use crate::syntax::Syntax;

/// How a database error is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The server is away or going away: HTTP 503, nothing written.
    Unavailable,
    /// A deadlock or serialisation failure: run the transaction again.
    Retry,
    /// Anything else: reported as a storage error.
    Other,
}

/// Classifies an error the server returned by its code and message.
pub type Classify = fn(Option<&str>, &str) -> ErrorClass;

/// The differences between SQL databases, and nothing else.
pub trait Dialect: Send + Sync + 'static {
    type DB: Database;
    /// What the backend's flags become (address, credentials, TLS, …).
    type Options: Send + Sync;

    /// A pool on `options`, with the schema the options name in place.
    fn connect(options: &Self::Options) -> impl Future<Output = Result<Pool<Self::DB>>> + Send;

    /// Starts listening for other instances' changes (a task that wakes
    /// the returned `Notify`), where the database can notify; the
    /// default: it cannot, instances poll.
    fn listen(
        _pool: &Pool<Self::DB>,
    ) -> impl Future<Output = Option<std::sync::Arc<tokio::sync::Notify>>> + Send {
        async { None }
    }

    /// The database's spelling of the statements that differ.
    const SYNTAX: Syntax;
    /// Which of its errors mean "unavailable" or "retry" (I/O, pool and
    /// TLS errors are "unavailable" for every database).
    const CLASSIFY: Classify;
}

/// Rows a statement changed (sqlx has no common trait for it). On MySQL
/// an `UPDATE` counts matched rows: sqlx sets `CLIENT_FOUND_ROWS`.
pub trait RowsAffected {
    fn rows(&self) -> u64;
}

#[cfg(feature = "postgres")]
impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

#[cfg(feature = "mysql")]
impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// Where a SQL server is and how to log in: the flags every SQL backend
/// has (`--jobdb-address`, `--jobdb-username`, `--jobdb-password`).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The backend's address forms (see each backend).
    pub address: String,
    /// Overrides the address's user when not empty.
    pub username: String,
    /// Overrides the address's password when not empty.
    pub password: String,
    pub max_connections: u32,
    /// How long a call waits for a connection before it fails with
    /// `StoreError::Unavailable` (HTTP 503).
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            address: String::new(),
            username: String::new(),
            password: String::new(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// A pooled connection idle this long is pinged before it is used.
pub const PING_IF_IDLE: Duration = Duration::from_secs(1);

impl ConnectOptions {
    /// A pool on `options` (the backend's own connect options); `target`
    /// names the server in errors (host, port and database, no password).
    ///
    /// One connection is opened first, on its own: a pool that cannot
    /// connect only says it timed out, while this says why (refused, no
    /// such host, authentication, no such database) and where.
    pub async fn pool<D: Dialect>(
        &self,
        options: <<D::DB as Database>::Connection as sqlx::Connection>::Options,
        target: &str,
    ) -> Result<Pool<D::DB>>
    where
        for<'c> &'c mut <D::DB as Database>::Connection: sqlx::Executor<'c, Database = D::DB>,
    {
        let name = D::SYNTAX.name;
        let at = |m: String| m.replacen(&format!("{name}: "), &format!("{name} at {target}: "), 1);
        let first = tokio::time::timeout(
            self.acquire_timeout,
            <<D::DB as Database>::Connection as sqlx::Connection>::connect_with(&options),
        )
        .await;
        match first {
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "{name} at {target}: no answer within {:?} (nothing listening behind a firewall, or a stalled network)",
                    self.acquire_timeout
                )));
            }
            Ok(Err(e)) => {
                return Err(match crate::map_err::<D>(e) {
                    StoreError::Unavailable(m) => StoreError::Unavailable(at(m)),
                    StoreError::Backend(m) => StoreError::Backend(at(m)),
                    other => other,
                });
            }
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
        sqlx::pool::PoolOptions::<D::DB>::new()
            .max_connections(self.max_connections.max(1))
            .acquire_timeout(self.acquire_timeout)
            // A connection idle for a while is pinged before it is handed
            // out (the server may have restarted or dropped it meanwhile);
            // one in steady use is not, which saved a round trip on every
            // statement of a busy instance (sqlx's default pings always).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    for s in D::SYNTAX.session {
                        match sqlx::raw_sql(sqlx::AssertSqlSafe(s.sql))
                            .execute(&mut *conn)
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if s.optional => {
                                tracing::debug!(setting = s.sql, error = %e, "session setting not available on this server");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(crate::map_err::<D>)
    }
}
