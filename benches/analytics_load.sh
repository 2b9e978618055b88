#!/usr/bin/env bash
# Load check of the analytics HTTP API (not run in CI): `GET /dashboard` over 1,000,000
# records, 16 connections for 20 seconds, against the `analytics_server` example built in
# release mode, while a second client makes 1,000 metered requests a second (so 1,000
# records a second are written into the range asked about). Each round runs once without
# the answer cache and once with it; afterwards the cached server's answer is compared
# with a fresh uncached server's over the same database, byte for byte.
#
#   bash benches/analytics_load.sh                   # SQLite
#   BACKEND=postgres bash benches/analytics_load.sh  # PostgreSQL (TOWER_USAGE_POSTGRES_URL)
#   REDIS_URL=redis://127.0.0.1:6379/ bash benches/analytics_load.sh
#       # adds a round per pass with the cache's write log shared through Redis
#
# The range runs from the data set's first day (2026-10-02) to the end of tomorrow (UTC),
# so that it holds both the generated records and those written during the run.
# Needs wrk (Debian package `wrk`). The data set is the one `benches/queries.rs`
# generates and keeps (made here first when missing); each SQLite round starts from a
# copy of it. Rate limits are turned off: this measures the endpoint, not the limiter.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-1000000}"
BACKEND="${BACKEND:-sqlite}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
DB="$TARGET/bench-queries-$RECORDS.db"
ADDR="${ADDR:-127.0.0.1:3901}"
CHECK_ADDR="${CHECK_ADDR:-127.0.0.1:3902}"
CONNECTIONS="${CONNECTIONS:-16}"
SECONDS_RUN="${SECONDS_RUN:-20}"
ROUNDS="${ROUNDS:-2}"
# Six writer connections, each waiting 5 ms between requests: at most 1,200 a second
# (the rate reached is printed).
WRITERS=6
WRITE_DELAY_MS=5

command -v wrk >/dev/null || { echo "needs wrk on the PATH" >&2; exit 2; }

case "$BACKEND" in
sqlite)
    if [ ! -f "$DB" ]; then
        echo "== generating $RECORDS records into $DB (once)"
        env -u TOWER_USAGE_POSTGRES_URL RECORDS="$RECORDS" \
            cargo bench --bench queries --features postgres -- --test >/dev/null
    fi
    ;;
postgres)
    : "${TOWER_USAGE_POSTGRES_URL:?set TOWER_USAGE_POSTGRES_URL}"
    PG_URL="${TOWER_USAGE_POSTGRES_URL%/*}/tower_usage_bench_$RECORDS"
    if ! psql "$PG_URL" -c 'SELECT 1' >/dev/null 2>&1; then
        echo "== generating $RECORDS records into PostgreSQL (once)"
        RECORDS="$RECORDS" cargo bench --bench queries --features postgres -- --test >/dev/null
    fi
    ;;
*) echo "BACKEND is sqlite or postgres" >&2; exit 2 ;;
esac

echo "== building the example (release)"
cargo build --release --example analytics_server --features api,postgres,redis

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/writer.lua" <<EOF
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/chat", { ["x-user-id"] = "load-" .. (n % 50) })
end
delay = function() return $WRITE_DELAY_MS end
EOF

TO="$(date -u -d tomorrow +%F)"
PATH_QUERY="/api/analytics/dashboard?from=2026-10-02&to=$TO"
SECRET="load-check-secret-load-check-secret-0123"

# start_server CACHE_MB ADDR LOG [SHARED_REDIS_URL]: the example over the round's
# database; sets STARTED (its pid) and STARTED_TOKEN (the admin token it printed) once it
# listens.
start_server() {
    env -u REDIS_URL ${4:+REDIS_URL="$4"} DATABASE_URL="$URL" ADDR="$2" ANALYTICS_RATE_LIMIT=off \
        ANSWER_CACHE_MB="$1" JWT_SECRET="$SECRET" \
        "$TARGET/release/examples/analytics_server" >"$3" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    for _ in $(seq 1 120); do
        grep -q '^ADMIN_TOKEN=' "$3" && break
        sleep 0.5
    done
    STARTED_TOKEN="$(grep '^ADMIN_TOKEN=' "$3" | cut -d= -f2)"
    [ -n "$STARTED_TOKEN" ] || { cat "$3" >&2; exit 1; }
}

fetch() { curl -sf -H "Authorization: Bearer $TOKEN" "http://$1$PATH_QUERY"; }

round() {
    local cache_mb="$1" label="$2" redis="${3:-}"
    if [ "$BACKEND" = sqlite ]; then
        rm -f "$WORK"/load.db*
        cp "$DB" "$WORK/load.db"
        URL="sqlite://$WORK/load.db"
    else
        URL="$PG_URL"
    fi
    if [ -n "$redis" ]; then
        redis-cli -u "$redis" --scan --pattern 'tower-usage-demo:*' | xargs -r redis-cli -u "$redis" del >/dev/null
    fi
    start_server "$cache_mb" "$ADDR" "$WORK/server.log" "$redis"
    local server=$STARTED
    TOKEN="$STARTED_TOKEN"
    fetch "$ADDR" >/dev/null
    echo "== $label: GET /dashboard, $CONNECTIONS connections, ${SECONDS_RUN}s, $BACKEND, $RECORDS records, writer on"
    wrk -t1 -c"$WRITERS" -d"$((SECONDS_RUN + 2))s" -s "$WORK/writer.lua" \
        "http://$ADDR" >"$WORK/writer.out" &
    local writer=$!
    sleep 1
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency \
        -H "Authorization: Bearer $TOKEN" "http://$ADDR$PATH_QUERY" | tee "$WORK/reader.out" |
        grep -E 'Requests/sec|^ +(50|90|99)%|Non-2xx|requests in'
    wait "$writer"
    echo "   writer: $(grep -E 'Requests/sec' "$WORK/writer.out" | awk '{print $2}') requests/s"
    # Exactness: once the writer stopped and the recorder flushed, the answer equals a
    # fresh uncached server's.
    sleep 1
    fetch "$ADDR" >"$WORK/served.json"
    start_server 0 "$CHECK_ADDR" "$WORK/check.log"
    local checker=$STARTED
    fetch "$CHECK_ADDR" >"$WORK/fresh.json"
    if cmp -s "$WORK/served.json" "$WORK/fresh.json"; then
        echo "   answer after the run: equal to an uncached server's ($(wc -c <"$WORK/fresh.json") bytes)"
    else
        echo "   answer after the run DIFFERS from an uncached server's" >&2
        exit 1
    fi
    kill "$server" "$checker"
    wait "$server" "$checker" 2>/dev/null || true
}

for r in $(seq 1 "$ROUNDS"); do
    round 0 "round $r, no cache"
    round 64 "round $r, answer cache"
    if [ -n "${REDIS_URL:-}" ]; then
        round 64 "round $r, answer cache shared through Redis" "$REDIS_URL"
    fi
done
