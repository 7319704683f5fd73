-- kala's MySQL/MariaDB schema. Values are JSON text (the job and run-record
-- formats of kala-job). utf8mb4_bin: ids compare byte for byte.
CREATE TABLE IF NOT EXISTS kala_jobs (
    id  VARCHAR(191) NOT NULL PRIMARY KEY,
    job LONGTEXT     NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS kala_runs (
    seq    BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    job_id VARCHAR(191) NOT NULL,
    ran_at BIGINT       NOT NULL, -- nanoseconds since 1970-01-01T00:00:00Z
    run    LONGTEXT     NOT NULL,
    KEY kala_runs_job_time (job_id, ran_at, seq),
    KEY kala_runs_time (ran_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS kala_claims (
    job_id       VARCHAR(191) NOT NULL,
    scheduled_at BIGINT       NOT NULL,
    owner        VARCHAR(255) NOT NULL,
    expires_at   BIGINT       NOT NULL,
    PRIMARY KEY (job_id, scheduled_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
