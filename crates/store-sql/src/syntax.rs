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
    /// Where the database can: the run rows of some jobs beyond the
    /// newest N each, found job by job through the `(job_id, ran_at,
    /// seq)` index (a backward scan that skips N rows), then deleted by
    /// their primary key; as three pieces around the jobs' `VALUES` list
    /// and N. The plan does not depend on the table's statistics, which
    /// may be missing or stale (a table that grew from empty, a server
    /// without autovacuum): the window of `None` below was planned on
    /// such a table as a sequential scan and sort of every run row, for
    /// each batch (hundreds of ms each under load). Otherwise (`None`)
    /// a window over those jobs' rows numbers them
    /// (`delete_runs_by_seq`).
    pub trim_runs: Option<[&'static str; 3]>,
    /// Empties the job tables (not membership and leases), in one
    /// transaction.
    pub delete_all: &'static [&'static str],
    /// Appended to `INSERT INTO kala_nodes (name, expires_at, info)
    /// VALUES …` to replace an existing row.
    pub upsert_node: &'static str,
    /// Migration 3: nodes, leases, changes.
    pub cluster: &'static str,
    /// Appended to a fenced batch's `SELECT … FROM kala_leases WHERE …`
    /// to hold the rows against a change of hands until the transaction
    /// ends, letting other readers in. Where the database can, the lock
    /// lets the owner's own renewal ([`Syntax::renew_lock`]) through.
    pub fence_lock: &'static str,
    /// Appended to the lease round's `SELECT … FROM kala_leases` for the
    /// rows the instance holds and renews or releases: like
    /// [`Syntax::skip_locked`], but where the database can, it does not
    /// wait for (nor pass over) fenced batches in flight, which stay
    /// valid under a renewal. PostgreSQL: `FOR NO KEY UPDATE` against the
    /// batches' `FOR KEY SHARE`; a change of hands takes `FOR UPDATE`,
    /// which conflicts with them.
    pub renew_lock: &'static str,
    /// Whether fenced batches may share a group commit. A group holds its
    /// batches' lease rows (`fence_lock`) for the whole transaction; where
    /// that lock also keeps the owner's renewal out (MySQL), the rounds
    /// would pass over most rows while groups are written, so there each
    /// fenced batch is a transaction of its own.
    pub group_fenced: bool,
    /// Migration 4: the notification outbox.
    pub notices: &'static str,
    /// Appended to `INSERT INTO kala_notices (…) VALUES …` to replace an
    /// existing row.
    pub upsert_notice: &'static str,
    /// Migration 5: the audit log.
    pub audit: &'static str,
    /// Run in a transaction that appended changes, to wake the other
    /// instances at its commit; `None`: they poll.
    pub notify: Option<&'static str>,
    /// Appended to the lease round's `SELECT … FROM kala_leases` to lock
    /// the rows no other transaction holds and pass over the others, so a
    /// round never waits on another instance's transaction.
    pub skip_locked: &'static str,
    /// Run on every new connection: what bounds the database work of an
    /// instance that goes silent (see [`SessionSetting`]).
    pub session: &'static [SessionSetting],
}

/// A statement run on every new connection of the pool.
#[derive(Debug, Clone, Copy)]
pub struct SessionSetting {
    pub sql: &'static str,
    /// Not every server of the family has it (MariaDB's variables on
    /// MySQL): an error is logged at debug level and the connection is
    /// used all the same. A required setting that fails fails the
    /// connection.
    pub optional: bool,
}

impl Syntax {
    pub const POSTGRES: Syntax = Syntax {
        name: "postgres",
        schema: include_str!("../migrations/postgres/0001_init.sql"),
        open_runs: include_str!("../migrations/postgres/0002_open_runs.sql"),
        upsert_job: " ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job",
        insert_if_absent: ("INSERT ", " ON CONFLICT DO NOTHING"),
        delete_runs_by_seq: ("DELETE FROM kala_runs WHERE seq IN (", ")"),
        trim_runs: Some([
            "DELETE FROM kala_runs WHERE seq = ANY(ARRAY(SELECT c.seq FROM (",
            ") AS j(id) CROSS JOIN LATERAL (SELECT seq FROM kala_runs WHERE job_id = j.id \
             ORDER BY ran_at DESC, seq DESC OFFSET ",
            ") c))",
        ]),
        delete_all: &["TRUNCATE kala_jobs, kala_runs, kala_claims, kala_open_runs, kala_notices"],
        upsert_node: " ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at, info = EXCLUDED.info",
        cluster: include_str!("../migrations/postgres/0003_cluster.sql"),
        fence_lock: " FOR KEY SHARE",
        renew_lock: " FOR NO KEY UPDATE SKIP LOCKED",
        group_fenced: true,
        notices: include_str!("../migrations/postgres/0004_notices.sql"),
        upsert_notice: " ON CONFLICT (id) DO UPDATE SET pending = EXCLUDED.pending, next_at = EXCLUDED.next_at, done_at = EXCLUDED.done_at, notice = EXCLUDED.notice",
        audit: include_str!("../migrations/postgres/0005_audit.sql"),
        notify: Some("SELECT pg_notify('kala_changes', '')"),
        skip_locked: " FOR UPDATE SKIP LOCKED",
        // The server also probes the connection (TCP keepalive every 2 s
        // after 5 s idle, 3 probes): a dead network ends the session and
        // its locks within ~11 s even outside a transaction.
        session: &[
            SessionSetting {
                sql: "SET idle_in_transaction_session_timeout = '2s'",
                optional: false,
            },
            SessionSetting {
                sql: "SET lock_timeout = '1s'",
                optional: false,
            },
            // JIT compiling pays off for long analytic queries, not for
            // kala's: on a table without statistics (inflated estimates)
            // it compiled each trim of old runs for ~100 ms.
            SessionSetting {
                sql: "SET jit = off",
                optional: true,
            },
            SessionSetting {
                sql: "SET tcp_keepalives_idle = 5",
                optional: true,
            },
            SessionSetting {
                sql: "SET tcp_keepalives_interval = 2",
                optional: true,
            },
            SessionSetting {
                sql: "SET tcp_keepalives_count = 3",
                optional: true,
            },
        ],
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
        // MariaDB has no LATERAL; MySQL plans each execution afresh, with
        // index dives into the IN list.
        trim_runs: None,
        delete_all: &[
            "DELETE FROM kala_jobs",
            "DELETE FROM kala_runs",
            "DELETE FROM kala_claims",
            "DELETE FROM kala_open_runs",
            "DELETE FROM kala_notices",
        ],
        upsert_node: " ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at), info = VALUES(info)",
        cluster: include_str!("../migrations/mysql/0003_cluster.sql"),
        fence_lock: " LOCK IN SHARE MODE",
        renew_lock: " FOR UPDATE SKIP LOCKED",
        group_fenced: false,
        notices: include_str!("../migrations/mysql/0004_notices.sql"),
        upsert_notice: " ON DUPLICATE KEY UPDATE pending = VALUES(pending), next_at = VALUES(next_at), done_at = VALUES(done_at), notice = VALUES(notice)",
        audit: include_str!("../migrations/mysql/0005_audit.sql"),
        notify: None,
        skip_locked: " FOR UPDATE SKIP LOCKED",
        // MariaDB ends a transaction idle for `idle_transaction_timeout`
        // seconds (MySQL has no such variable: there, `wait_timeout` and
        // the lock wait bound it). `innodb_lock_wait_timeout` is 50 s by
        // default.
        // READ COMMITTED, as PostgreSQL: InnoDB's default REPEATABLE READ
        // takes gap locks (a journal entry's delete, the trim of old run
        // records), and an instance cut off in the middle of such a
        // transaction would hold every other instance's inserts there.
        session: &[
            SessionSetting {
                sql: "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                optional: false,
            },
            SessionSetting {
                sql: "SET SESSION innodb_lock_wait_timeout = 1",
                optional: false,
            },
            SessionSetting {
                sql: "SET SESSION idle_transaction_timeout = 2",
                optional: true,
            },
        ],
    };
}
