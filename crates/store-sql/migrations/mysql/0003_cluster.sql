-- Several instances on one database: who is alive (kala_nodes), who holds
-- each hash partition of the job ids (kala_leases, with a fencing token
-- that grows whenever a lease changes hands), and which jobs' definitions
-- changed (kala_changes, polled by every instance).
CREATE TABLE IF NOT EXISTS kala_nodes (
    name       VARCHAR(191) NOT NULL PRIMARY KEY,
    expires_at BIGINT       NOT NULL,
    info       LONGTEXT     NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS kala_leases (
    part       BIGINT       NOT NULL PRIMARY KEY,
    owner      VARCHAR(191) NOT NULL,
    token      BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS kala_changes (
    seq    BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    job_id VARCHAR(191) NOT NULL,
    at     BIGINT       NOT NULL,
    KEY kala_changes_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
