#!/usr/bin/env bash
# Stops the nats-server and clamd that deploy/dev/run.sh started in the background (found by
# their pid files under .data/). PostgreSQL is the machine's service and keeps running.
#   deploy/dev/stop.sh           stop the daemons, keep all data
#   deploy/dev/stop.sh --purge   also delete .data/ (JetStream log, storage, keys, link secret)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_daemon "$FE_DATA/nats/nats-server.pid" nats-server
stop_daemon "$FE_DATA/clamd/clamd.pid" clamd
if [[ ${1:-} == --purge ]]; then
    log "deleting $FE_DATA (the dev database in PostgreSQL is kept: drop it with dropdb)"
    rm -rf "$FE_DATA"
fi
