#!/usr/bin/env bash
# Load check of the analytics HTTP API (not run in CI): `GET /dashboard` for 30 days over
# 1,000,000 SQLite records, 16 connections for 20 seconds, against the
# `analytics_server` example built in release mode. Prints requests/s and latency
# percentiles (p99 among them).
#
#   bash benches/analytics_load.sh            # RECORDS=10000000 for a larger data set
#
# Needs wrk (Debian package `wrk`) or oha (`cargo install oha`). The data set is the one
# `benches/queries.rs` generates and keeps (made here first when missing). Rate limits
# are turned off: this measures the endpoint, not the limiter.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-1000000}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
DB="$TARGET/bench-queries-$RECORDS.db"
ADDR="${ADDR:-127.0.0.1:3901}"
CONNECTIONS="${CONNECTIONS:-16}"
SECONDS_RUN="${SECONDS_RUN:-20}"

if ! command -v wrk >/dev/null && ! command -v oha >/dev/null; then
    echo "needs wrk or oha on the PATH" >&2
    exit 2
fi

if [ ! -f "$DB" ]; then
    echo "== generating $RECORDS records into $DB (once)"
    env -u TOWER_USAGE_POSTGRES_URL RECORDS="$RECORDS" \
        cargo bench --bench queries --features postgres -- --test >/dev/null
fi

echo "== building the example (release)"
cargo build --release --example analytics_server --features api

LOG="$(mktemp)"
DATABASE_URL="sqlite://$DB" ADDR="$ADDR" ANALYTICS_RATE_LIMIT=off \
    JWT_SECRET="load-check-secret-load-check-secret-0123" \
    "$TARGET/release/examples/analytics_server" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -f "$LOG"' EXIT

for _ in $(seq 1 60); do
    grep -q '^ADMIN_TOKEN=' "$LOG" && break
    sleep 1
done
TOKEN="$(grep '^ADMIN_TOKEN=' "$LOG" | cut -d= -f2)"
if [ -z "$TOKEN" ]; then
    cat "$LOG" >&2
    exit 1
fi

# The data set covers the 30 days before 2026-11-01 (UTC).
URL="http://$ADDR/api/analytics/dashboard?from=2026-10-02&to=2026-11-01"
STATUS="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL")"
if [ "$STATUS" != 200 ]; then
    echo "the dashboard answered $STATUS" >&2
    exit 1
fi

echo "== GET /dashboard, $CONNECTIONS connections, ${SECONDS_RUN}s, $RECORDS records"
if command -v wrk >/dev/null; then
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency \
        -H "Authorization: Bearer $TOKEN" "$URL"
else
    oha -c "$CONNECTIONS" -z "${SECONDS_RUN}s" --no-tui \
        -H "Authorization: Bearer $TOKEN" "$URL"
fi
