-- The notification outbox: a notice is inserted in the transaction of the
-- run record that causes it and updated by its deliveries. `notice` is the
-- JSON of kala_store::Notice; the other columns are what queries need.
CREATE TABLE IF NOT EXISTS kala_notices (
    id         VARCHAR(191) NOT NULL PRIMARY KEY,
    job_id     VARCHAR(191) NOT NULL,
    pending    BIGINT       NOT NULL,
    next_at    BIGINT       NOT NULL,
    done_at    BIGINT       NOT NULL,
    notice     LONGTEXT     NOT NULL,
    INDEX kala_notices_job (job_id),
    INDEX kala_notices_pending (pending, next_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
