#!/usr/bin/env bash
# The dashboard page over 1,000,000 SQLite records (not run in CI): first-render time in
# headless Chromium, the bytes of the first load, and the server's CPU per live client
# while 1,000 records a second are written. Needs chromium and chromedriver (Debian
# packages `chromium` and `chromium-driver`).
#
#   bash benches/dashboard_load.sh
#
# The data set is the one `benches/queries.rs` generates and keeps (made here first when
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
DB="$TARGET/bench-queries-1000000.db"
if [ ! -f "$DB" ]; then
    echo "== generating 1,000,000 records into $DB (once)"
    env -u TOWER_USAGE_POSTGRES_URL RECORDS=1000000 \
        cargo bench --bench queries --features postgres -- --test >/dev/null
fi
DASHBOARD_DB="$DB" cargo bench --bench dashboard --features dashboard
