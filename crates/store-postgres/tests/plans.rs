//! The plans PostgreSQL makes for kala's hot statements on a table
//! without statistics: one that grew from empty on a server whose
//! autovacuum is off (this machine's CI server is such a one) or has not
//! got to it yet. The window trim of `keep_runs` was planned there as a
//! sequential scan and sort of every run row, for every batch, and JIT
//! compiled each such statement for ~100 ms; the trim now goes job by
//! job through the `(job_id, ran_at, seq)` index, and kala's sessions
//! have JIT off. Needs the real PostgreSQL (`KALA_TEST_POSTGRES`); fails
//! if it cannot be reached.

use kala_store::JobStore;
use kala_store_postgres::PostgresStore;
use kala_store_sql::Syntax;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trim_of_old_runs_uses_the_index_without_statistics() {
    let (schema, options) = common::fresh_schema();
    let s = PostgresStore::connect(&options)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {:?} is needed: {e}", common::url()));
    let mut conn = s.pool().acquire().await.expect("a connection");

    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&mut *conn)
        .await
        .expect("SHOW jit");
    assert_eq!(jit, "off", "kala's sessions run without JIT");

    // 50,000 runs of 2,000 jobs, never analyzed.
    sqlx::query(
        "INSERT INTO kala_runs (job_id, ran_at, run) \
         SELECT 'job-' || (g % 2000), g, repeat('x', 300) FROM generate_series(1, 50000) g",
    )
    .execute(&mut *conn)
    .await
    .expect("fill kala_runs");

    let [first, cut, last] = Syntax::POSTGRES
        .trim_runs
        .expect("PostgreSQL trims through the index");
    let jobs = 512;
    let values = (1..=jobs)
        .map(|i| format!("(${i})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("{first}VALUES {values}{cut}${}{last}", jobs + 1);
    sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE trim AS {sql}")))
        .execute(&mut *conn)
        .await
        .expect("prepare the trim");
    let args = (0..jobs)
        .map(|i| format!("'job-{i}'"))
        .chain(std::iter::once("1000".to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    // Both the plan for these values and the generic plan a prepared
    // statement settles on after five executions.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .expect("plan_cache_mode");
        let plan: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE trim({args})")))
                .fetch_all(&mut *conn)
                .await
                .expect("EXPLAIN the trim");
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan"),
            "{mode}: the trim reads the table through its indexes:\n{plan}"
        );
        assert!(
            plan.contains("kala_runs_job_time"),
            "{mode}: each job's rows come from the (job_id, ran_at, seq) index:\n{plan}"
        );
    }
    drop(conn);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(s.pool())
    .await
    .expect("drop the test schema");
    s.close().await.expect("close");
}
