-- The run journal: a run is written here before its process starts and
-- removed in the transaction that stores its record. `entry` is the JSON
-- of kala_store::OpenRun.
CREATE TABLE IF NOT EXISTS kala_open_runs (
    run_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    node   TEXT NOT NULL,
    entry  TEXT NOT NULL
);
