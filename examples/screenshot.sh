#!/usr/bin/env bash
# Makes examples/dashboard.png, the README's picture of the dashboard page: the
# analytics example over 60 days of its generated demo records (DEMO_DAYS; the first 30
# are the previous period the headline numbers compare with) plus a few
# requests sent to it now, as an admin sees it in headless Chromium.
#
#   bash examples/screenshot.sh
#
# Needs chromium, chromedriver (Debian: chromium, chromium-driver), curl and jq.
set -euo pipefail

cd "$(dirname "$0")/.."
out=$PWD/examples/dashboard.png
work=$(mktemp -d)
port=3471
driver_port=9571
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cargo build -q --release --example analytics_server --features dashboard,sqlite
bin=$(cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)/release/examples/analytics_server

(cd "$work" && DEMO_DAYS=60 ADDR=127.0.0.1:$port JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
    exec "$bin" >"$work/out" 2>"$work/err") &
pids+=($!)
for _ in $(seq 100); do grep -q '^ADMIN_TOKEN=' "$work/out" 2>/dev/null && break; sleep 0.2; done
token=$(sed -n 's/^ADMIN_TOKEN=//p' "$work/out")
[ -n "$token" ] || { cat "$work/err"; exit 1; }

# Traffic now, so that the live view and the last hour have something; alice's sixth
# call is over her demo budget, which trips the demo alert rule at its next evaluation
# (every 15 seconds).
for user in alice bob carol alice dave alice alice alice alice; do
    curl -s -X POST -H "x-user-id: $user" "127.0.0.1:$port/chat" >/dev/null
done
sleep 16

chromedriver --port=$driver_port >/dev/null 2>&1 &
pids+=($!)
wd() { curl -s -X "$1" -H 'content-type: application/json' "127.0.0.1:$driver_port$2" ${3:+-d "$3"}; }
session=""
for _ in $(seq 100); do
    session=$(wd POST /session '{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{
        "binary":"/usr/bin/chromium","args":["--headless=new","--no-sandbox","--disable-gpu",
        "--no-first-run","--disable-dev-shm-usage","--window-size=1280,2500","--hide-scrollbars"]}}}}' \
        2>/dev/null | jq -r '.value.sessionId // empty' 2>/dev/null || true)
    [ -n "$session" ] && break
    sleep 0.2
done
[ -n "$session" ] || { echo "chromedriver did not start a session" >&2; exit 1; }
run() { wd POST "/session/$session/execute/sync" "$(jq -n --arg s "$1" --arg t "$token" '{script:$s,args:[$t]}')" | jq -r .value; }

wd POST "/session/$session/url" "{\"url\":\"http://127.0.0.1:$port/api/analytics\"}" >/dev/null
run "document.getElementById('token').value = arguments[0]; document.querySelector('#sign-in button').click();" >/dev/null
for _ in $(seq 100); do [ "$(run 'return document.body.dataset.rendered || ""')" != "" ] && break; sleep 0.2; done
# The live stream's first event fills the last hour.
sleep 3
wd GET "/session/$session/screenshot" | jq -r .value | base64 -d >"$out"
wd DELETE "/session/$session" >/dev/null
echo "wrote $out"
