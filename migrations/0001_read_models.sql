-- Read models of File Engine. Every table here is derived from the event log and can be
-- dropped and rebuilt with `file-engine replay`. Paths use the "C" collation so that ordering
-- and range scans follow bytes: the subtree of '/a' is the range ('/a/', '/a0').

CREATE TABLE projection_checkpoints (
    projection TEXT PRIMARY KEY,
    last_seq   BIGINT NOT NULL
);

CREATE TABLE tasks (
    tenant           TEXT        NOT NULL,
    task_id          UUID        NOT NULL,
    principal        TEXT        NOT NULL,
    op               TEXT        NOT NULL,
    spec             JSONB       NOT NULL,
    status           TEXT        NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    error            JSONB,
    idempotency_key  TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    dead_lettered_at TIMESTAMPTZ,
    -- log position of the request (or of the latest retry): tasks on overlapping paths run in this order
    queued_seq       BIGINT      NOT NULL,
    last_seq         BIGINT      NOT NULL,
    PRIMARY KEY (tenant, task_id)
);
CREATE INDEX tasks_open ON tasks (tenant, queued_seq) WHERE status IN ('pending', 'running');
CREATE INDEX tasks_dead ON tasks (tenant, dead_lettered_at, task_id) WHERE status = 'dead_lettered';

CREATE TABLE entries (
    tenant       TEXT COLLATE "C" NOT NULL,
    path         TEXT COLLATE "C" NOT NULL,
    parent       TEXT COLLATE "C",
    name         TEXT COLLATE "C" NOT NULL,
    kind         TEXT        NOT NULL CHECK (kind IN ('file', 'dir')),
    size         BIGINT,
    sha256       TEXT,
    content_type TEXT,
    status       TEXT        NOT NULL,
    version      TEXT,
    modified_at  TIMESTAMPTZ NOT NULL,
    updated_seq  BIGINT      NOT NULL,
    PRIMARY KEY (tenant, path)
);
CREATE INDEX entries_children ON entries (tenant, parent, name);
