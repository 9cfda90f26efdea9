-- Partitioned, poison-proof projection (services/projector/README.md).
--
-- One row per partition of the log (by tenant, events/src/partition.rs): the last log
-- sequence that partition's projector has passed, written in the same transaction as the
-- effects. The number of rows is the partition count the read models were built with;
-- a projector configured with another FE_PARTITIONS refuses to start (see the README).
CREATE TABLE projection_partitions (
    partition  INTEGER     PRIMARY KEY CHECK (partition >= 0),
    last_seq   BIGINT      NOT NULL CHECK (last_seq >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tenants whose projection is parked: `seq` is the first commit of the tenant that is not
-- applied (the one that failed); every later commit of the tenant waits, in log order, until
-- `file-engine projection resume --tenant T` sets `resume_requested_at` and the partition's
-- projector catches the tenant up. Other tenants are not affected.
CREATE TABLE projection_parked (
    tenant              TEXT COLLATE "C" PRIMARY KEY CHECK (octet_length(tenant) BETWEEN 1 AND 63),
    seq                 BIGINT      NOT NULL CHECK (seq >= 1),
    reason              TEXT        NOT NULL CHECK (octet_length(reason) <= 2048),
    parked_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts            INTEGER     NOT NULL DEFAULT 1,
    resume_requested_at TIMESTAMPTZ
);

-- The paths each task touches (one row per path), so the worker's "is an earlier open task on
-- an overlapping path?" is an index lookup (ancestors by equality, descendants by range) and
-- never a scan of the tenant's backlog. Maintained by the projector with the task row; `open`
-- follows the task's status (pending/running), `queued_seq` its position in the order.
CREATE TABLE task_paths (
    tenant     TEXT COLLATE "C" NOT NULL,
    task_id    UUID        NOT NULL,
    path       TEXT COLLATE "C" NOT NULL CHECK (octet_length(path) <= 1024),
    queued_seq BIGINT      NOT NULL,
    open       BOOLEAN     NOT NULL,
    PRIMARY KEY (tenant, task_id, path)
);
CREATE INDEX task_paths_open ON task_paths (tenant, path, queued_seq) WHERE open;
