#!/usr/bin/env bash
# Sets up and runs the whole File Engine locally, in the foreground (Ctrl-C stops it):
#   PostgreSQL  the server of FE_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/file_engine;
#               a local one is started or installed when none answers; the database is created)
#   NATS        nats-server 2.15.1 with JetStream (fsync always) on FE_NATS_PORT (default 4333;
#               4222 is the machine's own older server), monitor on port+4000, data in .data/nats
#   clamd       with the test signature database (EICAR) on FE_CLAMD_PORT (default 3310 or the
#               next free port), data in .data/clamd
#   storage     local, in .data/storage; dev ES256 keys in .data/keys; link secret in .data/link-secret
# then builds `file-engine` (release), applies the migrations, prints a dev admin token and runs
# `file-engine all`. nats-server and clamd keep running for the next run: deploy/dev/stop.sh stops
# them. Setting FE_NATS_URL or FE_CLAMD_ADDR uses that server instead of starting one.
#
#   deploy/dev/run.sh               everything
#   deploy/dev/run.sh --infra-only  set up and start the dependencies, print the environment, exit
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FE_ROOT"

infra_only=0
case ${1:-} in
--infra-only) infra_only=1 ;;
'') ;;
*) die "usage: deploy/dev/run.sh [--infra-only]" ;;
esac

fe_setup
mkdir -p "$FE_DATA/storage" "$FE_DATA/keys"

# PostgreSQL: reach the server through its maintenance database, then create ours if missing.
export FE_DATABASE_URL=${FE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/file_engine}
ensure_postgres "$(pg_url_with_db "$FE_DATABASE_URL" postgres)"
ensure_database "$FE_DATABASE_URL"

if [[ -z ${FE_NATS_URL:-} ]]; then
    start_nats "${FE_NATS_PORT:-4333}" "$FE_DATA/nats"
    export FE_NATS_URL=nats://127.0.0.1:$NATS_PORT
fi
if [[ -z ${FE_CLAMD_ADDR:-} ]]; then
    start_clamd "${FE_CLAMD_PORT:-3310}" "$FE_DATA/clamd"
    export FE_CLAMD_ADDR=127.0.0.1:$CLAMD_PORT
fi

# Development secrets, made once and kept in .data/ (git-ignored), readable by this user only.
private_key=$FE_DATA/keys/dev-private.pem
public_key=$FE_DATA/keys/dev-public.pem
if [[ ! -s $private_key ]]; then
    log "generating a dev ES256 key pair in $FE_DATA/keys"
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$private_key.tmp")
    mv "$private_key.tmp" "$private_key"
    rm -f "$public_key"
fi
[[ -s $public_key ]] || openssl pkey -in "$private_key" -pubout -out "$public_key"
for secret in link-secret webhook-secret-key; do
    if [[ ! -s $FE_DATA/$secret ]]; then
        (umask 077 && openssl rand -hex 32 >"$FE_DATA/$secret")
    fi
done
chmod 600 "$private_key" "$FE_DATA/link-secret" "$FE_DATA/webhook-secret-key"

export FE_HTTP_ADDR=${FE_HTTP_ADDR:-127.0.0.1:8080}
export FE_STORAGE=${FE_STORAGE:-local:$FE_DATA/storage}
export FE_JWT_PUBLIC_KEYS=${FE_JWT_PUBLIC_KEYS:-$public_key}
export FE_JWT_ISSUER=${FE_JWT_ISSUER:-file-engine-dev}
export FE_JWT_AUDIENCE=${FE_JWT_AUDIENCE:-file-engine}
FE_LINK_SECRET=${FE_LINK_SECRET:-$(<"$FE_DATA/link-secret")}
FE_WEBHOOK_SECRET_KEY=${FE_WEBHOOK_SECRET_KEY:-$(<"$FE_DATA/webhook-secret-key")}
export FE_LINK_SECRET FE_WEBHOOK_SECRET_KEY

if ((infra_only)); then
    log "dependencies are up; environment for file-engine (secrets not shown):"
    for var in FE_HTTP_ADDR FE_NATS_URL FE_DATABASE_URL FE_STORAGE FE_JWT_PUBLIC_KEYS \
        FE_JWT_ISSUER FE_JWT_AUDIENCE FE_CLAMD_ADDR; do
        printf 'export %s=%q\n' "$var" "${!var}"
    done
    # shellcheck disable=SC2016 # the $(cat …) is for the reader's shell
    printf 'export FE_LINK_SECRET="$(cat %q)"\n' "$FE_DATA/link-secret"
    # shellcheck disable=SC2016
    printf 'export FE_WEBHOOK_SECRET_KEY="$(cat %q)"\n' "$FE_DATA/webhook-secret-key"
    exit 0
fi

log "cargo build --release -p file-engine"
cargo build --release -p file-engine
binary=${CARGO_TARGET_DIR:-$FE_ROOT/target}/release/file-engine
"$binary" migrate

if token=$("$binary" dev-token --private-key "$private_key" --issuer "$FE_JWT_ISSUER" \
    --audience "$FE_JWT_AUDIENCE" --sub dev --tenant dev --roles admin); then
    cat <<EOF

File Engine on http://$FE_HTTP_ADDR  (NATS $FE_NATS_URL, clamd $FE_CLAMD_ADDR, storage $FE_DATA/storage)
A development admin token for tenant "dev" (signed with $private_key):

export FE_TOKEN='$token'
curl -s -H "Authorization: Bearer \$FE_TOKEN" -H 'Content-Type: application/json' \\
     -d '{"op":"mkdir","path":"/reports","parents":true}' http://$FE_HTTP_ADDR/v1/commands
curl -s -H "Authorization: Bearer \$FE_TOKEN" http://$FE_HTTP_ADDR/v1/list/

Ctrl-C stops the platform; deploy/dev/stop.sh stops nats-server and clamd.

EOF
else
    warn "could not mint a dev token (file-engine dev-token failed); starting anyway"
fi
exec "$binary" all
