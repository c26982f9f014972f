#!/usr/bin/env bash
# benches/audit.sh — the audit replay benchmarks (issue #6, item 7), next to their baseline
# (pgbench), in one run.
#
# What it does, in order (every step bounded in time, loopback only, one run at a time under
# `flock /tmp/loyalty-bench.lock`, which benches/run.sh runs share when started with flock):
#   1. checks PostgreSQL answers; drops stale per-test databases (`lt_<uuid>` nobody is
#      connected to, created over AUDIT_STALE_MINUTES ago): autovacuum visiting thousands of
#      them slows the server (docs/PERFORMANCE.md);
#   2. builds `audit-ledger` (benches) and `loyalty` in release mode;
#   3. baseline: pgbench's single-row INSERT commit rate on the same server (as run.sh:
#      ~100-byte bytea rows, -M prepared, -c BENCH_CLIENTS -j 2 -T BENCH_SECONDS);
#   4. generates one tenant's ledger of AUDIT_EVENTS events for AUDIT_CUSTOMERS customers
#      (`audit-ledger`: decided and folded by ledger-core, codec-encoded, chained and signed
#      as the product does) as an export file, COPY rows and the head rows;
#   5. `loyalty audit verify` on that file, pinned to one core (`taskset -c AUDIT_CPU`),
#      AUDIT_VERIFY_RUNS times, under `/usr/bin/time -v`: events/s and peak RSS;
#   6. loads the same rows into a fresh database AUDIT_DATABASE (`loyalty migrate`, COPY),
#      then `loyalty audit export` of the tenant under `/usr/bin/time -v` (seconds, peak RSS)
#      and `cmp` of its file with the generated one (the same bytes, or the run fails);
#   7. `loyalty project rebuild <name>` for every name `loyalty project rebuild --help`
#      lists (so projections added later are measured too): seconds and events/s;
#   8. prints a summary and appends it as Markdown to benches/results/<UTC timestamp>.md.
#
# Settings (environment):
#   AUDIT_EVENTS=1000000  AUDIT_CUSTOMERS=20000  AUDIT_SEED=6
#   AUDIT_CPU=0                the core `verify` is pinned to
#   AUDIT_VERIFY_RUNS=3        verify runs (each reported; the best is the headline)
#   AUDIT_DATABASE=loyalty_audit_bench (dropped and created; kept when AUDIT_KEEP_DB=1)
#   AUDIT_STALE_MINUTES=30
#   BENCH_SECONDS=30 BENCH_CLIENTS=64   pgbench -T and -c
#   BENCH_LOYALTY_BIN=         a prebuilt `loyalty` instead of building one
#   BENCH_BUILD_TIMEOUT_SECONDS=3600    AUDIT_STEP_TIMEOUT_SECONDS=1800 (each timed step)
#   BENCH_KEEP_LOGS=0          1 = keep the work folder (the ledger files are ~1 GB)
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   CARGO_TARGET_DIR=/var/tmp/loyalty-ledger-target
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# One benchmark at a time on this box: the figures are meaningless if two share the cores.
if [[ -z ${LOYALTY_BENCH_LOCKED:-} ]]; then
    export LOYALTY_BENCH_LOCKED=1
    exec flock /tmp/loyalty-bench.lock "$0" "$@"
fi

log() { printf '[audit-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PGHOST=${PGHOST:-127.0.0.1}
export PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-postgres}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/loyalty-ledger-target}
AUDIT_EVENTS=${AUDIT_EVENTS:-1000000}
AUDIT_CUSTOMERS=${AUDIT_CUSTOMERS:-20000}
AUDIT_SEED=${AUDIT_SEED:-6}
AUDIT_CPU=${AUDIT_CPU:-0}
AUDIT_VERIFY_RUNS=${AUDIT_VERIFY_RUNS:-3}
AUDIT_DATABASE=${AUDIT_DATABASE:-loyalty_audit_bench}
AUDIT_STALE_MINUTES=${AUDIT_STALE_MINUTES:-30}
AUDIT_STEP_TIMEOUT_SECONDS=${AUDIT_STEP_TIMEOUT_SECONDS:-1800}
BENCH_SECONDS=${BENCH_SECONDS:-30}
BENCH_CLIENTS=${BENCH_CLIENTS:-64}
BENCH_BUILD_TIMEOUT_SECONDS=${BENCH_BUILD_TIMEOUT_SECONDS:-3600}
for var in AUDIT_EVENTS AUDIT_CUSTOMERS AUDIT_SEED AUDIT_CPU AUDIT_VERIFY_RUNS AUDIT_STALE_MINUTES \
    AUDIT_STEP_TIMEOUT_SECONDS BENCH_SECONDS BENCH_CLIENTS BENCH_BUILD_TIMEOUT_SECONDS; do
    [[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number, got '${!var}'"
done
((AUDIT_EVENTS >= 1 && AUDIT_VERIFY_RUNS >= 1 && BENCH_SECONDS >= 1)) || die "nothing to measure"
[[ $AUDIT_DATABASE =~ ^[a-z_][a-z0-9_]*$ ]] || die "AUDIT_DATABASE must be a plain identifier"
case $PGHOST in 127.* | localhost | ::1) ;; *) die "PGHOST must be loopback, got $PGHOST" ;; esac
for tool in psql pg_isready pgbench taskset flock python3 timeout cmp; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time, for peak RSS) is required"
timeout 30 pg_isready -q || die "PostgreSQL does not answer on $PGHOST:$PGPORT"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=$ROOT/benches/results
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loyalty-audit-bench.XXXXXX")
on_exit() {
    local rc=$?
    if ((rc == 0)) && [[ ${BENCH_KEEP_LOGS:-0} != 1 ]]; then
        rm -rf -- "$WORK"
    else
        log "exit $rc; work folder kept in $WORK"
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
sql_value() { psql -X -At -v ON_ERROR_STOP=1 -d "${2:-postgres}" -c "$1"; }
# `/usr/bin/time -v` fields of a log: wall seconds, peak RSS in MiB.
wall_seconds() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$1"; }
cpu_seconds() { awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$1"; }
peak_mib() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
per_second() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "n/a" }'; }

# ---- stale test databases ----------------------------------------------------------------------
STALE=$(sql_value "SELECT quote_ident(d.datname) FROM pg_database d
    WHERE d.datname ~ '^lt_[0-9a-f]{32}\$' AND NOT d.datistemplate
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
      AND coalesce((pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification, 'epoch')
          < now() - make_interval(mins => $AUDIT_STALE_MINUTES)")
DROPPED=0
for name in $STALE; do
    psql_admin -c "DROP DATABASE IF EXISTS $name" && DROPPED=$((DROPPED + 1)) || true
done
log "dropped $DROPPED stale lt_ database(s)"

# ---- build -------------------------------------------------------------------------------------
log "building audit-ledger (cargo build --release -p benches --bin audit-ledger)"
timeout "$BENCH_BUILD_TIMEOUT_SECONDS" cargo build --release -p benches --bin audit-ledger
GENERATOR=$CARGO_TARGET_DIR/release/audit-ledger
if [[ -n ${BENCH_LOYALTY_BIN:-} ]]; then
    [[ -x $BENCH_LOYALTY_BIN ]] || die "BENCH_LOYALTY_BIN=$BENCH_LOYALTY_BIN is not executable"
    LOYALTY=$BENCH_LOYALTY_BIN
else
    log "building loyalty (cargo build --release --bin loyalty -p loyalty)"
    timeout "$BENCH_BUILD_TIMEOUT_SECONDS" cargo build --release --bin loyalty -p loyalty
    LOYALTY=$CARGO_TARGET_DIR/release/loyalty
fi
export RUST_LOG=warn
export DATABASE_URL="postgres://$PGUSER${PGPASSWORD:+:$PGPASSWORD}@$PGHOST:$PGPORT/$AUDIT_DATABASE"
LOYALTY_MASTER_KEYS="bench:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
LOYALTY_BLIND_INDEX_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export LOYALTY_MASTER_KEYS LOYALTY_BLIND_INDEX_KEY

# ---- baseline: pgbench single-row INSERT commits (as benches/run.sh) ------------------------------
PGBENCH_THREADS=$((BENCH_CLIENTS < 2 ? BENCH_CLIENTS : 2))
log "pgbench: single-row INSERT, -c $BENCH_CLIENTS -j $PGBENCH_THREADS -T $BENCH_SECONDS"
psql_admin -c "DROP DATABASE IF EXISTS loyalty_pgbench WITH (FORCE)" -c "CREATE DATABASE loyalty_pgbench"
psql -X -q -v ON_ERROR_STOP=1 -d loyalty_pgbench -c \
    "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload bytea, created_at timestamptz DEFAULT now())"
payload_hex=$(python3 -c 'print(bytes(range(100)).hex())')
printf "INSERT INTO bench_insert(payload) VALUES ('\\\\x%s'::bytea);\n" "$payload_hex" >"$WORK/pgbench-insert.sql"
psql_admin -c CHECKPOINT
timeout $((BENCH_SECONDS + 120)) pgbench -n -M prepared -c "$BENCH_CLIENTS" -j "$PGBENCH_THREADS" \
    -T "$BENCH_SECONDS" -f "$WORK/pgbench-insert.sql" loyalty_pgbench >"$WORK/pgbench.out" 2>&1 \
    || { cat "$WORK/pgbench.out" >&2; die "pgbench failed"; }
PGBENCH_TPS=$(awk '/^tps = / { printf "%.1f", $3; exit }' "$WORK/pgbench.out")
[[ -n $PGBENCH_TPS ]] || die "no tps line in pgbench output"
psql_admin -c "DROP DATABASE IF EXISTS loyalty_pgbench WITH (FORCE)"
log "pgbench: $PGBENCH_TPS tps"

# ---- the ledger ----------------------------------------------------------------------------------
log "generating $AUDIT_EVENTS events for $AUDIT_CUSTOMERS customers"
timeout "$AUDIT_STEP_TIMEOUT_SECONDS" "$GENERATOR" --events "$AUDIT_EVENTS" --customers "$AUDIT_CUSTOMERS" \
    --seed "$AUDIT_SEED" --export "$WORK/ledger.jsonl" --copy "$WORK/events.copy" --sql "$WORK/heads.sql" \
    >"$WORK/generated.json"
GENERATED=$(cat "$WORK/generated.json")
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$GENERATED" "$1"; }
EVENTS=$(field events)
TENANT=$(field tenant_id)
PUBLIC_KEY=$(field public_key)
FILE_MIB=$(du -m "$WORK/ledger.jsonl" | cut -f1)
MIX=$(python3 - "$WORK/ledger.jsonl" <<'PY'
import collections, json, sys
counts = collections.Counter()
with open(sys.argv[1]) as f:
    for line in f:
        i = line.find('"event_type":"')
        if i >= 0:
            counts[line[i + 14:line.index('"', i + 14)]] += 1
print(", ".join(f"{k} {v:,}" for k, v in counts.most_common()))
PY
)
log "generated $EVENTS events ($FILE_MIB MiB) in $(field seconds) s: $MIX"

# ---- verify on one core ---------------------------------------------------------------------------
VERIFY_ROWS=""
BEST_SECONDS=""
VERIFY_RSS=""
for run in $(seq 1 "$AUDIT_VERIFY_RUNS"); do
    timeout "$AUDIT_STEP_TIMEOUT_SECONDS" taskset -c "$AUDIT_CPU" /usr/bin/time -v -o "$WORK/verify-$run.time" \
        "$LOYALTY" audit verify "$WORK/ledger.jsonl" --public-key "$PUBLIC_KEY" >"$WORK/verify-$run.out" \
        || { cat "$WORK/verify-$run.out" "$WORK/verify-$run.time" >&2; die "verify failed"; }
    grep -q "^events: $EVENTS (chain intact)" "$WORK/verify-$run.out" || die "verify did not count $EVENTS events"
    seconds=$(wall_seconds "$WORK/verify-$run.time")
    rss=$(peak_mib "$WORK/verify-$run.time")
    cpu=$(cpu_seconds "$WORK/verify-$run.time")
    log "verify run $run: $seconds s, $(per_second "$EVENTS" "$seconds") events/s, CPU $cpu s, peak RSS $rss MiB"
    VERIFY_ROWS+="$seconds s wall ($(per_second "$EVENTS" "$seconds")/s), $cpu s CPU ($(per_second "$EVENTS" "$cpu")/s), $rss MiB; "
    if [[ -z $BEST_SECONDS ]] || awk -v a="$seconds" -v b="$BEST_SECONDS" 'BEGIN { exit !(a < b) }'; then
        BEST_SECONDS=$seconds
        VERIFY_RSS=$rss
    fi
done
VERIFY_RATE=$(per_second "$EVENTS" "$BEST_SECONDS")
VERIFY_SUMMARY=$(sed -n '2,$p' "$WORK/verify-1.out" | tr '\n' ';' | sed 's/;/; /g')

# ---- the same ledger in PostgreSQL: export and rebuilds ---------------------------------------------
log "loading the ledger into $AUDIT_DATABASE"
psql_admin -c "DROP DATABASE IF EXISTS $AUDIT_DATABASE WITH (FORCE)" -c "CREATE DATABASE $AUDIT_DATABASE"
timeout 300 "$LOYALTY" migrate >/dev/null
LOAD_START=$(date +%s.%N)
timeout "$AUDIT_STEP_TIMEOUT_SECONDS" psql -X -q -v ON_ERROR_STOP=1 -d "$AUDIT_DATABASE" \
    -c "\\copy events (event_id, tenant_id, tenant_sequence, stream_id, version, event_type, type_version, payload, metadata, recorded_at, previous_hash, hash) FROM '$WORK/events.copy'" \
    -f "$WORK/heads.sql" -c "ANALYZE"
LOAD_SECONDS=$(awk -v a="$LOAD_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
EVENTS_MIB=$(sql_value "SELECT pg_total_relation_size('events') / 1048576" "$AUDIT_DATABASE")
log "loaded in $LOAD_SECONDS s (events table and indexes: $EVENTS_MIB MiB)"

timeout "$AUDIT_STEP_TIMEOUT_SECONDS" /usr/bin/time -v -o "$WORK/export.time" \
    "$LOYALTY" audit export --tenant "$TENANT" --out "$WORK/exported.jsonl" >"$WORK/export.out" \
    || { cat "$WORK/export.out" "$WORK/export.time" >&2; die "export failed"; }
cmp -s "$WORK/ledger.jsonl" "$WORK/exported.jsonl" || die "the export differs from the generated ledger"
EXPORT_SECONDS=$(wall_seconds "$WORK/export.time")
EXPORT_RSS=$(peak_mib "$WORK/export.time")
log "export: $EXPORT_SECONDS s, $(per_second "$EVENTS" "$EXPORT_SECONDS") events/s, peak RSS $EXPORT_RSS MiB (same bytes as generated)"

# The <NAME> argument's values, as clap prints them: "[possible values: a, b]" on one line,
# or (once a value has its own help) a "Possible values:" list of "- name: help" lines.
NAMES=$("$LOYALTY" project rebuild --help | python3 -c '
import re, sys
names, listing = [], False
for line in sys.stdin:
    if "possible values:" in line:
        values = line.split("possible values:", 1)[1].split("]", 1)[0]
        names = [v.strip() for v in values.split(",")]
        break
    if line.strip() == "Possible values:":
        listing = True
        continue
    if listing:
        item = re.match(r"\s*- ([A-Za-z0-9_-]+)", line)
        if item is None:
            break
        names.append(item.group(1))
print(" ".join(names))
')
[[ -n $NAMES ]] || die "no projection names in 'loyalty project rebuild --help'"
REBUILD_ROWS=""
for name in $NAMES; do
    timeout "$AUDIT_STEP_TIMEOUT_SECONDS" /usr/bin/time -v -o "$WORK/rebuild-$name.time" \
        "$LOYALTY" project rebuild "$name" >"$WORK/rebuild-$name.out" \
        || { cat "$WORK/rebuild-$name.out" "$WORK/rebuild-$name.time" >&2; die "rebuild $name failed"; }
    seconds=$(wall_seconds "$WORK/rebuild-$name.time")
    read_events=$(awk '/rebuilt from/ { print $3 }' "$WORK/rebuild-$name.out")
    if [[ -n $read_events ]]; then
        log "rebuild $name: $read_events events in $seconds s ($(per_second "$read_events" "$seconds") events/s), peak RSS $(peak_mib "$WORK/rebuild-$name.time") MiB"
        REBUILD_ROWS+="| \`loyalty project rebuild $name\` ($read_events events) | $seconds s, **$(per_second "$read_events" "$seconds") events/s**, peak RSS $(peak_mib "$WORK/rebuild-$name.time") MiB |"$'\n'
    else
        # Not folded from the events (the WhatsApp analytics read the WhatsApp tables).
        said=$(tr '\n' ' ' <"$WORK/rebuild-$name.out")
        log "rebuild $name: $said in $seconds s, peak RSS $(peak_mib "$WORK/rebuild-$name.time") MiB"
        REBUILD_ROWS+="| \`loyalty project rebuild $name\` ($said) | $seconds s, peak RSS $(peak_mib "$WORK/rebuild-$name.time") MiB |"$'\n'
    fi
done
[[ ${AUDIT_KEEP_DB:-0} == 1 ]] || psql_admin -c "DROP DATABASE IF EXISTS $AUDIT_DATABASE WITH (FORCE)"

# ---- summary -------------------------------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
MEM_TOTAL=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
PG_VERSION=$(sql_value "SHOW server_version")
PG_DATABASES=$(sql_value "SELECT count(*) FROM pg_database")
GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
[[ -z $(git status --porcelain 2>/dev/null | head -n 1) ]] || GIT_REV="$GIT_REV (dirty tree)"
{
    echo "## Audit replay benchmark $STAMP"
    echo
    echo "| measure | value |"
    echo "| --- | --- |"
    echo "| pgbench single-row INSERT commits/s (-M prepared -c $BENCH_CLIENTS -j $PGBENCH_THREADS -T $BENCH_SECONDS) | $PGBENCH_TPS |"
    echo "| ledger (\`audit-ledger --events $AUDIT_EVENTS --customers $AUDIT_CUSTOMERS --seed $AUDIT_SEED\`) | $EVENTS events, $(field customers) customers, $FILE_MIB MiB: $MIX |"
    echo "| \`taskset -c $AUDIT_CPU loyalty audit verify\` (decode + hash + fold + signature), best of $AUDIT_VERIFY_RUNS | $BEST_SECONDS s, **$VERIFY_RATE events/s** (target ≥ 500,000), peak RSS $VERIFY_RSS MiB |"
    echo "| verify runs (wall clock; user + system CPU; peak RSS) | $VERIFY_ROWS |"
    echo "| load (COPY + ANALYZE) | $LOAD_SECONDS s; events table with indexes $EVENTS_MIB MiB |"
    echo "| \`loyalty audit export\` (same bytes as generated) | $EXPORT_SECONDS s, $(per_second "$EVENTS" "$EXPORT_SECONDS") events/s, **peak RSS $EXPORT_RSS MiB** |"
    printf '%s' "$REBUILD_ROWS"
    echo "| verify ÷ pgbench tps | $(awk -v a="$VERIFY_RATE" -v b="$PGBENCH_TPS" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }') |"
    echo
    echo "Verify's summary: $VERIFY_SUMMARY"
    echo
    echo "Machine: $(nproc) cores (${CPU_MODEL:-unknown CPU}), $MEM_TOTAL RAM, kernel $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg);" \
        "PostgreSQL $PG_VERSION ($PG_DATABASES databases on the server, $DROPPED stale ones dropped first); loopback only."
    echo "Tree: $GIT_REV."
    echo
} >"$WORK/summary.md"
cat "$WORK/summary.md" >>"$RESULTS_DIR/$STAMP.md"
echo
cat "$WORK/summary.md"
log "appended to benches/results/$STAMP.md"
