-- Queued work the worker set aside because it could not run yet: an earlier overlapping task
-- was still open (`blocked_by`), its tenant was at its concurrency cap, or the projection had
-- not reached it. The delivery is acknowledged once its row is written, so waiting work never
-- stays "ack pending" in JetStream, where one tenant's backlog could fill the consumer's
-- `max_ack_pending` and stop delivery to every tenant. Workers take rows back when they are
-- due: a blocked row when its blocker is announced terminal (or a sweep finds it closed),
-- the others round robin over tenants, under a lease (`not_before` moved ahead, `lease_owner`
-- set) that a crashed worker's rows outlive by at most its length.
--
-- Operational state, not a read model (like `worker_failures`): `file-engine replay` leaves it
-- alone, and a row is deleted when its work settles.
CREATE TABLE worker_deferred (
    log_seq     BIGINT           PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL,
    task_id     UUID             NOT NULL,
    blocked_by  UUID,
    not_before  TIMESTAMPTZ      NOT NULL DEFAULT now(),
    lease_owner UUID,
    picks       INTEGER          NOT NULL DEFAULT 0 CHECK (picks >= 0),
    deferred_at TIMESTAMPTZ      NOT NULL DEFAULT now()
);
-- Rows waiting for one task to end (woken by its announcement).
CREATE INDEX worker_deferred_blocked ON worker_deferred (tenant, blocked_by)
    WHERE blocked_by IS NOT NULL;
-- Rows that may run once due, oldest first per tenant.
CREATE INDEX worker_deferred_ready ON worker_deferred (tenant, log_seq)
    WHERE blocked_by IS NULL;
CREATE INDEX worker_deferred_lease ON worker_deferred (lease_owner)
    WHERE lease_owner IS NOT NULL;
