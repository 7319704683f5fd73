//! # kala-store-mysql
//!
//! A [`JobStore`] on MySQL or MariaDB (`--jobdb=mysql`, `--jobdb=mariadb`),
//! through sqlx.
//!
//! * The schema (`migrations/`) is applied at start-up by sqlx's migrator,
//!   recorded in `kala_migrations`. Tables: `kala_jobs(id, job)`,
//!   `kala_runs(seq, job_id, ran_at, run)`, `kala_claims`, all InnoDB.
//! * Every [`Batch`] is one transaction; jobs are upserted with
//!   `INSERT … ON DUPLICATE KEY UPDATE` in id order; a transaction that
//!   loses a deadlock is retried.
//! * A write is acknowledged once the server committed it (InnoDB's default
//!   `innodb_flush_log_at_trx_commit = 1` flushes the redo log on commit).
//! * Addresses: Kala's Go-driver forms `tcp(host:3306)/db`, `(host)/db`,
//!   `unix(/path/to.sock)/db`, plus `host:port/db` and `mysql://` URLs.
//!   `?tls=true|custom|skip-verify|preferred|false` is understood; other
//!   Go-driver parameters (`parseTime`, `charset`, …) are ignored.
//! * When the server goes away calls fail with [`StoreError::Unavailable`]
//!   (HTTP 503); the pool reconnects by itself when it is back.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kala_job::{Job, RunRecord};
use kala_store::json::decode;
use kala_store::sql::{EncodedBatch, retry_transient};
use kala_store::{Batch, Claim, JobStore, Result, Retention, StoreError, ns_i64};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::{QueryBuilder, Row, SqlSafeStr};

/// How to reach MySQL/MariaDB.
#[derive(Debug, Clone)]
pub struct MySqlOptions {
    pub address: String,
    pub username: String,
    pub password: String,
    /// `--jobdb-tls-capath`: CA file; turns on TLS with certificate and
    /// host name verification.
    pub tls_ca: Option<PathBuf>,
    /// `--jobdb-tls-certpath`: client certificate.
    pub tls_cert: Option<PathBuf>,
    /// `--jobdb-tls-keypath`: client key.
    pub tls_key: Option<PathBuf>,
    /// `--jobdb-tls-servername`: not supported (see [`MySqlOptions::connect_options`]).
    pub tls_servername: Option<String>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for MySqlOptions {
    fn default() -> Self {
        MySqlOptions {
            address: String::new(),
            username: String::new(),
            password: String::new(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_servername: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

fn bad(msg: impl Into<String>) -> StoreError {
    StoreError::Backend(msg.into())
}

impl MySqlOptions {
    /// The connect options these settings describe (no I/O).
    pub fn connect_options(&self) -> Result<MySqlConnectOptions> {
        let address = self.address.trim();
        if address.is_empty() {
            return Err(bad(
                "--jobdb-address is required for mysql: tcp(host:3306)/database, host:port/database or a mysql:// URL",
            ));
        }
        let mut opts = if address.starts_with("mysql://") || address.starts_with("mariadb://") {
            MySqlConnectOptions::from_str(address)
                .map_err(|e| bad(format!("--jobdb-address {address:?} is not usable: {e}")))?
        } else {
            parse_go_dsn(address)?
        };
        if !self.username.is_empty() {
            opts = opts.username(&self.username);
        }
        if !self.password.is_empty() {
            opts = opts.password(&self.password);
        }
        if self
            .tls_servername
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(bad(
                "--jobdb-tls-servername is not supported: kala checks the server certificate against the host in --jobdb-address, so connect by that name",
            ));
        }
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => {}
            (Some(ca), cert, key) => {
                if cert.is_some() != key.is_some() {
                    return Err(bad(
                        "--jobdb-tls-certpath and --jobdb-tls-keypath go together",
                    ));
                }
                opts = opts.ssl_mode(MySqlSslMode::VerifyIdentity).ssl_ca(ca);
                if let (Some(cert), Some(key)) = (cert, key) {
                    opts = opts.ssl_client_cert(cert).ssl_client_key(key);
                }
            }
            (None, _, _) => {
                return Err(bad(
                    "--jobdb-tls-certpath/--jobdb-tls-keypath need --jobdb-tls-capath",
                ));
            }
        }
        Ok(opts)
    }
}

/// Go MySQL driver DSN addresses (what Kala documents), without the
/// `user:password@` part that Kala adds from its flags.
fn parse_go_dsn(address: &str) -> Result<MySqlConnectOptions> {
    let (main, params) = address.split_once('?').unwrap_or((address, ""));
    let shape = || {
        bad(format!(
            "--jobdb-address {address:?}: expected tcp(host:3306)/database or host:port/database"
        ))
    };
    // `proto(inner)/db`, `(inner)/db` or `host:port/db`; a socket path has
    // slashes of its own, so the parenthesis is found first.
    let (proto, inner, db) = match main.find('(') {
        Some(open) => {
            let close = main[open..]
                .find(')')
                .map(|c| open + c)
                .ok_or_else(|| bad(format!("--jobdb-address {address:?}: missing ')'")))?;
            let db = main[close + 1..].strip_prefix('/').ok_or_else(shape)?;
            (&main[..open], &main[open + 1..close], db)
        }
        None => {
            let (host_port, db) = main.split_once('/').ok_or_else(shape)?;
            ("tcp", host_port, db)
        }
    };
    if proto.contains('@') || inner.contains('@') {
        return Err(bad(format!(
            "--jobdb-address {address:?}: give the user and password with --jobdb-username/--jobdb-password"
        )));
    }
    let mut opts = MySqlConnectOptions::new();
    if !db.is_empty() {
        opts = opts.database(db);
    }
    let host_port = match proto {
        "unix" => return finish(opts.socket(inner), params, address),
        "tcp" | "" => inner,
        other => {
            return Err(bad(format!(
                "--jobdb-address {address:?}: unknown protocol {other:?} (use tcp or unix)"
            )));
        }
    };
    let (host, port) = split_host_port(host_port)
        .ok_or_else(|| bad(format!("--jobdb-address {address:?}: bad host:port")))?;
    if !host.is_empty() {
        opts = opts.host(&host);
    }
    if let Some(port) = port {
        opts = opts.port(port);
    }
    finish(opts, params, address)
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), Some(p.parse().ok()?))),
        _ => Some((s.to_string(), None)),
    }
}

fn finish(
    mut opts: MySqlConnectOptions,
    params: &str,
    address: &str,
) -> Result<MySqlConnectOptions> {
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "tls" {
            opts = opts.ssl_mode(match v {
                "true" | "custom" => MySqlSslMode::VerifyIdentity,
                "skip-verify" => MySqlSslMode::Required,
                "preferred" => MySqlSslMode::Preferred,
                "false" => MySqlSslMode::Disabled,
                other => {
                    return Err(bad(format!(
                        "--jobdb-address {address:?}: tls={other:?} (use true, custom, skip-verify, preferred or false)"
                    )));
                }
            });
        } else {
            tracing::warn!(parameter = k, "mysql: ignoring a Go-driver DSN parameter");
        }
    }
    Ok(opts)
}

/// The migrations, compiled into the binary.
pub fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../migrations/0001_init.sql").into_sql_str(),
        false,
    )]);
    m.dangerous_set_table_name("kala_migrations");
    m
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(format!("mysql: {e}")),
        sqlx::Error::Database(db)
            if db.code().is_some_and(|c| c.starts_with("08"))
                || db.code().as_deref() == Some("HY000") && db.message().contains("shutdown") =>
        {
            StoreError::Unavailable(format!("mysql: {e}"))
        }
        _ => StoreError::Backend(format!("mysql: {e}")),
    }
}

/// Deadlock (1213) or lock wait timeout (1205): retry the transaction.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001")
        || db.message().contains("Lock wait timeout"))
}

/// Appends `IN (?, ?, …)` with `ids` bound.
fn push_in_list(q: &mut QueryBuilder<MySql>, ids: &[String]) {
    q.push("IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.clone());
    }
    q.push(")");
}

pub struct MySqlStore {
    pool: MySqlPool,
}

impl MySqlStore {
    /// Connects and applies the migrations.
    pub async fn connect(options: &MySqlOptions) -> Result<MySqlStore> {
        let connect = options.connect_options()?;
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("mysql migrations: {e}")))?;
        Ok(MySqlStore { pool })
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    async fn apply_once(&self, b: &EncodedBatch) -> std::result::Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for table in [
            "kala_jobs WHERE id",
            "kala_runs WHERE job_id",
            "kala_claims WHERE job_id",
        ] {
            for chunk in b.delete.chunks(1_000) {
                let mut q = QueryBuilder::<MySql>::new(format!("DELETE FROM {table} "));
                push_in_list(&mut q, chunk);
                q.build().execute(&mut *tx).await?;
            }
        }
        for (ids, jobs) in b.put_ids.chunks(1_000).zip(b.put_jobs.chunks(1_000)) {
            let mut q = QueryBuilder::<MySql>::new("INSERT INTO kala_jobs (id, job) ");
            q.push_values(ids.iter().zip(jobs), |mut row, (id, job)| {
                row.push_bind(id).push_bind(job);
            });
            q.push(" ON DUPLICATE KEY UPDATE job = VALUES(job)");
            q.build().execute(&mut *tx).await?;
        }
        let runs = b.run_job_ids.iter().zip(&b.run_at).zip(&b.runs);
        for chunk in runs.collect::<Vec<_>>().chunks(1_000) {
            let mut q = QueryBuilder::<MySql>::new("INSERT INTO kala_runs (job_id, ran_at, run) ");
            q.push_values(chunk, |mut row, ((id, at), run)| {
                row.push_bind(*id).push_bind(**at).push_bind(*run);
            });
            q.build().execute(&mut *tx).await?;
        }
        if let Some(keep) = b.keep_runs {
            for chunk in b.touched.chunks(1_000) {
                let mut q = QueryBuilder::<MySql>::new(
                    "DELETE r FROM kala_runs r JOIN (SELECT seq FROM (SELECT seq, ROW_NUMBER() \
                     OVER (PARTITION BY job_id ORDER BY ran_at DESC, seq DESC) AS rn \
                     FROM kala_runs WHERE job_id ",
                );
                push_in_list(&mut q, chunk);
                q.push(") x WHERE rn > ");
                q.push_bind(keep as i64);
                q.push(") d ON r.seq = d.seq");
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await
    }
}

#[async_trait]
impl JobStore for MySqlStore {
    fn name(&self) -> &'static str {
        "mysql"
    }

    async fn load_all(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query("SELECT id, job FROM kala_jobs")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let id: &str = row.try_get(0).map_err(map_err)?;
                let job: &str = row.try_get(1).map_err(map_err)?;
                decode(id, job.as_bytes())
            })
            .collect()
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query("SELECT job FROM kala_jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let job: &str = row.try_get(0).map_err(map_err)?;
                decode(id, job.as_bytes()).map(Some)
            }
        }
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = EncodedBatch::new(&batch)?;
        retry_transient(retryable, || self.apply_once(&encoded))
            .await
            .map_err(map_err)
    }

    async fn runs(&self, job_id: &str, limit: Option<usize>) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT run FROM kala_runs WHERE job_id = ? ORDER BY ran_at DESC, seq DESC LIMIT ?",
        )
        .bind(job_id)
        .bind(limit.map_or(i64::MAX, |l| l as i64))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut runs = rows
            .iter()
            .map(|row| {
                let run: &str = row.try_get(0).map_err(map_err)?;
                decode(job_id, run.as_bytes())
            })
            .collect::<Result<Vec<RunRecord>>>()?;
        runs.reverse();
        Ok(runs)
    }

    async fn prune_runs(&self, retention: Retention, now: Timestamp) -> Result<u64> {
        let mut dropped = 0;
        if let Some(cutoff) = retention.max_age.and_then(|a| now.checked_sub(a).ok()) {
            dropped += sqlx::query("DELETE FROM kala_runs WHERE ran_at < ?")
                .bind(ns_i64(cutoff)?)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
        }
        if let Some(keep) = retention.max_per_job {
            dropped += sqlx::query(
                "DELETE r FROM kala_runs r JOIN (SELECT seq FROM (SELECT seq, ROW_NUMBER() \
                 OVER (PARTITION BY job_id ORDER BY ran_at DESC, seq DESC) AS rn FROM kala_runs) x \
                 WHERE rn > ?) d ON r.seq = d.seq",
            )
            .bind(keep as i64)
            .execute(&self.pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        }
        sqlx::query("DELETE FROM kala_claims WHERE expires_at <= ?")
            .bind(ns_i64(now)?)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(dropped)
    }

    async fn delete_all(&self) -> Result<()> {
        // DELETE, not TRUNCATE: TRUNCATE commits implicitly and cannot be
        // part of a transaction; three statements in one transaction here.
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for sql in [
            "DELETE FROM kala_jobs",
            "DELETE FROM kala_runs",
            "DELETE FROM kala_claims",
        ] {
            sqlx::query(sql).execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn claim(&self, claim: Claim) -> Result<bool> {
        let scheduled = ns_i64(claim.scheduled_at)?;
        let expires = ns_i64(claim.expires_at)?;
        let inserted = sqlx::query(
            "INSERT IGNORE INTO kala_claims (job_id, scheduled_at, owner, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&claim.job_id)
        .bind(scheduled)
        .bind(&claim.owner)
        .bind(expires)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        // The row exists: take it if it is ours or expired. The server
        // reports matched rows (CLIENT_FOUND_ROWS), so a renewal with the
        // same values still counts.
        let updated = sqlx::query(
            "UPDATE kala_claims SET owner = ?, expires_at = ? \
             WHERE job_id = ? AND scheduled_at = ? AND (owner = ? OR expires_at <= ?)",
        )
        .bind(&claim.owner)
        .bind(expires)
        .bind(&claim.job_id)
        .bind(scheduled)
        .bind(&claim.owner)
        .bind(ns_i64(Timestamp::now())?)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn close(&self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(a: &str) -> MySqlConnectOptions {
        MySqlOptions {
            address: a.into(),
            ..MySqlOptions::default()
        }
        .connect_options()
        .unwrap()
    }

    #[test]
    fn kala_address_forms() {
        let o = opts("tcp(db.example:3307)/kala");
        assert_eq!((o.get_host(), o.get_port()), ("db.example", 3307));
        assert_eq!(o.get_database(), Some("kala"));
        let o = opts("(db.example)/kala");
        assert_eq!((o.get_host(), o.get_port()), ("db.example", 3306));
        let o = opts("127.0.0.1:3306/test");
        assert_eq!((o.get_host(), o.get_port()), ("127.0.0.1", 3306));
        let o = opts("tcp([::1]:3308)/x?tls=skip-verify&parseTime=true");
        assert_eq!((o.get_host(), o.get_port()), ("::1", 3308));
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::Required));
        let o = opts("unix(/run/mysqld/mysqld.sock)/test");
        assert!(o.get_socket().is_some());
        let o = opts("mysql://root@127.0.0.1:3306/test");
        assert_eq!(o.get_username(), "root");
    }

    #[test]
    fn bad_addresses_and_tls_flags() {
        let err = |o: MySqlOptions| o.connect_options().unwrap_err().to_string();
        let o = |a: &str| MySqlOptions {
            address: a.into(),
            ..MySqlOptions::default()
        };
        assert!(err(o("")).contains("--jobdb-address is required"));
        assert!(err(o("tcp(h:3306)")).contains("expected"));
        assert!(err(o("udp(h)/db")).contains("unknown protocol"));
        assert!(err(o("tcp(h:3306/db")).contains("')'"));
        assert!(err(o("u:p@tcp(h)/db")).contains("--jobdb-username"));
        assert!(err(o("h:notaport/db")).contains("host:port"));
        assert!(err(o("h/db?tls=maybe")).contains("tls="));
        let tls = MySqlOptions {
            tls_cert: Some("c.pem".into()),
            ..o("h/db")
        };
        assert!(err(tls).contains("need --jobdb-tls-capath"));
        let tls = MySqlOptions {
            tls_ca: Some("ca.pem".into()),
            tls_cert: Some("c.pem".into()),
            ..o("h/db")
        };
        assert!(err(tls).contains("go together"));
        let tls = MySqlOptions {
            tls_servername: Some("db".into()),
            ..o("h/db")
        };
        assert!(err(tls).contains("not supported"));
        let ok = MySqlOptions {
            tls_ca: Some("ca.pem".into()),
            ..o("h/db")
        }
        .connect_options()
        .unwrap();
        assert!(matches!(ok.get_ssl_mode(), MySqlSslMode::VerifyIdentity));
    }
}
