#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable whatever
# else this machine is doing (the same binary and inputs give the same count), so it
# tells apart changes of a few percent that benches/load.sh's CPU time cannot.
#
#   bare   bare Pingora proxy (benches/bare_pingora.rs): the framework's floor, with
#          Pingora's defaults
#   same   the same with the Pingora settings wpgate runs with (--like-wpgate)
#   key    wpgate, API key + credential injection (as load.sh's target d)
#   jwt    wpgate, HS256 JWT with iss/aud/lifetime checks (as load.sh's target e)
#
# Each proxy runs under callgrind; WARMUP requests fill its caches and its upstream
# pool, and a dump zeroes the counts; then exactly REQUESTS requests go over one
# keep-alive connection, and the count is dumped. Reported: Ir per
# request of each target, and the ratios key/bare and jwt/bare and jwt/key. With
# TOP=N, the N functions with the largest inclusive counts of each wpgate target
# (callgrind_annotate) are printed too, to see where the instructions go.
#
# Every target gets the key target's request, byte for byte (the baselines forward its
# X-Website-ID and X-API-Key): the ratios compare the same work on the same bytes.
#
# Env: TARGETS="bare same key jwt"  REQUESTS=2000  WARMUP=200  TOP=0
#      OUT=target/callgrind-results.json  PORT_BASE=27280 (PORT_BASE..+3 on 127.0.0.1)
#      BARE_PINGORA=/path, WPGATE=/path: use these binaries instead of building them.
#      KEEP=dir: keep the callgrind dumps there.
# Only loopback traffic; every wait is bounded; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=${TARGETS:-"bare same key jwt"}
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
TOP=${TOP:-0}
OUT=${OUT:-target/callgrind-results.json}
PORT_BASE=${PORT_BASE:-27280}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
P_STATIC=$PORT_BASE
P_PROXY=$((PORT_BASE + 1))
P_ADMIN=$((PORT_BASE + 2))

wants() { [[ " $TARGETS " == *" $1 "* ]]; }
die() { echo "callgrind.sh: $*" >&2; exit 1; }

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v valgrind >/dev/null || need+=(valgrind)
if [[ ${#need[@]} -gt 0 ]]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
for tool in valgrind callgrind_control callgrind_annotate nginx python3; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

if { wants bare || wants same; } && [[ -z ${BARE_PINGORA:-} ]]; then
    cargo build --release --example bare_pingora
    BARE_PINGORA=$TARGET_DIR/release/examples/bare_pingora
fi
if { wants key || wants jwt; } && [[ -z ${WPGATE:-} ]]; then
    cargo build --release --bin wpgate
    WPGATE=$TARGET_DIR/release/wpgate
fi

tmp=$(mktemp -d /tmp/wpgate-callgrind.XXXXXX)
# Under valgrind a start-up (60 s) and a shut-down (10 s) take a while.
STOP_WAIT=100 PORT_WAIT=600
# shellcheck source=benches/lib.sh
. benches/lib.sh
trap cleanup EXIT
for port in "$P_STATIC" "$P_PROXY" "$P_ADMIN"; do
    ! port_open "$port" || die "port $port already in use (set PORT_BASE)"
done

# The upstream: the same static JSON answer as load.sh's.
REQ_PATH=/wp-json/wp/v2/posts
BODY='{"id":1,"name":"bench","status":"publish","link":"http://127.0.0.1/bench","tags":[1,2,3]}'
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$P_STATIC;
        location / { default_type application/json; return 200 '$BODY'; }
    }
}
EOF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" >/dev/null 2>&1 &
pids+=("$!")
wait_port "$P_STATIC" "$!" "$tmp/nginx/error.log"

JWT=$(mint_jwt)
KEY=""
if wants key || wants jwt; then
    KEY=$(setup_wpgate "$WPGATE" "$tmp" "$P_PROXY" "$P_ADMIN")
    [[ -n $KEY ]] || die "wpgate set-up failed"
fi

# Sends $1 requests over one keep-alive connection to $2 with headers $3.. ("Name: value");
# fails unless every answer is a 200.
client() {
    python3 - "$@" <<'PY'
import http.client, sys
n, port, path, headers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
hdrs = dict(h.split(": ", 1) for h in headers)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for i in range(n):
    conn.request("GET", path, headers=hdrs)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"request {i}: HTTP {r.status}")
PY
}

declare -A ir_of=()
# $1 target name, $2.. the proxy command line; the client's headers in the array hdrs.
measure() {
    local name=$1 log=$tmp/$1.log pid dump
    shift
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.%p.out" \
        "$@" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$P_PROXY" "$pid" "$log"
    echo "== $name: $WARMUP warm-up requests, then $REQUESTS counted" >&2
    client "$WARMUP" "$P_PROXY" "$REQ_PATH" "${hdrs[@]}" || { cat "$log" >&2; die "$name: warm-up failed"; }
    # A dump zeroes the counters: the second one holds the counted requests alone.
    callgrind_control -d "warm-up" "$pid" >/dev/null 2>&1
    client "$REQUESTS" "$P_PROXY" "$REQ_PATH" "${hdrs[@]}" || { cat "$log" >&2; die "$name: run failed"; }
    callgrind_control -d "$name" "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    local i
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    while port_open "$P_PROXY"; do sleep 0.1; done
    # The dump made by -d (its description is the target's name).
    dump=$(grep -l "^desc: Trigger: .*dump $name\$" "$tmp/$name".*.out* | head -n 1) ||
        die "$name: no callgrind dump"
    local total
    total=$(awk '/^summary:|^totals:/ {print $2; exit}' "$dump")
    [[ -n $total ]] || die "$name: no total in $dump"
    ir_of[$name]=$total
    echo "   $name: $total instructions, $((total / REQUESTS)) per request" >&2
    if [[ $TOP -gt 0 && $name != bare ]]; then
        callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n "1,$((TOP + 25))p" >&2
    fi
    if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP"; cp "$dump" "$KEEP/$name.callgrind.out"; fi
}

if wants bare; then
    # The key target's request, byte for byte: the proxy parses, forwards and drops the
    # same client headers (a key of the same shape when no wpgate is set up).
    hdrs=("X-Website-ID: bench" "X-API-Key: ${KEY:-wpg_AAAAAAAAAAAA_$(printf 'a%.0s' {1..43})}")
    measure bare "$BARE_PINGORA" --listen "127.0.0.1:$P_PROXY" --upstream "127.0.0.1:$P_STATIC"
fi
if wants same; then
    hdrs=("X-Website-ID: bench" "X-API-Key: ${KEY:-wpg_AAAAAAAAAAAA_$(printf 'a%.0s' {1..43})}")
    measure same "$BARE_PINGORA" --listen "127.0.0.1:$P_PROXY" --upstream "127.0.0.1:$P_STATIC" \
        --like-wpgate
fi
if wants key; then
    hdrs=("X-Website-ID: bench" "X-API-Key: $KEY")
    measure key "$WPGATE" --config "$tmp/wpgate.toml" serve
fi
if wants jwt; then
    hdrs=("X-Website-ID: benchjwt" "Authorization: Bearer $JWT")
    measure jwt "$WPGATE" --config "$tmp/wpgate.toml" serve
fi

per_req() { awk -v t="${ir_of[$1]:-0}" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }'; }
ratio() {
    [[ -n ${ir_of[$1]:-} && -n ${ir_of[$2]:-} ]] || { echo null; return; }
    awk -v a="${ir_of[$1]}" -v b="${ir_of[$2]}" 'BEGIN { printf "%.3f", a / b }'
}
cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "callgrind: instructions per request ($REQUESTS requests after $WARMUP warm-up; $cpu)"
echo
echo "| target | Ir/request |"
echo "|---|---|"
for name in bare same key jwt; do
    [[ -n ${ir_of[$name]:-} ]] && echo "| $name | $(per_req "$name") |"
done
echo
echo "key/bare $(ratio key bare)   jwt/bare $(ratio jwt bare)   jwt/key $(ratio jwt key)"
echo "with the same Pingora settings: same/bare $(ratio same bare)   key/same $(ratio key same)   jwt/same $(ratio jwt same)"

json_ir() { if [[ -n ${ir_of[$1]:-} ]]; then per_req "$1"; else echo null; fi; }
mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<EOF
{"cpu": "$cpu", "requests": $REQUESTS, "warmup": $WARMUP,
 "ir_per_request": {"bare": $(json_ir bare), "same": $(json_ir same), "key": $(json_ir key), "jwt": $(json_ir jwt)},
 "ratios": {"key_bare": $(ratio key bare), "jwt_bare": $(ratio jwt bare), "jwt_key": $(ratio jwt key),
            "same_bare": $(ratio same bare), "key_same": $(ratio key same), "jwt_same": $(ratio jwt same)}}
EOF
echo "results: $OUT"
