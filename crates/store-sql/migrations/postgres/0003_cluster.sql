-- Several instances on one database: who is alive (kala_nodes), who holds
-- each hash partition of the job ids (kala_leases, with a fencing token
-- that grows whenever a lease changes hands), and which jobs' definitions
-- changed (kala_changes, polled by every instance after a NOTIFY).
CREATE TABLE IF NOT EXISTS kala_nodes (
    name       TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL, -- ns since 1970; alive until then
    info       TEXT   NOT NULL  -- JSON of kala_store::NodeInfo
);

CREATE TABLE IF NOT EXISTS kala_leases (
    part       BIGINT  PRIMARY KEY,
    owner      TEXT    NOT NULL,
    token      BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

CREATE TABLE IF NOT EXISTS kala_changes (
    seq    BIGSERIAL PRIMARY KEY,
    job_id TEXT   NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS kala_changes_at ON kala_changes (at);
