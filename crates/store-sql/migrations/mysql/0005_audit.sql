-- The audit log: an entry is inserted in the transaction of the change it
-- describes and never updated. `id` orders entries by time (it begins
-- with the time in ns); `entry` is the JSON of kala_store::AuditEntry.
CREATE TABLE IF NOT EXISTS kala_audit (
    id     VARCHAR(64) NOT NULL PRIMARY KEY,
    at     BIGINT      NOT NULL,
    entry  LONGTEXT    NOT NULL,
    INDEX kala_audit_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
