-- Notifications: the subscriptions read model (projected from the per-tenant `subscription`
-- aggregate, rebuilt by `file-engine replay`) and the notifier's own state (the durable
-- delivery queue, its attempt log and per-subscription health), which is NOT derived from
-- the log and survives a replay. No signing secret is stored anywhere: the notifier derives
-- it from FE_WEBHOOK_SECRET_KEY and the subscription id.

CREATE TABLE subscriptions (
    tenant        TEXT COLLATE "C" NOT NULL,
    id            UUID        NOT NULL,
    url           TEXT        NOT NULL,
    -- short public event types; empty = all
    types         TEXT[]      NOT NULL,
    path_prefix   TEXT COLLATE "C" NOT NULL,
    status        TEXT        NOT NULL CHECK (status IN ('active', 'disabled', 'deleted')),
    -- why it was disabled (set by `subscription.disabled`)
    status_reason TEXT,
    created_by    TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    -- stream sequence of `subscription.created`: the subscription receives later commits
    created_seq   BIGINT      NOT NULL,
    ended_at      TIMESTAMPTZ,
    -- stream sequence of the deletion or disabling: it receives no commit from there on
    ended_seq     BIGINT,
    PRIMARY KEY (tenant, id)
);

-- One row per (subscription, event): inserting with ON CONFLICT DO NOTHING makes a
-- redelivered commit never queue a second delivery of the same event.
CREATE TABLE deliveries (
    id              BIGSERIAL   PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL,
    subscription_id UUID        NOT NULL,
    -- CloudEvents `id` (the same on every attempt), short type and log position
    event_id        TEXT        NOT NULL,
    event_type      TEXT        NOT NULL,
    seq             BIGINT      NOT NULL,
    -- the exact bytes sent on every attempt (the CloudEvent JSON)
    body            TEXT        NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- when the next attempt is due; while an attempt is in flight, the end of its lease
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at TIMESTAMPTZ,
    last_status     INTEGER,
    last_error      TEXT,
    finished_at     TIMESTAMPTZ,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX deliveries_due ON deliveries (subscription_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_due_at ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_log ON deliveries (tenant, subscription_id, id);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state <> 'pending';

CREATE TABLE delivery_attempts (
    delivery_id BIGINT      NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER     NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    duration_ms INTEGER     NOT NULL,
    -- HTTP status of the response, null when none came (timeout, refused, forbidden target)
    status      INTEGER,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Since when a subscription's deliveries have been failing without a success in between.
CREATE TABLE subscription_health (
    subscription_id UUID        PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL,
    failing_since   TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ,
    last_failure_at TIMESTAMPTZ
);
