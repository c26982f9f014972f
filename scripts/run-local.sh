#!/usr/bin/env bash
#
# Runs the whole product on this machine:
#   1. makes PostgreSQL and NATS (JetStream) available, installing and starting them
#      from the distribution's packages when missing (scripts/services.sh);
#   2. builds the `loyalty` binary (release) and applies the migrations;
#   3. generates the secret keys once into .local/keys.env (master, blind-index and JWT
#      keys, the WhatsApp app secret and verify token; git-ignored) unless the
#      environment or .env sets them;
#   4. creates a demo tenant once (vendor code DEMOSHOP, with an owner account) and keeps
#      its id, API key and owner's login in .local/demo-tenant.json (git-ignored; delete it
#      to get a fresh tenant);
#   5. prints the API key and a curl example, then runs `loyalty all` (API, WhatsApp
#      webhook ingest, conversation processor, notifier, WhatsApp sandbox, relay, balances
#      projector and the expiry schedule in one process);
#   6. once the API answers, gives the demo tenant two rewards and the demo customer
#      (+2348012345678) a purchase, once, and prints a three-line WhatsApp conversation to
#      paste in another terminal (`loyalty sandbox say`). Ctrl-C stops `loyalty all`.
#
# Settings come from the environment, then from .env when present (see .env.example).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=scripts/services.sh
source scripts/services.sh

load_dotenv .env
ensure_local_keys .local/keys.env
ensure_services

echo "==> cargo build --release --bin loyalty" >&2
cargo build --release --bin loyalty
loyalty="$CARGO_TARGET_DIR/release/loyalty"

echo "==> loyalty migrate" >&2
"$loyalty" migrate

# Which database a stored demo tenant lives in: DATABASE_URL without its password.
database_label=$(printf '%s' "$DATABASE_URL" | sed -E 's#^([a-z]+://[^:@/]*):[^@/]*@#\1@#')
tenant_file=.local/demo-tenant.json

json_field() { # json_field FIELD FILE
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json, sys; print(json.load(open(sys.argv[2])).get(sys.argv[1], ""))' "$1" "$2"
    else
        sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$2"
    fi
}

# The tenant is reused when the file exists, was written for this database, and its
# tenant is still there (the database may have been dropped and migrated afresh).
tenant_still_exists() {
    local tenant_id
    tenant_id=$(json_field tenant_id "$tenant_file")
    [[ $tenant_id =~ ^[0-9a-f-]{36}$ ]] || return 1
    [ "$(psql -X -w -At -d "$DATABASE_URL" \
        -c "select 1 from tenant_heads where tenant_id = '$tenant_id'" 2>/dev/null)" = 1 ]
}
if [ -f "$tenant_file" ] && [ "$(json_field database "$tenant_file")" = "$database_label" ] \
    && tenant_still_exists; then
    echo "==> reusing the demo tenant in $tenant_file" >&2
else
    # DEMOSHOP, unless a demo tenant whose file was deleted already holds it.
    vendor_code=DEMOSHOP
    if [ "$(psql -X -w -At -d "$DATABASE_URL" \
        -c "select 1 from tenants where vendor_code = 'DEMOSHOP'" 2>/dev/null)" = 1 ]; then
        vendor_code="DEMO$(date +%H%M%S)"
    fi
    owner_email="owner-$(date +%s)@demo-shop.example"
    owner_password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "==> loyalty tenant create --name \"Demo Shop\" --vendor-code $vendor_code --owner-email $owner_email --json" >&2
    created=$(LOYALTY_OWNER_PASSWORD="$owner_password" "$loyalty" tenant create --name "Demo Shop" \
        --vendor-code "$vendor_code" --owner-email "$owner_email" --json | grep '^{' | tail -n 1)
    [ -n "$created" ] || { echo "error: loyalty tenant create printed no JSON line" >&2; exit 1; }
    mkdir -p .local
    # The API key is a secret: keep the file private to this user.
    (
        umask 077
        printf '%s' "$created" >"$tenant_file.new"
        tenant_id=$(json_field tenant_id "$tenant_file.new")
        api_key=$(json_field api_key "$tenant_file.new")
        printf '{"tenant_id":"%s","api_key":"%s","database":"%s","owner_email":"%s","owner_password":"%s"}\n' \
            "$tenant_id" "$api_key" "$database_label" "$owner_email" "$owner_password" >"$tenant_file"
        rm -f "$tenant_file.new"
    )
fi
tenant_id=$(json_field tenant_id "$tenant_file")
api_key=$(json_field api_key "$tenant_file")
if [ -z "$tenant_id" ] || [ -z "$api_key" ]; then
    echo "error: $tenant_file has no tenant_id/api_key; delete it and run again" >&2
    exit 1
fi

http_addr=${LOYALTY_HTTP_ADDR:-127.0.0.1:8080}
http_port=${http_addr##*:}
http_host=${http_addr%:*}
case "$http_host" in
    0.0.0.0 | '') http_host=127.0.0.1 ;;
    '[::]') http_host='[::1]' ;;
esac
base_url="http://$http_host:$http_port"
if [ "$http_port" = 0 ]; then
    base_url="http://ADDR  # port 0: use the address from the 'listening on' log line"
elif _ll_tcp_open "$http_host" "$http_port"; then
    echo "error: something already listens on $http_addr (another 'loyalty all'?);" \
        "stop it or set LOYALTY_HTTP_ADDR" >&2
    exit 1
fi

cat <<EOF

Demo tenant $tenant_id (Demo Shop, NGN), stored in $tenant_file
API key: $api_key

Try it from another terminal once 'listening on' appears below:

  KEY='$api_key'
  BASE=$base_url
  # Enrol a customer (201; 409 when already enrolled -- both bodies carry customer_id).
  CUSTOMER_ID=\$(curl -s -X POST "\$BASE/v1/customers" \\
    -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' \\
    -d '{"phone":"+2348012345678"}' | sed -n 's/.*"customer_id":"\\([^"]*\\)".*/\\1/p')
  # Log a purchase of 2,500.00 NGN (amounts in kobo); repeating it with the same
  # Idempotency-Key returns the first response and awards nothing new.
  curl -s -X POST "\$BASE/v1/purchases" \\
    -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: demo-purchase-1' \\
    -d "{\\"customer_id\\":\\"\$CUSTOMER_ID\\",\\"amount_minor\\":250000,\\"line_items\\":[{\\"sku\\":\\"A1\\",\\"quantity\\":1,\\"unit_price_minor\\":250000}]}"
  # Balance, lots and history.
  curl -s "\$BASE/v1/customers/\$CUSTOMER_ID" -H "Authorization: Bearer \$KEY"
  curl -s "\$BASE/v1/customers/\$CUSTOMER_ID/history" -H "Authorization: Bearer \$KEY"

EOF

ingest_addr=${LOYALTY_INGEST_ADDR:-127.0.0.1:8081}
sandbox_addr=${LOYALTY_SANDBOX_ADDR:-127.0.0.1:8090}
# The notifier sends to the sandbox (which `loyalty all` then starts in-process) unless
# LOYALTY_WHATSAPP_API_BASE_URL says otherwise (Meta: https://graph.facebook.com).
export LOYALTY_WHATSAPP_API_BASE_URL=${LOYALTY_WHATSAPP_API_BASE_URL:-http://$sandbox_addr}
ingest_host=${ingest_addr%:*}
case "$ingest_host" in 0.0.0.0 | '') ingest_host=127.0.0.1 ;; esac
# The demo's `say` lines name the addresses only when they are not the defaults.
say_env=""
[ "$sandbox_addr" = 127.0.0.1:8090 ] || say_env="LOYALTY_SANDBOX_ADDR=$sandbox_addr "
[ "$ingest_addr" = 127.0.0.1:8081 ] \
    || say_env="${say_env}LOYALTY_SANDBOX_WEBHOOK_URL=http://$ingest_host:${ingest_addr##*:}/webhooks/whatsapp "
demo_phone=+2348012345678
vendor_code=$(psql -X -w -At -d "$DATABASE_URL" \
    -c "select vendor_code from tenants where tenant_id = '$tenant_id'" 2>/dev/null || true)

# Two rewards, a tier ladder and a purchase for the demo customer, once, so that POINTS and
# REWARDS in the chat show something. Idempotent: rewards only when the catalogue is empty, the purchase
# under a fixed Idempotency-Key.
seed_demo() {
    local customer_id token
    customer_id=$(curl -s -X POST "$base_url/v1/customers" \
        -H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
        -d "{\"phone\":\"$demo_phone\"}" | sed -n 's/.*"customer_id":"\([^"]*\)".*/\1/p')
    [ -n "$customer_id" ] || { echo "warning: could not enrol the demo customer" >&2; return 0; }
    curl -s -o /dev/null -X POST "$base_url/v1/purchases" \
        -H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
        -H 'Idempotency-Key: demo-seed-purchase' \
        -d "{\"customer_id\":\"$customer_id\",\"amount_minor\":500000}"
    if curl -s "$base_url/v1/rewards" -H "Authorization: Bearer $api_key" | grep -q '"reward_id"'; then
        return 0
    fi
    local owner_email owner_password
    owner_email=$(json_field owner_email "$tenant_file")
    owner_password=$(json_field owner_password "$tenant_file")
    if [ -z "$owner_email" ] || [ -z "$owner_password" ]; then
        echo "note: $tenant_file has no owner login (an older file): no demo rewards;" \
            "delete it for a fresh demo tenant" >&2
        return 0
    fi
    # Rewards are the owner's to create (an API key is staff).
    token=$(curl -s -X POST "$base_url/v1/auth/login" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$owner_email\",\"password\":\"$owner_password\"}" \
        | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [ -n "$token" ] || { echo "warning: the demo owner could not log in: no demo rewards" >&2; return 0; }
    local reward key rest name cost
    for reward in 'coffee:Free coffee:20' 'tote:Tote bag:60'; do
        key=${reward%%:*} rest=${reward#*:}
        name=${rest%%:*} cost=${rest##*:}
        curl -s -o /dev/null -X POST "$base_url/v1/rewards" \
            -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -H "Idempotency-Key: demo-reward-$key" \
            -d "{\"name\":\"$name\",\"points_cost\":$cost}"
    done
    # A tier ladder, so that POINTS shows a tier and a large purchase earns an upgrade.
    curl -s -o /dev/null -X PUT "$base_url/v1/tiers" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"basis":"points_earned","window":{"kind":"calendar_year"},"tiers":[{"id":"member","name":"Member","threshold":0},{"id":"silver","name":"Silver","threshold":200}]}'
}

echo "==> loyalty all (Ctrl-C stops it)" >&2
# In the background so that the demo data can be added through the API once it answers;
# a script's background job ignores SIGINT, so Ctrl-C reaches it through this trap.
"$loyalty" all &
loyalty_pid=$!
trap 'kill -TERM "$loyalty_pid" 2>/dev/null || true' INT TERM
if [ "$http_port" != 0 ] && command -v curl >/dev/null 2>&1; then
    for _ in $(seq 1 300); do
        kill -0 "$loyalty_pid" 2>/dev/null || break
        curl -fs -o /dev/null "$base_url/health" && break
        sleep 0.1
    done
    if kill -0 "$loyalty_pid" 2>/dev/null && curl -fs -o /dev/null "$base_url/health"; then
        seed_demo
        cat <<EOF

Then chat with it as the demo customer (the sandbox stands in for WhatsApp), from another
terminal in $repo_root:

  $say_env$loyalty sandbox say --from $demo_phone "JOIN ${vendor_code:-DEMOSHOP}"
  $say_env$loyalty sandbox say --from $demo_phone "points"
  $say_env$loyalty sandbox say --from $demo_phone "rewards"

EOF
    fi
fi
status=0
wait "$loyalty_pid" || status=$?
# A signal interrupts the first wait: wait again for the graceful stop.
if kill -0 "$loyalty_pid" 2>/dev/null; then
    wait "$loyalty_pid" || status=$?
fi
exit "$status"
