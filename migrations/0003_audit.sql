-- Audit index: one row per event of the log (every aggregate, every type), derived by the
-- projector in the same transaction as its checkpoint and rebuilt by `file-engine replay`.
-- `event` is the canonical JSON (keys sorted, compact) of the event's CloudEvent; `hash`
-- chains the rows of one tenant in log order:
--   hash = SHA-256(prev_hash || seq (8 bytes BE) || idx (4 bytes BE) || event bytes),
-- prev_hash of a tenant's first row = 32 zero bytes (see events::audit_chain).
-- The other columns are the query filters, copied out of the event.
CREATE TABLE audit_events (
    seq        BIGINT      NOT NULL,                 -- stream sequence of the commit
    idx        INTEGER     NOT NULL,                 -- position of the event in its commit
    tenant     TEXT COLLATE "C" NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,            -- short type, e.g. dir.created
    path       TEXT COLLATE "C" NOT NULL,            -- the CloudEvent subject
    target     TEXT COLLATE "C",                     -- move/copy target (data.to, or the task's)
    task_id    UUID,
    principal  TEXT COLLATE "C" NOT NULL,
    request_id TEXT,
    time       TIMESTAMPTZ NOT NULL,                 -- JetStream storage time of the commit
    event      TEXT        NOT NULL,
    hash       BYTEA       NOT NULL,
    PRIMARY KEY (seq, idx)
);
-- Log order within a tenant (the default query and the export).
CREATE UNIQUE INDEX audit_events_tenant_order ON audit_events (tenant, seq, idx);
CREATE INDEX audit_events_principal ON audit_events (tenant, principal, seq, idx);
CREATE INDEX audit_events_type ON audit_events (tenant, type, seq, idx);
CREATE INDEX audit_events_time ON audit_events (tenant, time, seq);
-- Path filters are range scans in byte order: the subtree of '/a' is ('/a/', '/a0').
CREATE INDEX audit_events_path ON audit_events (tenant, path, seq);
CREATE INDEX audit_events_target ON audit_events (tenant, target, seq) WHERE target IS NOT NULL;
-- The path of a task, for its later events that carry none (task.failed, ...).
CREATE INDEX audit_events_task ON audit_events (tenant, task_id, seq)
    WHERE type = 'task.requested';

-- Head of each tenant's chain (its latest row), so appending needs no scan.
CREATE TABLE audit_heads (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    seq    BIGINT  NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BYTEA   NOT NULL
);
