-- Versions of uploaded files: every version that became available, so that a signed link
-- made for a version keeps serving exactly those bytes after the path is overwritten.
CREATE TABLE file_versions (
    tenant       TEXT COLLATE "C" NOT NULL,
    version      TEXT        NOT NULL,
    path         TEXT COLLATE "C" NOT NULL,
    size         BIGINT      NOT NULL,
    sha256       TEXT        NOT NULL,
    content_type TEXT        NOT NULL,
    available_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, version)
);
