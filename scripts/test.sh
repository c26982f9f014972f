#!/usr/bin/env bash
#
# Runs every test of the workspace against a real PostgreSQL and a real NATS
# (JetStream) server, installing and starting them from the distribution's packages
# when they are missing (see scripts/services.sh). .ci/run calls this script.
#
#     scripts/test.sh                      # everything
#     scripts/test.sh -p ledger-core       # extra arguments go to `cargo test`
#
# Tests read DATABASE_URL and NATS_URL (exported here with the resolved values) and
# create one database per test, `lt_<uuid>`, cloned from a migrated template
# `lt_template_<migrations fingerprint>` that is kept between runs (tests/it/helpers.rs).
# Databases left behind by earlier runs are dropped first: only those nobody is
# connected to, and only per-test databases older than TEST_DB_STALE_MINUTES
# (default 30) and templates older than 7 days (old fingerprints; the current one is
# rebuilt on demand), so a test run going on beside this one keeps its databases.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=scripts/services.sh
source scripts/services.sh

started_at=$(date +%s)
load_dotenv .env
ensure_services

stale_minutes=${TEST_DB_STALE_MINUTES:-30}
[[ $stale_minutes =~ ^[0-9]+$ ]] || { echo "error: TEST_DB_STALE_MINUTES must be a whole number" >&2; exit 2; }

stale_test_databases_sql() {
    # $1 = 1 to require the age check. pg_stat_file needs a superuser or the
    # pg_read_server_files role; without it we fall back to "nobody connected".
    local age_condition="and d.datname not like 'lt\_template\_%'"
    if [ "$1" -eq 1 ]; then
        age_condition="and coalesce((pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification,
                          'epoch')
              < now() - case when d.datname like 'lt\_template\_%' then interval '7 days'
                             else make_interval(mins => $stale_minutes) end"
    fi
    cat <<SQL
select quote_ident(d.datname)
from pg_database d
where d.datname like 'lt\_%'
  and not d.datistemplate
  and not exists (select 1 from pg_stat_activity a where a.datid = d.oid)
  $age_condition
order by d.datname
SQL
}

drop_stale_test_databases() {
    local admin_url names name dropped=0 failed=0
    admin_url=$(ll_admin_database_url) || return 0
    if ! names=$(psql -X -w -At -d "$admin_url" -c "$(stale_test_databases_sql 1)" 2>/dev/null); then
        echo "warning: cannot read database ages; dropping every idle per-test lt_ database" >&2
        names=$(psql -X -w -At -d "$admin_url" -c "$(stale_test_databases_sql 0)") || {
            echo "warning: cannot list stale test databases; skipping the clean-up" >&2
            return 0
        }
    fi
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        if psql -X -w -q -d "$admin_url" -c "drop database if exists $name" >/dev/null 2>&1; then
            dropped=$((dropped + 1))
        else
            failed=$((failed + 1))
        fi
    done <<<"$names"
    if [ $((dropped + failed)) -gt 0 ]; then
        echo "==> dropped $dropped stale test database(s)$([ "$failed" -eq 0 ] || echo ", $failed could not be dropped")" >&2
    fi
}

drop_stale_test_databases

status=0
cargo test --workspace --locked "$@" || status=$?

elapsed=$(($(date +%s) - started_at))
printf '==> scripts/test.sh: cargo test exited with %d; wall time %dm%02ds\n' \
    "$status" $((elapsed / 60)) $((elapsed % 60)) >&2
exit "$status"
