-- Transient failures of queued work, counted per log message (the `task.requested`,
-- `task.retried` or clean `file.scanned` commit being worked on). The worker dead-letters a
-- task after a number of *failed attempts*, not of JetStream deliveries: a delivery released
-- because the task's turn had not come (an earlier overlapping task still open) or because
-- its tenant was at its concurrency cap is not a failure. Operational state, not a read
-- model: `file-engine replay` leaves it alone, and rows are deleted when the work settles.
CREATE TABLE worker_failures (
    log_seq        BIGINT      PRIMARY KEY,
    tenant         TEXT        NOT NULL,
    failures       INTEGER     NOT NULL CHECK (failures > 0),
    last_failed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
