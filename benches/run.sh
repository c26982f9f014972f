#!/usr/bin/env bash
# benches/run.sh — the purchase and WhatsApp benchmarks of loyalty-ledger, next to their
# baseline (pgbench), in one run.
#
# What it does, in order (every step bounded in time, loopback only):
#   1. makes sure PostgreSQL and NATS are up (scripts/services.sh `ensure_services` when it
#      exists, otherwise PostgreSQL on 127.0.0.1:5432 as postgres with trust auth and NATS on
#      127.0.0.1:4222 must already answer);
#   2. builds `loyalty` and `loadgen` in release mode;
#   3. baseline: pgbench's single-row INSERT commit rate on the same PostgreSQL server
#      (database loyalty_pgbench, ~100-byte bytea rows, -M prepared, -c CLIENTS -j 2 -T SECONDS);
#   4. product: a fresh database loyalty_bench, a unique NATS stream and subject prefix,
#      `loyalty migrate`, `loyalty tenant create`, `loyalty all` in the background, then
#      `loadgen` with the same clients and duration; the server is stopped with SIGTERM;
#   5. prints a summary (pgbench tps, purchases/s, latency, purchases/s ÷ pgbench tps, machine
#      facts) and appends it as a Markdown block to benches/results/<UTC timestamp>.md.
#
# WhatsApp modes (step 4 differs; pgbench runs the same way before it):
#   BENCH_MODE=ingest        `loyalty ingest` alone (the ingest is the unit measured: nothing
#                            else competes for the two cores), `webhook-loadgen --mode ingest`:
#                            BENCH_CLIENTS closed loops post signed text-message webhooks as
#                            fast as they are answered; messages/s ÷ pgbench tps, p99.
#   BENCH_MODE=whatsapp-e2e  `loyalty sandbox serve` (its own process, so it does not share
#                            `loyalty all`'s cores' accounting; `loyalty all`'s in-process
#                            sandbox is turned off) with status webhooks to the ingest, and `loyalty all`
#                            sending to the sandbox; `webhook-loadgen --mode e2e`: BENCH_SENDERS
#                            customers JOIN the tenant's code, then "points" at BENCH_RATE
#                            messages/s open loop; latency from the scheduled POST to the
#                            sandbox recording the reply, p50/p99, misses.
#
# Environment (defaults shown):
#   BENCH_SECONDS=30          pgbench -T and the loadgen measured window
#   BENCH_MODE=all            `loyalty all` (every component), `api` (API + writer only),
#                             `ingest` or `whatsapp-e2e` (above)
#   BENCH_SENDERS=1000        WhatsApp modes: distinct customers writing in
#   BENCH_RATE=500            whatsapp-e2e: messages/s of the open-loop schedule
#   BENCH_WA_SENDS_PER_SECOND=1000  whatsapp-e2e: the notifier's per-number limit (default 80,
#                             Meta's; raised so the limit is not what is measured)
#   BENCH_INGEST_ADDR=127.0.0.1:18081  BENCH_SANDBOX_ADDR=127.0.0.1:18090
#   BENCH_PERF_SECONDS=0      > 0: `perf record -a -g` for that long during the measured window
#   BENCH_CLIENTS=64          pgbench -c and loadgen --clients
#   BENCH_WARMUP_SECONDS=2    loadgen warm-up (not measured; pgbench has none)
#   BENCH_CUSTOMERS=1000      customers enrolled before the load
#   BENCH_LOADGEN_THREADS=1   tokio threads of loadgen (it shares the 2 cores with the server)
#   BENCH_HTTP_ADDR=127.0.0.1:18080
#   BENCH_SKIP_PRODUCT=0      1 = baseline (pgbench) only, no `loyalty` build or run
#   BENCH_LOYALTY_BIN=        path of a prebuilt `loyalty` to bench instead of building one
#   BENCH_BUILD_TIMEOUT_SECONDS=3600
#   BENCH_KEEP_LOGS=0         1 = keep the work folder (pgbench, loadgen and server logs) after success
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres (PGPASSWORD if needed)   NATS_URL=nats://127.0.0.1:4222
#   CARGO_TARGET_DIR=/var/tmp/loyalty-ledger-target
#
# Exit status: 0 = all measured; 3 = measured, but loadgen saw non-2xx or transport errors
# (reported in the summary); anything else = a step failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- services -------------------------------------------------------------------------------
if [[ -f scripts/services.sh ]]; then
    log "sourcing scripts/services.sh and calling ensure_services"
    # shellcheck source=/dev/null
    source scripts/services.sh
    declare -F ensure_services >/dev/null || die "scripts/services.sh defines no ensure_services"
    ensure_services
fi

export PGHOST=${PGHOST:-127.0.0.1}
export PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-postgres}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/loyalty-ledger-target}

BENCH_SECONDS=${BENCH_SECONDS:-30}
# all = every component in one process (the headline); api = the API and its writer alone,
# with no relay or projector competing for the two cores (a diagnostic).
BENCH_MODE=${BENCH_MODE:-all}
case $BENCH_MODE in
    all | api | ingest | whatsapp-e2e) ;;
    *) die "BENCH_MODE must be all, api, ingest or whatsapp-e2e" ;;
esac
WHATSAPP=0
[[ $BENCH_MODE == ingest || $BENCH_MODE == whatsapp-e2e ]] && WHATSAPP=1
BENCH_SENDERS=${BENCH_SENDERS:-1000}
BENCH_RATE=${BENCH_RATE:-500}
BENCH_WA_SENDS_PER_SECOND=${BENCH_WA_SENDS_PER_SECOND:-1000}
BENCH_INGEST_ADDR=${BENCH_INGEST_ADDR:-127.0.0.1:18081}
BENCH_SANDBOX_ADDR=${BENCH_SANDBOX_ADDR:-127.0.0.1:18090}
BENCH_PERF_SECONDS=${BENCH_PERF_SECONDS:-0}
BENCH_CLIENTS=${BENCH_CLIENTS:-64}
BENCH_WARMUP_SECONDS=${BENCH_WARMUP_SECONDS:-2}
BENCH_CUSTOMERS=${BENCH_CUSTOMERS:-1000}
BENCH_LOADGEN_THREADS=${BENCH_LOADGEN_THREADS:-1}
BENCH_HTTP_ADDR=${BENCH_HTTP_ADDR:-127.0.0.1:18080}
BENCH_SKIP_PRODUCT=${BENCH_SKIP_PRODUCT:-0}
BENCH_BUILD_TIMEOUT_SECONDS=${BENCH_BUILD_TIMEOUT_SECONDS:-3600}

for var in BENCH_SECONDS BENCH_CLIENTS BENCH_WARMUP_SECONDS BENCH_CUSTOMERS BENCH_LOADGEN_THREADS BENCH_BUILD_TIMEOUT_SECONDS \
    BENCH_SENDERS BENCH_RATE BENCH_WA_SENDS_PER_SECOND BENCH_PERF_SECONDS; do
    [[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number, got '${!var}'"
done
((BENCH_SECONDS >= 1 && BENCH_CLIENTS >= 1)) || die "BENCH_SECONDS and BENCH_CLIENTS must be >= 1"
for addr in "$BENCH_HTTP_ADDR" "$BENCH_INGEST_ADDR" "$BENCH_SANDBOX_ADDR"; do
    case $addr in
        127.*:* | localhost:* | "[::1]:"*) ;;
        *) die "BENCH_HTTP_ADDR, BENCH_INGEST_ADDR and BENCH_SANDBOX_ADDR must be loopback, got $addr" ;;
    esac
done

for tool in psql pg_isready pgbench curl python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# Without services.sh nobody starts anything: just check, with a bound, that both answer.
pg_up=0
for _ in $(seq 1 30); do
    if pg_isready -q -t 2; then pg_up=1; break; fi
    sleep 1
done
((pg_up)) || die "PostgreSQL does not answer at $PGHOST:$PGPORT"
if [[ $BENCH_SKIP_PRODUCT != 1 ]]; then
    nats_hostport=${NATS_URL#*://}
    nats_hostport=${nats_hostport%%/*}
    nats_hostport=${nats_hostport##*@}
    timeout 5 bash -c "exec 3<>/dev/tcp/${nats_hostport%:*}/${nats_hostport##*:}" 2>/dev/null \
        || die "NATS does not answer at $nats_hostport"
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TS=$(date -u +%Y%m%d%H%M%S)
WORK=$(mktemp -d "/tmp/loyalty-bench.$TS.XXXXXX")
RESULTS_DIR=$ROOT/benches/results
mkdir -p "$RESULTS_DIR"
log "logs in $WORK"

# ---- cleanup on any exit ------------------------------------------------------------------------
SERVER_PID=""
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID
    SERVER_PID=""
    if ! kill -0 "$pid" 2>/dev/null; then
        SERVER_STOP="had already exited"
    else
        log "stopping loyalty all (pid $pid) with SIGTERM"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "loyalty all did not stop within 30 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            SERVER_STOP="killed after 30 s"
        else
            SERVER_STOP="stopped by SIGTERM"
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# The environment every product mode shares: load-generator-sized rate limits (the defaults
# are for production clients, not for one address driving thousands of requests a second),
# quiet logs, and fresh secret keys (a fresh database per run, so fresh keys, never written
# to disk).
product_environment() {
    export LOYALTY_RATE_LIMIT_IP_PER_SECOND=1000000 LOYALTY_RATE_LIMIT_IP_BURST=1000000
    export LOYALTY_RATE_LIMIT_PRINCIPAL_PER_SECOND=1000000 LOYALTY_RATE_LIMIT_PRINCIPAL_BURST=1000000
    export RUST_LOG=warn
    LOYALTY_MASTER_KEYS="bench:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
    LOYALTY_BLIND_INDEX_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
    LOYALTY_JWT_KEYS="bench:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
    LOYALTY_WHATSAPP_APP_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export LOYALTY_MASTER_KEYS LOYALTY_BLIND_INDEX_KEY LOYALTY_JWT_KEYS LOYALTY_WHATSAPP_APP_SECRET
}

SANDBOX_PID=""
stop_sandbox() {
    [[ -n $SANDBOX_PID ]] || return 0
    local pid=$SANDBOX_PID
    SANDBOX_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
PERF_PID=""
LOADGEN_PID=""
on_exit() {
    local rc=$?
    if [[ -n $PERF_PID ]] && kill -0 "$PERF_PID" 2>/dev/null; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
    fi
    if [[ -n $LOADGEN_PID ]] && kill -0 "$LOADGEN_PID" 2>/dev/null; then
        log "stopping loadgen (pid $LOADGEN_PID)"
        kill -TERM "$LOADGEN_PID" 2>/dev/null || true
        wait "$LOADGEN_PID" 2>/dev/null || true
    fi
    stop_server
    stop_sandbox
    if ((rc == 0)) && [[ ${BENCH_KEEP_LOGS:-0} != 1 ]]; then
        rm -rf -- "$WORK"
    else
        log "exit $rc; logs kept in $WORK"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
sql_value() { psql -X -At -v ON_ERROR_STOP=1 -d "${2:-postgres}" -c "$1"; }

# ---- build -------------------------------------------------------------------------------------
log "building loadgen and webhook-loadgen (cargo build --release -p benches)"
timeout "$BENCH_BUILD_TIMEOUT_SECONDS" cargo build --release -p benches
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
WEBHOOK_LOADGEN=$CARGO_TARGET_DIR/release/webhook-loadgen
if [[ $BENCH_SKIP_PRODUCT != 1 && -n ${BENCH_LOYALTY_BIN:-} ]]; then
    [[ -x $BENCH_LOYALTY_BIN ]] || die "BENCH_LOYALTY_BIN=$BENCH_LOYALTY_BIN is not executable"
    LOYALTY=$BENCH_LOYALTY_BIN
    log "using prebuilt $LOYALTY"
elif [[ $BENCH_SKIP_PRODUCT != 1 ]]; then
    log "building loyalty (cargo build --release --bin loyalty -p loyalty)"
    timeout "$BENCH_BUILD_TIMEOUT_SECONDS" cargo build --release --bin loyalty -p loyalty
    LOYALTY=$CARGO_TARGET_DIR/release/loyalty
fi

# ---- baseline: pgbench single-row INSERT commits ------------------------------------------------
PGBENCH_THREADS=$((BENCH_CLIENTS < 2 ? BENCH_CLIENTS : 2))
log "pgbench: single-row INSERT, -c $BENCH_CLIENTS -j $PGBENCH_THREADS -T $BENCH_SECONDS"
psql_admin -c "DROP DATABASE IF EXISTS loyalty_pgbench WITH (FORCE)" -c "CREATE DATABASE loyalty_pgbench"
psql -X -q -v ON_ERROR_STOP=1 -d loyalty_pgbench -c \
    "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload bytea, created_at timestamptz DEFAULT now())"
# 100 bytes of payload, written as a hex bytea literal.
payload_hex=$(python3 -c 'print(bytes(range(100)).hex())')
printf "INSERT INTO bench_insert(payload) VALUES ('\\\\x%s'::bytea);\n" "$payload_hex" >"$WORK/pgbench-insert.sql"
psql_admin -c CHECKPOINT
timeout $((BENCH_SECONDS + 120)) pgbench -n -M prepared -c "$BENCH_CLIENTS" -j "$PGBENCH_THREADS" \
    -T "$BENCH_SECONDS" -f "$WORK/pgbench-insert.sql" loyalty_pgbench >"$WORK/pgbench.out" 2>&1 \
    || { cat "$WORK/pgbench.out" >&2; die "pgbench failed"; }
cat "$WORK/pgbench.out"
PGBENCH_TPS=$(awk '/^tps = / { printf "%.1f", $3; exit }' "$WORK/pgbench.out")
PGBENCH_LATENCY_MS=$(awk '/^latency average = / { print $4; exit }' "$WORK/pgbench.out")
[[ -n $PGBENCH_TPS ]] || die "no tps line in pgbench output"
PGBENCH_ROWS=$(sql_value "SELECT count(*) FROM bench_insert" loyalty_pgbench)
psql_admin -c "DROP DATABASE IF EXISTS loyalty_pgbench WITH (FORCE)"

# ---- product: loyalty all + loadgen --------------------------------------------------------------
LOADGEN_RC=skipped
SERVER_STOP=skipped
RATE="" P50="" P90="" P99="" PMAX="" NON2XX="" TRANSPORT="" LOADGEN_CPU="" ENROLLED=""
STREAM_NOTE="not created (product skipped)"
if [[ $BENCH_SKIP_PRODUCT != 1 && $WHATSAPP == 0 ]]; then
    export LOYALTY_NATS_STREAM=BENCH_$TS
    export LOYALTY_NATS_SUBJECT_PREFIX=bench$TS.events
    # tokio-postgres does not read PGPASSWORD, so a password (if any) goes into the URL.
    export DATABASE_URL="postgres://$PGUSER${PGPASSWORD:+:$PGPASSWORD}@$PGHOST:$PGPORT/loyalty_bench"
    export LOYALTY_HTTP_ADDR=$BENCH_HTTP_ADDR
    product_environment
    # `loyalty all` also serves the WhatsApp webhook ingest; any free port will do here. Its
    # notifier needs a token to start (no WhatsApp customer here, so it sends nothing), and
    # its in-process sandbox stays off so nothing binds the sandbox's default port.
    export LOYALTY_INGEST_ADDR=${BENCH_INGEST_ADDR:-127.0.0.1:0}
    export LOYALTY_WHATSAPP_ACCESS_TOKEN=bench LOYALTY_SANDBOX_ENABLED=false
    BASE_URL="http://$BENCH_HTTP_ADDR"

    log "fresh database loyalty_bench; NATS stream $LOYALTY_NATS_STREAM, subjects $LOYALTY_NATS_SUBJECT_PREFIX.*"
    psql_admin -c "DROP DATABASE IF EXISTS loyalty_bench WITH (FORCE)" -c "CREATE DATABASE loyalty_bench"
    timeout 120 "$LOYALTY" migrate
    timeout 60 "$LOYALTY" tenant create --name Bench --vendor-code BENCH --json >"$WORK/tenant.json"
    # The key stays in the environment of loadgen, never on a command line or in the logs.
    LOYALTY_API_KEY=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["api_key"])' <"$WORK/tenant.json")
    TENANT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tenant_id"])' <"$WORK/tenant.json")
    rm -f "$WORK/tenant.json"
    log "tenant $TENANT_ID"

    if curl -s -o /dev/null --max-time 2 "$BASE_URL/health"; then
        die "something already answers at $BASE_URL; set BENCH_HTTP_ADDR to a free port"
    fi
    log "starting loyalty $BENCH_MODE on $BENCH_HTTP_ADDR"
    "$LOYALTY" "$BENCH_MODE" >"$WORK/loyalty-all.log" 2>&1 &
    SERVER_PID=$!
    healthy=0
    health_deadline=$((SECONDS + 60))
    while ((SECONDS < health_deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 50 "$WORK/loyalty-all.log" >&2; die "loyalty all exited during start-up"; }
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE_URL/health" || true) == 200 ]]; then
            healthy=1
            break
        fi
        sleep 0.1
    done
    ((healthy)) || { tail -n 50 "$WORK/loyalty-all.log" >&2; die "GET /health did not answer 200 within 60 s"; }
    READY=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE_URL/ready" || true)
    log "healthy; GET /ready -> ${READY:-no answer}"

    log "loadgen: $BENCH_CLIENTS clients, ${BENCH_WARMUP_SECONDS}s warm-up + ${BENCH_SECONDS}s measured"
    # In the background and waited for, so that a signal to this script is handled at once
    # (bash defers traps while a foreground command runs); on_exit stops it.
    LOYALTY_API_KEY=$LOYALTY_API_KEY timeout $((BENCH_WARMUP_SECONDS + BENCH_SECONDS + 600)) "$LOADGEN" \
        --base-url "$BASE_URL" --clients "$BENCH_CLIENTS" --duration-seconds "$BENCH_SECONDS" \
        --warmup-seconds "$BENCH_WARMUP_SECONDS" --customers "$BENCH_CUSTOMERS" \
        --threads "$BENCH_LOADGEN_THREADS" --json >"$WORK/loadgen.out" 2>&1 &
    LOADGEN_PID=$!
    LOADGEN_RC=0
    wait "$LOADGEN_PID" || LOADGEN_RC=$?
    LOADGEN_PID=""
    cat "$WORK/loadgen.out"
    unset LOYALTY_API_KEY
    stop_server
    tail -n 20 "$WORK/loyalty-all.log" | sed 's/^/  server: /' >&2 || true
    [[ $LOADGEN_RC == 0 || $LOADGEN_RC == 3 ]] || die "loadgen failed (exit $LOADGEN_RC)"

    summary_json=$(grep '^{' "$WORK/loadgen.out" | tail -n 1)
    [[ -n $summary_json ]] || die "loadgen printed no JSON summary"
    read -r RATE P50 P90 P99 PMAX NON2XX TRANSPORT LOADGEN_CPU ENROLLED < <(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
f = lambda k: "n/a" if s.get(k) is None else str(s[k])
print(*(f(k) for k in ("purchases_per_second", "p50_ms", "p90_ms", "p99_ms", "max_ms",
    "non_2xx_total", "transport_errors_total", "loadgen_cpu_seconds", "customers_enrolled")))
' "$summary_json")

    if command -v nats >/dev/null; then
        if timeout 30 nats --server "$NATS_URL" stream rm -f "$LOYALTY_NATS_STREAM" >/dev/null 2>&1; then
            STREAM_NOTE="$LOYALTY_NATS_STREAM deleted"
        else
            STREAM_NOTE="$LOYALTY_NATS_STREAM: deleting it with the nats CLI failed; left on the server"
        fi
    else
        STREAM_NOTE="$LOYALTY_NATS_STREAM left on the server (no nats CLI here to delete it)"
    fi
fi

# ---- product, WhatsApp modes: ingest alone, or sandbox + loyalty all ------------------------------
# Waits until something answers HTTP at $1 (any status), or dies after $2 seconds.
wait_http() {
    local url=$1 deadline=$((SECONDS + $2)) pid=$3 what=$4
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || { tail -n 50 "$WORK/$what.log" >&2; die "$what exited during start-up"; }
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true) != 000 ]] && return 0
        sleep 0.1
    done
    tail -n 50 "$WORK/$what.log" >&2
    die "$url did not answer within $2 s"
}
WA_JSON=""
PERF_TOP=""
if [[ $BENCH_SKIP_PRODUCT != 1 && $WHATSAPP == 1 ]]; then
    export LOYALTY_NATS_STREAM=BENCH_$TS
    export LOYALTY_NATS_SUBJECT_PREFIX=bench$TS.events
    export DATABASE_URL="postgres://$PGUSER${PGPASSWORD:+:$PGPASSWORD}@$PGHOST:$PGPORT/loyalty_bench"
    export LOYALTY_HTTP_ADDR=$BENCH_HTTP_ADDR LOYALTY_INGEST_ADDR=$BENCH_INGEST_ADDR
    product_environment
    INGEST_URL="http://$BENCH_INGEST_ADDR/webhooks/whatsapp"
    SANDBOX_URL="http://$BENCH_SANDBOX_ADDR"
    for url in "$INGEST_URL" "$SANDBOX_URL/sandbox/health" "http://$BENCH_HTTP_ADDR/health"; do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true) == 000 ]] \
            || die "something already answers at $url; choose free BENCH_*_ADDR ports"
    done

    log "fresh database loyalty_bench"
    psql_admin -c "DROP DATABASE IF EXISTS loyalty_bench WITH (FORCE)" -c "CREATE DATABASE loyalty_bench"
    timeout 120 "$LOYALTY" migrate
    if [[ $BENCH_MODE == ingest ]]; then
        SERVER_WHAT="loyalty ingest"
        log "starting loyalty ingest on $BENCH_INGEST_ADDR"
        "$LOYALTY" ingest >"$WORK/server.log" 2>&1 &
        SERVER_PID=$!
        wait_http "$INGEST_URL" 60 "$SERVER_PID" server
        LOADGEN_ARGS=(--mode ingest --clients "$BENCH_CLIENTS")
    else
        SERVER_WHAT="loyalty all + loyalty sandbox serve"
        timeout 60 "$LOYALTY" tenant create --name Bench --vendor-code BENCH --json >"$WORK/tenant.json"
        rm -f "$WORK/tenant.json"
        log "starting loyalty sandbox serve on $BENCH_SANDBOX_ADDR (statuses to $INGEST_URL)"
        LOYALTY_SANDBOX_ADDR=$BENCH_SANDBOX_ADDR LOYALTY_SANDBOX_WEBHOOK_URL=$INGEST_URL \
            "$LOYALTY" sandbox serve >"$WORK/sandbox.log" 2>&1 &
        SANDBOX_PID=$!
        wait_http "$SANDBOX_URL/sandbox/health" 30 "$SANDBOX_PID" sandbox
        log "starting loyalty all (notifier -> $SANDBOX_URL, $BENCH_WA_SENDS_PER_SECOND sends/s per number)"
        LOYALTY_WHATSAPP_API_BASE_URL=$SANDBOX_URL LOYALTY_WHATSAPP_ACCESS_TOKEN=bench \
            LOYALTY_WHATSAPP_NUMBER_SENDS_PER_SECOND=$BENCH_WA_SENDS_PER_SECOND \
            LOYALTY_SANDBOX_ENABLED=false \
            "$LOYALTY" all >"$WORK/server.log" 2>&1 &
        SERVER_PID=$!
        wait_http "http://$BENCH_HTTP_ADDR/health" 60 "$SERVER_PID" server
        wait_http "$INGEST_URL" 30 "$SERVER_PID" server
        # The vendor BENCH; at most 4 × BENCH_CLIENTS posts in flight (the open loop keeps the rate).
        LOADGEN_ARGS=(--mode e2e --rate "$BENCH_RATE" --vendor-code BENCH --clients "$((BENCH_CLIENTS * 4))"
            --sandbox-url "$SANDBOX_URL")
    fi

    if ((BENCH_PERF_SECONDS > 0)) && command -v perf >/dev/null; then
        # Starts once the measured window has begun (e2e: after the JOIN set-up, roughly).
        perf_delay=$((BENCH_WARMUP_SECONDS + 1))
        [[ $BENCH_MODE == whatsapp-e2e ]] && perf_delay=$((perf_delay + BENCH_SENDERS / 200 + 8))
        (sleep "$perf_delay" && exec perf record -a -g -q -o "$WORK/perf.data" -- sleep "$BENCH_PERF_SECONDS") \
            >"$WORK/perf.log" 2>&1 &
        PERF_PID=$!
    fi
    log "webhook-loadgen ${LOADGEN_ARGS[*]}: ${BENCH_WARMUP_SECONDS}s warm-up + ${BENCH_SECONDS}s measured"
    timeout $((BENCH_WARMUP_SECONDS + BENCH_SECONDS + 600)) "$WEBHOOK_LOADGEN" "${LOADGEN_ARGS[@]}" \
        --ingest-url "$INGEST_URL" --senders "$BENCH_SENDERS" --duration-seconds "$BENCH_SECONDS" \
        --warmup-seconds "$BENCH_WARMUP_SECONDS" --threads "$BENCH_LOADGEN_THREADS" --json \
        >"$WORK/loadgen.out" 2>&1 &
    LOADGEN_PID=$!
    LOADGEN_RC=0
    wait "$LOADGEN_PID" || LOADGEN_RC=$?
    LOADGEN_PID=""
    cat "$WORK/loadgen.out"
    if [[ -n $PERF_PID ]]; then
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=""
        if [[ -s $WORK/perf.data ]]; then
            perf report -i "$WORK/perf.data" --no-children --sort comm,dso -q --stdio -g none 2>/dev/null \
                | grep -v '^$' | head -n 12 >"$WORK/perf-comm.txt" || true
            perf report -i "$WORK/perf.data" --no-children --sort sym -q --stdio -g none 2>/dev/null \
                | grep -v '^$' | head -n 25 >"$WORK/perf-sym.txt" || true
            PERF_TOP=$(cat "$WORK/perf-comm.txt" "$WORK/perf-sym.txt")
        fi
    fi
    stop_server
    stop_sandbox
    tail -n 20 "$WORK/server.log" | sed 's/^/  server: /' >&2 || true
    [[ $LOADGEN_RC == 0 || $LOADGEN_RC == 3 ]] || die "webhook-loadgen failed (exit $LOADGEN_RC)"
    WA_JSON=$(grep '^{' "$WORK/loadgen.out" | tail -n 1)
    [[ -n $WA_JSON ]] || die "webhook-loadgen printed no JSON summary"
    RATE=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(s.get("messages_per_second") or s.get("rate_achieved"))' "$WA_JSON")
    STREAM_NOTE="$LOYALTY_NATS_STREAM left on the server (no nats CLI here to delete it)"
    if command -v nats >/dev/null && timeout 30 nats --server "$NATS_URL" stream rm -f "$LOYALTY_NATS_STREAM" >/dev/null 2>&1; then
        STREAM_NOTE="$LOYALTY_NATS_STREAM deleted"
    fi
    [[ $BENCH_MODE == ingest ]] && STREAM_NOTE="none (loyalty ingest does not use NATS)"
fi

# ---- summary ---------------------------------------------------------------------------------
RATIO=$(awk -v a="$RATE" -v b="$PGBENCH_TPS" 'BEGIN { if (a ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.3f", a / b; else print "n/a" }')
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
MEM_TOTAL=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
PG_VERSION=$(sql_value "SHOW server_version")
# Thousands of databases (left by test runs) keep autovacuum busy visiting each one: on this
# box 1,050 of them halved the purchase rate (2,048/s against 4,582/s once dropped), so the
# count is part of every result.
PG_DATABASES=$(sql_value "SELECT count(*) FROM pg_database")
PG_SETTINGS=$(sql_value "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers', 'max_connections')")
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
[[ -z $(git status --porcelain 2>/dev/null | head -n 1) ]] || GIT_REV="$GIT_REV (dirty tree)"
show() { [[ -n $1 ]] && printf '%s' "$1" || printf 'skipped'; }

RESULT_FILE=$RESULTS_DIR/$STAMP.md
wa_field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("n/a" if v is None else v)' "$WA_JSON" "$1"; }
if [[ $WHATSAPP == 1 && -n $WA_JSON ]]; then
{
    if [[ $BENCH_MODE == ingest ]]; then
        echo "## WhatsApp webhook ingest benchmark $STAMP"
        echo
        echo "| measure | value |"
        echo "| --- | --- |"
        echo "| pgbench single-row INSERT commits/s (-M prepared -c $BENCH_CLIENTS -j $PGBENCH_THREADS -T $BENCH_SECONDS) | $PGBENCH_TPS (latency avg ${PGBENCH_LATENCY_MS:-?} ms, $PGBENCH_ROWS rows) |"
        echo "| signed text-message webhooks/s, 2xx ($SERVER_WHAT, $BENCH_CLIENTS clients, $BENCH_SENDERS senders, ${BENCH_SECONDS} s after ${BENCH_WARMUP_SECONDS} s warm-up) | $RATE |"
        echo "| ingest latency p50 / p90 / p99 / max (ms) | $(wa_field p50_ms) / $(wa_field p90_ms) / $(wa_field p99_ms) / $(wa_field max_ms) |"
        echo "| webhooks/s ÷ pgbench tps (target ≥ 1.0) | $RATIO |"
        echo "| answers (whole run; 0 = transport error) | $(wa_field outcomes) |"
    else
        echo "## WhatsApp end-to-end benchmark $STAMP"
        echo
        echo "| measure | value |"
        echo "| --- | --- |"
        echo "| pgbench single-row INSERT commits/s (-M prepared -c $BENCH_CLIENTS -j $PGBENCH_THREADS -T $BENCH_SECONDS) | $PGBENCH_TPS (latency avg ${PGBENCH_LATENCY_MS:-?} ms, $PGBENCH_ROWS rows) |"
        echo "| open-loop rate target / achieved (msg/s; $SERVER_WHAT, $BENCH_SENDERS senders, \"points\", ${BENCH_SECONDS} s after ${BENCH_WARMUP_SECONDS} s warm-up) | $BENCH_RATE / $(wa_field rate_achieved) (scheduler lag max $(wa_field scheduler_lag_max_ms) ms) |"
        echo "| end-to-end latency, scheduled POST → reply recorded by the sandbox, p50 / p90 / p99 / max (ms; target p99 ≤ 100) | $(wa_field p50_ms) / $(wa_field p90_ms) / $(wa_field p99_ms) / $(wa_field max_ms) |"
        echo "| replies matched / measured requests; misses (no reply within the timeout); unexpected replies | $(wa_field replies_matched) / $(wa_field requests_measured); $(wa_field misses); $(wa_field unexpected_replies) |"
        echo "| ingest answer p50 / p99 / max (ms, from the scheduled time) | $(wa_field ingest_p50_ms) / $(wa_field ingest_p99_ms) / $(wa_field ingest_max_ms) |"
        echo "| webhook answers (whole run; 0 = transport error) | $(wa_field outcomes) |"
        echo "| notifier per-number limit (LOYALTY_WHATSAPP_NUMBER_SENDS_PER_SECOND) | $BENCH_WA_SENDS_PER_SECOND |"
    fi
    echo "| loadgen CPU seconds (threads: $BENCH_LOADGEN_THREADS) | $(wa_field loadgen_cpu_seconds) |"
    echo "| loadgen exit / server stop | $LOADGEN_RC / $SERVER_STOP |"
    echo
    echo "Machine: $(nproc) cores (${CPU_MODEL:-unknown CPU}), $MEM_TOTAL RAM, kernel $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg);" \
        "PostgreSQL $PG_VERSION ($PG_SETTINGS; $PG_DATABASES databases on the server); loadgen, server, sandbox, PostgreSQL and NATS share the box, loopback only."
    echo "Tree: $GIT_REV. NATS stream: $STREAM_NOTE."
    if [[ -n $PERF_TOP ]]; then
        echo
        echo "\`perf record -a -g\` for $BENCH_PERF_SECONDS s in the measured window (self time):"
        echo
        echo '```'
        echo "$PERF_TOP"
        echo '```'
    fi
    echo
} >"$WORK/summary.md"
else
{
    echo "## Purchase benchmark $STAMP"
    echo
    echo "| measure | value |"
    echo "| --- | --- |"
    echo "| pgbench single-row INSERT commits/s (-M prepared -c $BENCH_CLIENTS -j $PGBENCH_THREADS -T $BENCH_SECONDS) | $PGBENCH_TPS (latency avg ${PGBENCH_LATENCY_MS:-?} ms, $PGBENCH_ROWS rows) |"
    echo "| purchases/s, 2xx (loyalty $BENCH_MODE, $BENCH_CLIENTS clients, ${BENCH_SECONDS} s after ${BENCH_WARMUP_SECONDS} s warm-up) | $(show "$RATE") |"
    echo "| purchase latency p50 / p90 / p99 / max (ms) | $(show "$P50") / $(show "$P90") / $(show "$P99") / $(show "$PMAX") |"
    echo "| purchases/s ÷ pgbench tps | $RATIO |"
    echo "| non-2xx / transport errors (whole loadgen run) | $(show "$NON2XX") / $(show "$TRANSPORT") |"
    echo "| customers enrolled | $(show "$ENROLLED") |"
    echo "| loadgen CPU seconds (threads: $BENCH_LOADGEN_THREADS) | $(show "$LOADGEN_CPU") |"
    echo "| loadgen exit / server stop | $LOADGEN_RC / $SERVER_STOP |"
    echo
    echo "Machine: $(nproc) cores (${CPU_MODEL:-unknown CPU}), $MEM_TOTAL RAM, kernel $(uname -r);" \
        "PostgreSQL $PG_VERSION ($PG_SETTINGS; $PG_DATABASES databases on the server); loadgen, server, PostgreSQL and NATS share the box, loopback only."
    echo "Tree: $GIT_REV. NATS stream: $STREAM_NOTE. Database loyalty_bench is kept for inspection (dropped by the next run)."
    echo
} >"$WORK/summary.md"
fi
cat "$WORK/summary.md" >>"$RESULT_FILE"
echo
cat "$WORK/summary.md"
log "appended to ${RESULT_FILE#"$ROOT"/}"

if [[ $LOADGEN_RC == 3 ]]; then
    log "loadgen saw non-2xx or transport errors: see $WORK/loadgen.out"
    exit 3
fi
