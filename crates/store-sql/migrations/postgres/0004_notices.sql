-- The notification outbox: a notice is inserted in the transaction of the
-- run record that causes it and updated by its deliveries. `notice` is the
-- JSON of kala_store::Notice; the other columns are what queries need.
CREATE TABLE IF NOT EXISTS kala_notices (
    id         TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL,
    pending    BIGINT NOT NULL,
    next_at    BIGINT NOT NULL,
    done_at    BIGINT NOT NULL,
    notice     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kala_notices_job ON kala_notices (job_id);
CREATE INDEX IF NOT EXISTS kala_notices_pending ON kala_notices (pending, next_at);
