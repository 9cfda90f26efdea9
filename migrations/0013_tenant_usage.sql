-- What each tenant's available files hold (logical bytes and files: a copy counts what it
-- holds), for quota decisions. Kept exactly by statement triggers on `entries` in the same
-- transaction as every change of the catalogue, so it is derived from the log like the
-- catalogue itself, and a decision reads one row instead of aggregating the tenant's files
-- (which grew with the tenant: two aggregates per upload).
CREATE TABLE tenant_usage (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    bytes  BIGINT NOT NULL,
    files  BIGINT NOT NULL
);

INSERT INTO tenant_usage (tenant, bytes, files)
SELECT tenant, COALESCE(sum(size), 0), count(*)
  FROM entries WHERE kind = 'file' AND status = 'available'
 GROUP BY tenant;

-- Adds the net change of one statement per tenant (rows of `delta`: tenant, bytes, files);
-- a statement that changes no usage (a move, directories, files that are not available)
-- writes nothing.
CREATE FUNCTION tenant_usage_add(tenants TEXT[], bytes BIGINT[], files BIGINT[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- PL/pgSQL keeps the statement's plan for the session (an SQL function would plan it at
    -- every call).
    INSERT INTO tenant_usage AS u (tenant, bytes, files)
    SELECT t, sum(b), sum(f) FROM unnest(tenants, bytes, files) AS d(t, b, f)
     GROUP BY t HAVING sum(b) <> 0 OR sum(f) <> 0
    ON CONFLICT (tenant) DO UPDATE
       SET bytes = u.bytes + EXCLUDED.bytes, files = u.files + EXCLUDED.files;
END $$;

-- The transition tables (`added`, `removed`) are visible only to the trigger function's own
-- statements, hence one small function per event handing the rows on.
CREATE FUNCTION tenant_usage_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tenant_usage_add(array_agg(tenant), array_agg(COALESCE(size, 0)), array_agg(1::BIGINT))
       FROM added WHERE kind = 'file' AND status = 'available';
    RETURN NULL;
END $$;

CREATE FUNCTION tenant_usage_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tenant_usage_add(array_agg(tenant), array_agg(-COALESCE(size, 0)), array_agg(-1::BIGINT))
       FROM removed WHERE kind = 'file' AND status = 'available';
    RETURN NULL;
END $$;

CREATE FUNCTION tenant_usage_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tenant_usage_add(array_agg(tenant), array_agg(bytes), array_agg(files))
       FROM (SELECT tenant, COALESCE(size, 0) AS bytes, 1::BIGINT AS files FROM added
              WHERE kind = 'file' AND status = 'available'
             UNION ALL
             SELECT tenant, -COALESCE(size, 0), -1 FROM removed
              WHERE kind = 'file' AND status = 'available') d;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_usage_insert AFTER INSERT ON entries
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_usage_after_insert();
CREATE TRIGGER entries_usage_delete AFTER DELETE ON entries
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_usage_after_delete();
CREATE TRIGGER entries_usage_update AFTER UPDATE ON entries
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_usage_after_update();
