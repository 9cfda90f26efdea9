-- Storage by content and version (issue 17). Bytes are immutable blobs named by their
-- SHA-256 (file_versions.sha256); the catalogue maps each path to its current version
-- (entries.version) and each version to its blob. A version that no entry shows any more is
-- "released" (replaced by an overwrite, or deleted): released_at starts its retention and
-- released_path records where it was last shown. A delete of that path (or an ancestor)
-- marks the released versions there `deleted`: a signed link to a deleted file answers 404,
-- while one to a replaced version keeps serving exactly its bytes. All derived from the log.
ALTER TABLE file_versions ADD COLUMN released_at TIMESTAMPTZ;
ALTER TABLE file_versions ADD COLUMN released_path TEXT COLLATE "C";
ALTER TABLE file_versions ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX file_versions_released ON file_versions (tenant, released_path)
    WHERE released_at IS NOT NULL AND NOT deleted;
-- "is this version still shown anywhere" after a delete / overwrite, and usage per tenant.
CREATE INDEX entries_version ON entries (tenant, version) WHERE kind = 'file';
-- Which versions need a blob (garbage collection marks from here).
CREATE INDEX file_versions_blob ON file_versions (tenant, sha256);
