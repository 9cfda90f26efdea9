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

-- Each trigger adds the net change of one statement's rows per tenant (transition tables
-- `added` / `removed`); statements that change no usage (moves, directories, files that are
-- not available) write nothing. Transition tables are visible only to the trigger function's
-- own statements, hence one function per event.
CREATE FUNCTION tenant_usage_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_usage AS u (tenant, bytes, files)
    SELECT tenant, sum(bytes), sum(files) FROM (
        SELECT tenant, COALESCE(size, 0) AS bytes, 1 AS files FROM added
         WHERE kind = 'file' AND status = 'available'
    ) d
     GROUP BY tenant HAVING sum(bytes) <> 0 OR sum(files) <> 0
    ON CONFLICT (tenant) DO UPDATE
       SET bytes = u.bytes + EXCLUDED.bytes, files = u.files + EXCLUDED.files;
    RETURN NULL;
END $$;

CREATE FUNCTION tenant_usage_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_usage AS u (tenant, bytes, files)
    SELECT tenant, sum(bytes), sum(files) FROM (
        SELECT tenant, -COALESCE(size, 0) AS bytes, -1 AS files FROM removed
         WHERE kind = 'file' AND status = 'available'
    ) d
     GROUP BY tenant HAVING sum(bytes) <> 0 OR sum(files) <> 0
    ON CONFLICT (tenant) DO UPDATE
       SET bytes = u.bytes + EXCLUDED.bytes, files = u.files + EXCLUDED.files;
    RETURN NULL;
END $$;

CREATE FUNCTION tenant_usage_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_usage AS u (tenant, bytes, files)
    SELECT tenant, sum(bytes), sum(files) FROM (
        SELECT tenant, COALESCE(size, 0) AS bytes, 1 AS files FROM added
         WHERE kind = 'file' AND status = 'available'
        UNION ALL
        SELECT tenant, -COALESCE(size, 0) AS bytes, -1 AS files FROM removed
         WHERE kind = 'file' AND status = 'available'
    ) d
     GROUP BY tenant HAVING sum(bytes) <> 0 OR sum(files) <> 0
    ON CONFLICT (tenant) DO UPDATE
       SET bytes = u.bytes + EXCLUDED.bytes, files = u.files + EXCLUDED.files;
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
