-- The read models hold exactly what the domain allows (events/src/path.rs): paths of at most
-- 1024 bytes, segments of at most 255, tenants of at most 63 characters. A write beyond them
-- fails loudly here (in tests, and as a parked tenant in production, see 0007) instead of
-- hitting an index size limit. 1024-byte paths keep every btree row far below PostgreSQL's
-- 2704-byte maximum (tenant + path + parent + name stay under 2.4 KB).
--
-- NOT VALID: the constraints apply to every row written from now on; rows written before are
-- not rechecked, so this migration cannot fail on an existing deployment (`file-engine replay`
-- rebuilds the read models under the constraints).

ALTER TABLE entries
    ADD CONSTRAINT entries_tenant_len CHECK (octet_length(tenant) BETWEEN 1 AND 63) NOT VALID,
    ADD CONSTRAINT entries_path_len CHECK (octet_length(path) <= 1024) NOT VALID,
    ADD CONSTRAINT entries_parent_len CHECK (parent IS NULL OR octet_length(parent) <= 1024) NOT VALID,
    ADD CONSTRAINT entries_name_len CHECK (octet_length(name) <= 255) NOT VALID,
    ADD CONSTRAINT entries_size_nonnegative CHECK (size IS NULL OR size >= 0) NOT VALID;

ALTER TABLE file_versions
    ADD CONSTRAINT file_versions_path_len CHECK (octet_length(path) <= 1024) NOT VALID,
    ADD CONSTRAINT file_versions_size_nonnegative CHECK (size >= 0) NOT VALID;

ALTER TABLE acl_rules
    ADD CONSTRAINT acl_rules_path_len CHECK (octet_length(path) <= 1024) NOT VALID;

ALTER TABLE subscriptions
    ADD CONSTRAINT subscriptions_path_prefix_len CHECK (octet_length(path_prefix) <= 1024) NOT VALID;

ALTER TABLE audit_events
    ADD CONSTRAINT audit_events_path_len CHECK (octet_length(path) <= 1024) NOT VALID,
    ADD CONSTRAINT audit_events_target_len CHECK (target IS NULL OR octet_length(target) <= 1024) NOT VALID;
