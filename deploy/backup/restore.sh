#!/usr/bin/env bash
# Restores a backup made by backup.sh into FRESH servers: the event stream first (it must not
# exist yet: start no File Engine role before this, as a role creates an empty stream), then
# the read models into an empty database. Then run `file-engine audit-verify` and start the
# roles; the projector continues from the restored checkpoint.
#
# Usage: FE_DATABASE_URL=... FE_NATS_URL=... deploy/backup/restore.sh DIR
# FE_BIN selects the binary as for backup.sh. Prints the restore summary (JSON) on stdout.
set -euo pipefail
dir=${1:?usage: restore.sh DIR}
: "${FE_DATABASE_URL:?FE_DATABASE_URL is required}" "${FE_NATS_URL:?FE_NATS_URL is required}"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${FE_BIN:-$(command -v file-engine || echo "${CARGO_TARGET_DIR:-$root/target}/debug/file-engine")}
[[ -s $dir/postgres.dump && -s $dir/stream/stream.json ]] || { echo "restore.sh: $dir is not a backup" >&2; exit 1; }
"$bin" restore --dir "$dir/stream"
pg_restore --no-owner --exit-on-error --dbname "$FE_DATABASE_URL" "$dir/postgres.dump"
