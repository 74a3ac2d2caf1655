#!/usr/bin/env bash
# The console's sites page with 10,000 sites: how long until the first page is rendered
# in headless Chromium (a benchmark, not a test). Starts its own gateway on loopback in
# a temporary directory, imports N sites (default 10000) and runs bench-sites.mjs.
#   usage: tests/console/bench-sites.sh [N]      (after cargo build; tests/console/setup.sh)
#   env:   WPGATE_BIN (default target/debug/wpgate), WPGATE_BROWSER_DIR, RUNS (default 10),
#          HEALTH=1: the health prober checks every site first (each unreachable: port 9
#          on loopback refuses), as in a real fleet; the page's health column reads
#          each shown site's health from the admin API
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10000}
bin=${WPGATE_BIN:-target/debug/wpgate}
export WPGATE_BROWSER_DIR=${WPGATE_BROWSER_DIR:-/var/tmp/wpgate-browser}
tests/console/setup.sh
work=$(mktemp -d /tmp/wpgate-console-bench.XXXXXX)
pid=""
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
proxy=$(port)
admin=$(port)
health=false
[ -z "${HEALTH:-}" ] || health=true
cat >"$work/wpgate.toml" <<TOML
data_dir = "$work/data"
[listen]
proxy = "127.0.0.1:$proxy"
admin = "127.0.0.1:$admin"
[health]
enabled = $health
interval = "1h"
concurrency = 64
timeout = "1s"
[log]
format = "json"
level = "warn"
TOML
python3 -c "
import json
for i in range($n):
    print(json.dumps({'id': 'site-%05d' % i, 'name': 'Site %d' % i, 'upstream': 'http://127.0.0.1:9/s%d' % i, 'auth': 'none'}))
" >"$work/sites.jsonl"
w() { "$bin" --config "$work/wpgate.toml" "$@"; }
started=$(date +%s.%N)
w site import "$work/sites.jsonl" >/dev/null
echo "imported $n sites in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s" >&2
token=$(w admin token create --scope read --label bench 2>/dev/null)
w serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$admin/healthz" >/dev/null && break
    sleep 0.1
done
if [ -n "${HEALTH:-}" ]; then
    for _ in $(seq 600); do
        checked=$(curl -fs "http://127.0.0.1:$admin/metrics" | grep -c '^wpgate_site_health{.*} 1$' || true)
        [ "$checked" -ge "$n" ] && break
        sleep 0.5
    done
    echo "health board: $checked sites checked" >&2
fi
CONSOLE_ADMIN="http://127.0.0.1:$admin" CONSOLE_READ_TOKEN="$token" CONSOLE_SITES="$n" \
    node tests/console/bench-sites.mjs
