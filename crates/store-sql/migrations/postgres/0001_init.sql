-- kala's PostgreSQL schema. Values are JSON text (the job and run-record
-- formats of kala-job); TEXT rather than JSONB because JSONB refuses a NUL
-- character, which a job's output tail may contain. Cast with ::jsonb to
-- query inside them.
CREATE TABLE IF NOT EXISTS kala_jobs (
    id  TEXT PRIMARY KEY,
    job TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS kala_runs (
    seq    BIGSERIAL PRIMARY KEY,
    job_id TEXT   NOT NULL,
    ran_at BIGINT NOT NULL, -- nanoseconds since 1970-01-01T00:00:00Z
    run    TEXT   NOT NULL
);
-- A job's history, newest first (GET /job/{id}/runs, keep_runs trimming).
CREATE INDEX IF NOT EXISTS kala_runs_job_time ON kala_runs (job_id, ran_at, seq);
-- Retention by age.
CREATE INDEX IF NOT EXISTS kala_runs_time ON kala_runs (ran_at);

CREATE TABLE IF NOT EXISTS kala_claims (
    job_id       TEXT   NOT NULL,
    scheduled_at BIGINT NOT NULL,
    owner        TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (job_id, scheduled_at)
);
