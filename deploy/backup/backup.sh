#!/usr/bin/env bash
# Backs up File Engine into DIR: the PostgreSQL read models (pg_dump, custom format), then the
# event stream (`file-engine backup`: nats-server's stream snapshot, byte-exact, with consumer
# positions). Database first: a restore may then find the log ahead of the read models (the
# projector catches up from its checkpoint), never behind them.
#
# Usage: FE_DATABASE_URL=... FE_NATS_URL=... deploy/backup/backup.sh DIR
# FE_BIN selects the binary (default: file-engine on PATH, else the workspace's debug build).
# The NATS user needs the operations account's JetStream API rights (nats/accounts.conf).
# Prints the stream manifest (JSON) on stdout.
set -euo pipefail
dir=${1:?usage: backup.sh DIR}
: "${FE_DATABASE_URL:?FE_DATABASE_URL is required}" "${FE_NATS_URL:?FE_NATS_URL is required}"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${FE_BIN:-$(command -v file-engine || echo "${CARGO_TARGET_DIR:-$root/target}/debug/file-engine")}
mkdir -p "$dir"
[[ -z $(ls -A "$dir") ]] || { echo "backup.sh: $dir is not empty" >&2; exit 1; }
pg_dump --format=custom --no-owner --file "$dir/postgres.dump.partial" "$FE_DATABASE_URL"
mv "$dir/postgres.dump.partial" "$dir/postgres.dump"
"$bin" backup --dir "$dir/stream"
