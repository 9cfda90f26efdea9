-- ACL read model: the rules in force per tenant, projected from `acl.rule_granted` /
-- `acl.rule_revoked`, and a per-tenant version (the stream sequence of the tenant's latest
-- ACL event) that lets the API keep a rule cache and reload it only when something changed.
-- Both tables are rebuilt by `file-engine replay`.

CREATE TABLE acl_rules (
    tenant      TEXT COLLATE "C" NOT NULL,
    rule_id     UUID        NOT NULL,
    -- `user:<sub>`, `role:<role>` or `*`
    subject     TEXT        NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    permissions TEXT[]      NOT NULL,
    effect      TEXT        NOT NULL CHECK (effect IN ('allow', 'deny')),
    granted_by  TEXT        NOT NULL,
    -- JetStream time of the granting commit (from the log, so replays are identical)
    granted_at  TIMESTAMPTZ NOT NULL,
    -- stream sequence of the granting commit
    seq         BIGINT      NOT NULL,
    PRIMARY KEY (tenant, rule_id)
);
-- `GET /v1/acl/rules?path=` is a range scan: the subtree of '/a' is ('/a/', '/a0').
CREATE INDEX acl_rules_path ON acl_rules (tenant, path);

CREATE TABLE acl_versions (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    seq    BIGINT NOT NULL
);
