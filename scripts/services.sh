# shellcheck shell=bash
#
# Shared set-up for scripts/run-local.sh and scripts/test.sh (and .ci/run through
# test.sh). Source it, then call `ensure_services`:
#
#     source scripts/services.sh
#     ensure_services
#
# `ensure_services` makes a PostgreSQL server and a NATS server with JetStream
# available and exports the settings the product and its tests read:
#
#   DATABASE_URL      kept when set; otherwise built from PGHOST/PGPORT
#                     (default 127.0.0.1:5432), user postgres, database loyalty
#   NATS_URL          kept when set; default nats://127.0.0.1:4222
#   CARGO_TARGET_DIR  kept when set; default /var/tmp/loyalty-ledger-target, so CI
#                     builds incrementally across fresh clones
#
# What it may do, in order, and only when needed:
#   1. fail when `cargo` is missing (install Rust with rustup; nothing is installed);
#   2. install the distribution's PostgreSQL packages (apt-get) when the client tools
#      are missing or no server answers on a local host:port, start the newest
#      cluster with pg_ctlcluster and wait for it (30 s at most);
#   3. when DATABASE_URL is unset and a password-less TCP connection as `postgres`
#      is refused (the stock Debian/Ubuntu pg_hba.conf asks for a password), give the
#      `postgres` role the password `postgres` -- only if it has no password yet --
#      and export DATABASE_URL with it. This is for a local development server only;
#   4. install the distribution's nats-server package when missing and start it with
#      JetStream on the requested local host:port; wait for it (30 s at most).
# A server that already answers and accepts our connection is reused untouched.
# A server on a host that is not local is never installed or started: we fail instead.
#
# Safe under `set -euo pipefail`; functions report errors with `return 1` (never
# `exit`), so sourcing this file into an interactive shell is harmless.

LL_WAIT_SECONDS_MAX=${LL_WAIT_SECONDS_MAX:-30}
LL_PG_PORT_DEFAULT=5432
LL_NATS_URL_DEFAULT=nats://127.0.0.1:4222
LL_DATABASE_NAME_DEFAULT=loyalty
LL_CARGO_TARGET_DIR_DEFAULT=/var/tmp/loyalty-ledger-target

_ll_apt_updated=0
_ll_nats_installed_now=0

_ll_say() { printf '==> %s\n' "$*" >&2; }
_ll_warn() { printf 'warning: %s\n' "$*" >&2; }
_ll_fail() {
    printf 'error: %s\n' "$*" >&2
    return 1
}

_ll_is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as root: directly when we are root, through sudo otherwise.
_ll_as_root() {
    if _ll_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _ll_fail "need root for: $* (run as root or install sudo)"
    fi
}

_ll_can_be_root() { _ll_is_root || command -v sudo >/dev/null 2>&1; }

# Runs a command as the `postgres` operating-system user (peer authentication).
_ll_as_postgres() {
    # From /, so psql does not complain that it cannot enter our home directory.
    if _ll_is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -u postgres -- "$@")
    fi
}

_ll_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        _ll_fail "apt-get not found: install $* with your system's package manager" || return
    if [ "$_ll_apt_updated" -eq 0 ]; then
        _ll_say "apt-get update"
        _ll_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return
        _ll_apt_updated=1
    fi
    _ll_say "apt-get install -y $*"
    _ll_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null
}

_ll_is_local_host() {
    case "$1" in
        127.0.0.1 | localhost | ::1 | '[::1]' | /*) return 0 ;;
        *) return 1 ;;
    esac
}

# True when a TCP connection to host:port succeeds within 2 seconds.
_ll_tcp_open() {
    local host=${1#[} port=$2
    host=${host%]}
    # shellcheck disable=SC2016 # $0/$1 expand in the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# Percent-encodes a string for use inside a URL.
_ll_urlencode() {
    local LC_ALL=C s=$1 out='' c i # byte by byte, so UTF-8 encodes correctly
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
            [a-zA-Z0-9._~-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# Rust -------------------------------------------------------------------------

_ll_ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
        # rustup installs here; non-login shells (CI) may not have it on PATH yet.
        PATH="${HOME:-}/.cargo/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 ||
        _ll_fail "cargo not found: install Rust with rustup: https://rustup.rs" || return
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$LL_CARGO_TARGET_DIR_DEFAULT}
}

# PostgreSQL -------------------------------------------------------------------

# Sets LL_PG_HOST and LL_PG_PORT from DATABASE_URL, else from PGHOST/PGPORT.
_ll_resolve_pg_address() {
    LL_PG_HOST=${PGHOST:-127.0.0.1}
    LL_PG_PORT=${PGPORT:-$LL_PG_PORT_DEFAULT}
    [ -n "${DATABASE_URL:-}" ] || return 0
    local re='^postgres(ql)?://([^@/?]*@)?(\[[^]/?]*\]|[^]:/?,]*)(:([0-9]+))?(,[^/?]*)?(/[^?]*)?(\?(.*))?$'
    [[ $DATABASE_URL =~ $re ]] ||
        _ll_fail "DATABASE_URL is not a postgres:// URL (key=value strings are not supported here)" || return
    local host=${BASH_REMATCH[3]} port=${BASH_REMATCH[5]} query=${BASH_REMATCH[9]}
    if [[ -z $host && $query =~ (^|&)host=([^&]*) ]]; then host=${BASH_REMATCH[2]//%2F//}; fi
    if [[ -z $port && $query =~ (^|&)port=([0-9]+) ]]; then port=${BASH_REMATCH[2]}; fi
    host=${host//%2F//}
    host=${host//%2f//}
    host=${host#[}
    host=${host%]}
    LL_PG_HOST=${host:-${PGHOST:-127.0.0.1}}
    LL_PG_PORT=${port:-$LL_PG_PORT_DEFAULT}
}

# DATABASE_URL with its database replaced by `postgres` (for administration).
ll_admin_database_url() {
    local re='^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$'
    [[ $DATABASE_URL =~ $re ]] || _ll_fail "cannot parse DATABASE_URL" || return
    printf '%s/postgres%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[4]}"
}

_ll_pg_ready() {
    pg_isready -q -h "$LL_PG_HOST" -p "$LL_PG_PORT" -t 2 >/dev/null 2>&1
}

_ll_pg_server_installed() {
    [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1 &&
        [ -n "$(ls -A /etc/postgresql 2>/dev/null)" ]
}

_ll_start_local_cluster() {
    local version cluster_port
    # shellcheck disable=SC2012 # the entries are plain version numbers
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    if [ ! -d "/etc/postgresql/$version/main" ]; then
        _ll_say "creating PostgreSQL cluster $version/main"
        _ll_as_root pg_createcluster "$version" main || return
    fi
    cluster_port=$(pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')
    if [ -n "$cluster_port" ] && [ "$cluster_port" != "$LL_PG_PORT" ]; then
        _ll_fail "PostgreSQL cluster $version/main is configured for port $cluster_port, but" \
            "DATABASE_URL/PGPORT asks for $LL_PG_PORT; point them at port $cluster_port or" \
            "start a server on $LL_PG_PORT yourself" || return
    fi
    if pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }' |
        grep -q online; then
        return 0 # already starting or running (e.g. systemd started it on install)
    fi
    _ll_say "starting PostgreSQL cluster $version/main"
    if [ -d /run/systemd/system ]; then
        _ll_as_root pg_ctlcluster "$version" main start || return
    else
        _ll_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || return
    fi
}

_ll_wait_for_pg() {
    local deadline=$((SECONDS + LL_WAIT_SECONDS_MAX))
    until _ll_pg_ready; do
        [ "$SECONDS" -lt "$deadline" ] ||
            _ll_fail "PostgreSQL on $LL_PG_HOST:$LL_PG_PORT is not ready after" \
                "${LL_WAIT_SECONDS_MAX}s; see /var/log/postgresql/ and pg_lsclusters" || return
        sleep 0.5
    done
}

_ll_ensure_pg_server() {
    local need_server=0
    if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        if _ll_is_local_host "$LL_PG_HOST" && ! _ll_tcp_open "$LL_PG_HOST" "$LL_PG_PORT"; then
            _ll_apt_install postgresql postgresql-client || return
            need_server=1
        else
            _ll_apt_install postgresql-client || return
        fi
    fi
    _ll_pg_ready && return 0

    _ll_is_local_host "$LL_PG_HOST" ||
        _ll_fail "PostgreSQL on $LL_PG_HOST:$LL_PG_PORT does not answer, and that host is" \
            "not this machine, so it will not be installed or started here" || return
    if [ "$need_server" -eq 0 ] && ! _ll_pg_server_installed; then
        _ll_can_be_root ||
            _ll_fail "no PostgreSQL server on $LL_PG_HOST:$LL_PG_PORT and no root/sudo to" \
                "install one: apt-get install postgresql, or set DATABASE_URL" || return
        _ll_apt_install postgresql postgresql-client || return
    fi
    _ll_start_local_cluster || return
    _ll_wait_for_pg || return
    _ll_say "PostgreSQL is ready on $LL_PG_HOST:$LL_PG_PORT"
}

_ll_psql_accepts() {
    PGCONNECT_TIMEOUT=5 psql -X -w -q -d "$1" -c 'select 1' >/dev/null 2>&1
}

# Exports DATABASE_URL. When it was not set and the password-less connection is
# refused, makes the stock local cluster accept `postgres:postgres` (see the header).
_ll_ensure_database_url() {
    [ -n "${DATABASE_URL:-}" ] && return 0
    local user=${PGUSER:-postgres} authority host_part query='' url admin_url password_is_set
    authority=$(_ll_urlencode "$user")
    if [ -n "${PGPASSWORD:-}" ]; then authority+=":$(_ll_urlencode "$PGPASSWORD")"; fi
    if [[ $LL_PG_HOST == /* ]]; then
        host_part=''
        query="?host=$(_ll_urlencode "$LL_PG_HOST")&port=$LL_PG_PORT"
    else
        host_part="$LL_PG_HOST:$LL_PG_PORT"
        [[ $LL_PG_HOST == *:* && $LL_PG_HOST != \[* ]] && host_part="[$LL_PG_HOST]:$LL_PG_PORT"
    fi
    url="postgres://$authority@$host_part/$LL_DATABASE_NAME_DEFAULT$query"
    admin_url="postgres://$authority@$host_part/postgres$query"
    if _ll_psql_accepts "$admin_url"; then
        export DATABASE_URL=$url
        return 0
    fi

    if [ "$user" != postgres ] || [ -n "${PGPASSWORD:-}" ] || [[ $LL_PG_HOST == /* ]] ||
        ! _ll_is_local_host "$LL_PG_HOST" || ! _ll_can_be_root; then
        _ll_fail "PostgreSQL on $LL_PG_HOST:$LL_PG_PORT refuses $user without a password;" \
            "set DATABASE_URL=postgres://USER:PASSWORD@$LL_PG_HOST:$LL_PG_PORT/loyalty" || return
    fi
    url="postgres://postgres:postgres@$host_part/$LL_DATABASE_NAME_DEFAULT"
    admin_url="postgres://postgres:postgres@$host_part/postgres"
    if ! _ll_psql_accepts "$admin_url"; then
        password_is_set=$(_ll_as_postgres psql -X -At -p "$LL_PG_PORT" -c \
            "select rolpassword is not null from pg_authid where rolname = 'postgres'") ||
            _ll_fail "cannot reach PostgreSQL as the postgres OS user (peer authentication)" ||
            return
        [ "$password_is_set" = f ] ||
            _ll_fail "the postgres role already has a password and it is not 'postgres';" \
                "set DATABASE_URL=postgres://postgres:PASSWORD@$host_part/loyalty" || return
        _ll_say "local development only: setting the password of PostgreSQL role postgres" \
            "to 'postgres' (it had none; the stock pg_hba.conf refuses TCP logins without one)"
        _ll_as_postgres psql -X -q -p "$LL_PG_PORT" -c "alter role postgres password 'postgres'" ||
            return
        _ll_psql_accepts "$admin_url" ||
            _ll_fail "PostgreSQL still refuses postgres:postgres over TCP; check pg_hba.conf," \
                "or set DATABASE_URL" || return
    fi
    _ll_say "using DATABASE_URL=$url"
    export DATABASE_URL=$url
}

# Installs pgbench on demand (benches only). On Debian/Ubuntu it ships with the
# server package postgresql-NN, which postgresql-contrib pulls in; installing that
# on a machine whose server runs elsewhere creates an extra local cluster, so
# ensure_services only warns and leaves this to the bench scripts.
ensure_pgbench() {
    command -v pgbench >/dev/null 2>&1 && pgbench --version >/dev/null 2>&1 && return 0
    _ll_apt_install postgresql-contrib
}

# NATS -------------------------------------------------------------------------

# Sets LL_NATS_HOST and LL_NATS_PORT from the first server in NATS_URL.
_ll_resolve_nats_address() {
    local first=${NATS_URL%%,*} re='^([a-z]+://)?([^@/]*@)?(\[[^]]*\]|[^:/]*)(:([0-9]+))?/?$'
    [[ $first =~ $re ]] || _ll_fail "cannot parse NATS_URL=$NATS_URL" || return
    LL_NATS_HOST=${BASH_REMATCH[3]:-127.0.0.1}
    LL_NATS_PORT=${BASH_REMATCH[5]:-4222}
    [ "$LL_NATS_HOST" = localhost ] && LL_NATS_HOST=127.0.0.1
    return 0
}

# Reads the server's INFO line: 0 = JetStream on, 1 = off, 2 = no INFO line.
_ll_nats_jetstream_state() {
    local host=${LL_NATS_HOST#[} info
    host=${host%]}
    # shellcheck disable=SC2016 # $0/$1/$line expand in the inner shell
    info=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && IFS= read -r line <&3 && printf "%s" "$line"' \
        "$host" "$LL_NATS_PORT" 2>/dev/null) || return 2
    [[ $info == INFO* ]] || return 2
    [[ $info == *'"jetstream":true'* ]] && return 0
    return 1
}

_ll_wait_for_nats() {
    local deadline=$((SECONDS + LL_WAIT_SECONDS_MAX))
    until _ll_tcp_open "$LL_NATS_HOST" "$LL_NATS_PORT"; do
        [ "$SECONDS" -lt "$deadline" ] ||
            _ll_fail "nats-server on $LL_NATS_HOST:$LL_NATS_PORT is not answering after" \
                "${LL_WAIT_SECONDS_MAX}s; see ${1:-its log}" || return
        sleep 0.2
    done
}

# The Debian/Ubuntu package starts a systemd service from /etc/nats-server.conf
# without JetStream. When we installed it in this run, turn JetStream on there.
_ll_enable_jetstream_in_packaged_service() {
    local conf=/etc/nats-server.conf store=/var/lib/nats-server
    [ "$_ll_nats_installed_now" -eq 1 ] && [ -d /run/systemd/system ] && [ -f "$conf" ] || return 1
    grep -q jetstream "$conf" && return 1
    _ll_say "enabling JetStream in $conf (store $store) and restarting nats-server.service"
    _ll_as_root mkdir -p "$store" || return
    if id nats >/dev/null 2>&1; then _ll_as_root chown nats:nats "$store" || return; fi
    printf '\n# Added by loyalty-ledger scripts/services.sh: the product needs JetStream.\njetstream {\n  store_dir: "%s"\n}\n' \
        "$store" | _ll_as_root tee -a "$conf" >/dev/null || return
    _ll_as_root systemctl restart nats-server || return
    _ll_wait_for_nats "journalctl -u nats-server"
}

_ll_nats_binary() {
    if command -v nats-server >/dev/null 2>&1; then
        command -v nats-server
    elif [ -x /usr/sbin/nats-server ]; then
        echo /usr/sbin/nats-server
    else
        return 1
    fi
}

_ll_start_nats() {
    local binary=$1 store log pidfile
    _ll_say "starting nats-server with JetStream on $LL_NATS_HOST:$LL_NATS_PORT"
    if _ll_is_root; then
        if [ "$LL_NATS_PORT" = 4222 ]; then
            store=/var/lib/nats-server log=/var/log/nats-server.log
        else
            store=/var/lib/nats-server-$LL_NATS_PORT log=/var/log/nats-server-$LL_NATS_PORT.log
        fi
        # One pid file per port, so a nats-server already running on another port
        # does not make --oknodo skip this one.
        pidfile=/run/loyalty-ledger-nats-$LL_NATS_PORT.pid
        binary=$(readlink -f "$binary") # --exec compares the resolved executable
        mkdir -p "$store" || return
        start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidfile" \
            --exec "$binary" -- -a "$LL_NATS_HOST" -p "$LL_NATS_PORT" -js -sd "$store" -l "$log" ||
            return
    else
        store=${XDG_DATA_HOME:-${HOME:?HOME is not set}/.local/share}/loyalty-ledger/nats/$LL_NATS_PORT
        log=$store/nats-server.log pidfile=$store/nats-server.pid
        mkdir -p "$store" || return
        setsid "$binary" -a "$LL_NATS_HOST" -p "$LL_NATS_PORT" -js -sd "$store" -l "$log" \
            -P "$pidfile" </dev/null >/dev/null 2>&1 &
    fi
    _ll_wait_for_nats "$log" || return
    _ll_say "nats-server is ready on $LL_NATS_HOST:$LL_NATS_PORT (pid file $pidfile, log $log)"
}

_ll_ensure_nats() {
    local binary js_state=0
    if ! _ll_tcp_open "$LL_NATS_HOST" "$LL_NATS_PORT"; then
        _ll_is_local_host "$LL_NATS_HOST" ||
            _ll_fail "NATS on $LL_NATS_HOST:$LL_NATS_PORT does not answer, and that host is not" \
                "this machine, so it will not be installed or started here" || return
        if ! binary=$(_ll_nats_binary); then
            _ll_apt_install nats-server || return
            _ll_nats_installed_now=1
            binary=$(_ll_nats_binary) || _ll_fail "nats-server is still missing after install" || return
        fi
        # On systemd hosts the freshly installed package starts its own service (without
        # JetStream; handled below): give it a few seconds rather than racing it.
        if [ "$_ll_nats_installed_now" -eq 1 ] && [ -d /run/systemd/system ]; then
            LL_WAIT_SECONDS_MAX=5 _ll_wait_for_nats 2>/dev/null || true
        fi
        if ! _ll_tcp_open "$LL_NATS_HOST" "$LL_NATS_PORT"; then
            _ll_start_nats "$binary" || return
        fi
    fi
    _ll_nats_jetstream_state || js_state=$?
    if [ "$js_state" -eq 1 ]; then
        _ll_enable_jetstream_in_packaged_service ||
            _ll_fail "NATS on $LL_NATS_HOST:$LL_NATS_PORT runs without JetStream; restart it" \
                "with -js (or a jetstream {} block), or point NATS_URL at another server" || return
        _ll_nats_jetstream_state || js_state=$?
        [ "$js_state" -ne 1 ] || _ll_fail "NATS still runs without JetStream" || return
    elif [ "$js_state" -eq 2 ]; then
        _ll_warn "could not read the INFO line of NATS on $LL_NATS_HOST:$LL_NATS_PORT;" \
            "assuming JetStream is enabled"
    fi
}

# Entry point ------------------------------------------------------------------

ensure_services() {
    _ll_ensure_cargo || return
    _ll_resolve_pg_address || return
    _ll_ensure_pg_server || return
    _ll_ensure_database_url || return
    if ! command -v pgbench >/dev/null 2>&1 || ! pgbench --version >/dev/null 2>&1; then
        _ll_warn "pgbench is missing (needed by the benches only); on Debian/Ubuntu it" \
            "comes with postgresql-contrib"
    fi
    export NATS_URL=${NATS_URL:-$LL_NATS_URL_DEFAULT}
    _ll_resolve_nats_address || return
    _ll_ensure_nats || return
    _ll_say "PostgreSQL ${LL_PG_HOST}:${LL_PG_PORT}, NATS ${LL_NATS_HOST}:${LL_NATS_PORT}" \
        "(JetStream), CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
}

# The secret keys of a local run: the master key that wraps customers' data keys, the
# phone numbers' blind-index key, the JWT signing key, and the WhatsApp app secret and
# verify token the local webhook ingest checks (the sandbox signs with the same secret;
# production uses Meta's). Generated once into .local/keys.env (git-ignored, mode 600) and
# reused, since data sealed under a key cannot be read without it; a key missing from an
# older file is appended. Variables already set (e.g. from .env) win. Production sets its own.
ensure_local_keys() {
    local file=${1:-.local/keys.env} stamp
    if [ ! -f "$file" ]; then
        mkdir -p "$(dirname "$file")"
        stamp=$(date -u +%Y%m%d)
        _ll_say "generating local secret keys into $file (keep it: personal data needs them)"
        (
            umask 077
            {
                printf 'LOYALTY_MASTER_KEYS=m%s:%s\n' "$stamp" "$(_ll_random_key)"
                printf 'LOYALTY_BLIND_INDEX_KEY=%s\n' "$(_ll_random_key)"
                printf 'LOYALTY_JWT_KEYS=j%s:%s\n' "$stamp" "$(_ll_random_key)"
            } >"$file.new"
            mv "$file.new" "$file"
        )
    fi
    if ! grep -q '^LOYALTY_WHATSAPP_APP_SECRET=' "$file"; then
        _ll_say "adding a local WhatsApp app secret to $file"
        printf 'LOYALTY_WHATSAPP_APP_SECRET=%s\n' "$(_ll_random_hex)" >>"$file"
    fi
    if ! grep -q '^LOYALTY_WHATSAPP_VERIFY_TOKEN=' "$file"; then
        printf 'LOYALTY_WHATSAPP_VERIFY_TOKEN=%s\n' "$(_ll_random_hex)" >>"$file"
    fi
    # The notifier's Cloud API token; the local sandbox accepts any non-empty one.
    if ! grep -q '^LOYALTY_WHATSAPP_ACCESS_TOKEN=' "$file"; then
        printf 'LOYALTY_WHATSAPP_ACCESS_TOKEN=sandbox-%s\n' "$(_ll_random_hex)" >>"$file"
    fi
    load_dotenv "$file"
}

# 32 random bytes in hex (Meta's app secrets are hex; a verify token is any string).
_ll_random_hex() {
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# 32 random bytes in base64.
_ll_random_key() {
    head -c 32 /dev/urandom | base64 | tr -d '\n'
}

# Reads KEY=VALUE lines from a dotenv file (default .env) into the environment.
# Variables already set in the environment win, as with every dotenv loader.
load_dotenv() {
    local file=${1:-.env} line key value
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
        [ -z "${!key+set}" ] || continue
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
        export "$key=$value"
    done <"$file"
}
