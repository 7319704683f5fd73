-- The audit log: an entry is inserted in the transaction of the change it
-- describes and never updated. `id` orders entries by time (it begins
-- with the time in ns); `entry` is the JSON of kala_store::AuditEntry.
CREATE TABLE IF NOT EXISTS kala_audit (
    id     TEXT PRIMARY KEY,
    at     BIGINT NOT NULL,
    entry  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kala_audit_at ON kala_audit (at);
