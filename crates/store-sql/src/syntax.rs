//! The SQL that differs between the databases kala supports, side by
//! side, so that every statement kala runs can be read in this crate.
//!
//! Owns: [`Syntax`], [`Syntax::POSTGRES`], [`Syntax::MYSQL`]. Must not:
//! hold anything but text.

/// One database's spelling of what [`crate::SqlStore`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Syntax {
    /// `postgres`, `mysql`: in messages and `JobStore::name`.
    pub name: &'static str,
    /// The schema (`CREATE TABLE IF NOT EXISTS …`), migration 1.
    pub schema: &'static str,
    /// Migration 2: the run journal's table.
    pub open_runs: &'static str,
    /// Appended to `INSERT INTO kala_jobs (id, job) VALUES …` to replace
    /// an existing row.
    pub upsert_job: &'static str,
    /// Wraps `INTO kala_claims … VALUES (…)` so that an existing row is
    /// left alone without an error: (before, after).
    pub insert_if_absent: (&'static str, &'static str),
    /// Wraps a `SELECT seq …` to delete those run rows: (before, after).
    pub delete_runs_by_seq: (&'static str, &'static str),
    /// Empties the job tables (not membership and leases), in one
    /// transaction.
    pub delete_all: &'static [&'static str],
    /// Appended to `INSERT INTO kala_nodes (name, expires_at, info)
    /// VALUES …` to replace an existing row.
    pub upsert_node: &'static str,
    /// Migration 3: nodes, leases, changes.
    pub cluster: &'static str,
    /// Appended to a `SELECT … FROM kala_leases WHERE …` to hold the row
    /// against a lease change until the transaction ends, letting other
    /// readers in.
    pub share_lock: &'static str,
    /// Migration 4: the notification outbox.
    pub notices: &'static str,
    /// Appended to `INSERT INTO kala_notices (…) VALUES …` to replace an
    /// existing row.
    pub upsert_notice: &'static str,
    /// Run in a transaction that appended changes, to wake the other
    /// instances at its commit; `None`: they poll.
    pub notify: Option<&'static str>,
}

impl Syntax {
    pub const POSTGRES: Syntax = Syntax {
        name: "postgres",
        schema: include_str!("../migrations/postgres/0001_init.sql"),
        open_runs: include_str!("../migrations/postgres/0002_open_runs.sql"),
        upsert_job: " ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job",
        insert_if_absent: ("INSERT ", " ON CONFLICT DO NOTHING"),
        delete_runs_by_seq: ("DELETE FROM kala_runs WHERE seq IN (", ")"),
        delete_all: &["TRUNCATE kala_jobs, kala_runs, kala_claims, kala_open_runs, kala_notices"],
        upsert_node: " ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at, info = EXCLUDED.info",
        cluster: include_str!("../migrations/postgres/0003_cluster.sql"),
        share_lock: " FOR SHARE",
        notices: include_str!("../migrations/postgres/0004_notices.sql"),
        upsert_notice: " ON CONFLICT (id) DO UPDATE SET pending = EXCLUDED.pending, next_at = EXCLUDED.next_at, done_at = EXCLUDED.done_at, notice = EXCLUDED.notice",
        notify: Some("SELECT pg_notify('kala_changes', '')"),
    };

    /// MySQL and MariaDB. MySQL cannot delete from a table that its own
    /// subquery reads, hence the multi-table `DELETE … JOIN`; `TRUNCATE`
    /// commits implicitly, hence one `DELETE` per table.
    pub const MYSQL: Syntax = Syntax {
        name: "mysql",
        schema: include_str!("../migrations/mysql/0001_init.sql"),
        open_runs: include_str!("../migrations/mysql/0002_open_runs.sql"),
        upsert_job: " ON DUPLICATE KEY UPDATE job = VALUES(job)",
        insert_if_absent: ("INSERT IGNORE ", ""),
        delete_runs_by_seq: ("DELETE r FROM kala_runs r JOIN (", ") d ON r.seq = d.seq"),
        delete_all: &[
            "DELETE FROM kala_jobs",
            "DELETE FROM kala_runs",
            "DELETE FROM kala_claims",
            "DELETE FROM kala_open_runs",
            "DELETE FROM kala_notices",
        ],
        upsert_node: " ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at), info = VALUES(info)",
        cluster: include_str!("../migrations/mysql/0003_cluster.sql"),
        share_lock: " LOCK IN SHARE MODE",
        notices: include_str!("../migrations/mysql/0004_notices.sql"),
        upsert_notice: " ON DUPLICATE KEY UPDATE pending = VALUES(pending), next_at = VALUES(next_at), done_at = VALUES(done_at), notice = VALUES(notice)",
        notify: None,
    };
}
