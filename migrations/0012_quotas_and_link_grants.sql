-- Per-tenant quota set by the operator (`quota.set` events of the tenant's storage ledger);
-- a tenant without a row has the configured default. Derived from the log.
CREATE TABLE tenant_quotas (
    tenant      TEXT   PRIMARY KEY,
    max_bytes   BIGINT NOT NULL,
    max_files   BIGINT NOT NULL,
    updated_seq BIGINT NOT NULL
);

-- Signed links handed out, so that garbage collection keeps the blob of every version a live
-- link points at. An operational record written by the API before it returns a link (not
-- derived from the log: a replay leaves it alone); the collector deletes expired rows.
CREATE TABLE link_grants (
    tenant     TEXT        NOT NULL,
    version    TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX link_grants_version ON link_grants (tenant, version, expires_at);
