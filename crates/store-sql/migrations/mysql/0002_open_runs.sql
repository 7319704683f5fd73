-- The run journal: a run is written here before its process starts and
-- removed in the transaction that stores its record. `entry` is the JSON
-- of kala_store::OpenRun.
CREATE TABLE IF NOT EXISTS kala_open_runs (
    run_id VARCHAR(191) NOT NULL PRIMARY KEY,
    job_id VARCHAR(191) NOT NULL,
    node   VARCHAR(255) NOT NULL,
    entry  LONGTEXT     NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
