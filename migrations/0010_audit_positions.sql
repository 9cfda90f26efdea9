-- Audit index with per-event positions (issue 16). Every event has its own `seq`: its
-- position in its tenant's history (1, 2, 3, ... no gaps, no repeats), assigned by the audit
-- projection; `logseq` is the stream sequence of the commit it came from and `idx` its place
-- in that commit. The chain is per tenant in `seq` order:
--   hash = SHA-256(prev_hash || seq (8 bytes BE) || event bytes), prev_hash of seq 1 = 32 zero bytes
-- (see events::audit_chain). `event` is the canonical JSON of the event's CloudEvent, the very
-- object webhooks and SSE deliver.
--
-- The earlier form (0003) positioned events by (stream seq, idx) and hashed that; its rows
-- cannot be converted in SQL (the hashed bytes change), so the index is recreated empty.
-- Upgrading a deployment with history: run `file-engine replay` once after `migrate` (the
-- audit index is derived data, rebuilt from the log).
DROP TABLE IF EXISTS audit_events;
DROP TABLE IF EXISTS audit_heads;

CREATE TABLE audit_events (
    tenant     TEXT COLLATE "C" NOT NULL,
    seq        BIGINT      NOT NULL,                 -- position in the tenant's history
    logseq     BIGINT      NOT NULL,                 -- stream sequence of the commit
    idx        INTEGER     NOT NULL,                 -- position of the event in its commit
    type       TEXT COLLATE "C" NOT NULL,            -- short type, e.g. dir.created
    path       TEXT COLLATE "C" NOT NULL,            -- the CloudEvent subject
    target     TEXT COLLATE "C",                     -- move/copy target (data.to, or the task's)
    task_id    UUID,
    principal  TEXT COLLATE "C" NOT NULL,            -- who asked
    actor      TEXT COLLATE "C" NOT NULL,            -- who acted
    request_id TEXT,
    time       TIMESTAMPTZ NOT NULL,                 -- JetStream storage time of the commit
    event      TEXT        NOT NULL,
    hash       BYTEA       NOT NULL,
    PRIMARY KEY (tenant, seq),
    -- A commit is indexed once: a second application fails instead of duplicating events.
    UNIQUE (logseq, idx)
);
CREATE INDEX audit_events_commit ON audit_events (tenant, logseq, idx);
CREATE INDEX audit_events_principal ON audit_events (tenant, principal, seq);
CREATE INDEX audit_events_type ON audit_events (tenant, type, seq);
CREATE INDEX audit_events_time ON audit_events (tenant, time, seq);
-- Path filters are range scans in byte order: the subtree of '/a' is ('/a/', '/a0').
CREATE INDEX audit_events_path ON audit_events (tenant, path, seq);
CREATE INDEX audit_events_target ON audit_events (tenant, target, seq) WHERE target IS NOT NULL;
-- The context of a task, for its later events that carry no path (task.failed, ...).
CREATE INDEX audit_events_task ON audit_events (tenant, task_id, seq)
    WHERE type = 'task.requested';

-- Head of each tenant's chain (its latest event), so appending needs no scan.
CREATE TABLE audit_heads (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    seq    BIGINT  NOT NULL,                         -- the tenant's last event position
    logseq BIGINT  NOT NULL,                         -- the commit it came from
    hash   BYTEA   NOT NULL
);

-- Verification state per tenant: how far the index has been proven against the log
-- (`verified_*`, the head each incremental check continues from) and the lease that lets
-- only one verification of a tenant run at a time across API replicas (`lease_*`; a lease
-- that is not renewed expires, so a crashed verifier never blocks the tenant for long).
CREATE TABLE audit_verification (
    tenant          TEXT COLLATE "C" PRIMARY KEY,
    verified_seq    BIGINT      NOT NULL DEFAULT 0,  -- last event proven (0 = none)
    verified_logseq BIGINT      NOT NULL DEFAULT 0,  -- log position proven through
    verified_hash   BYTEA       NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea,
    verified_at     TIMESTAMPTZ,
    lease_holder    UUID,
    lease_until     TIMESTAMPTZ
);
