#!/usr/bin/env bash
# Load benchmark of wpgate against its baselines, all in one run on this machine:
#   a  direct to a static nginx upstream (small JSON body)
#   b  nginx as a plain reverse proxy (1 worker, keepalive upstream)
#   c  bare Pingora proxy (benches/bare_pingora.rs): the framework's floor, with
#      Pingora's defaults
#   s  the same bare proxy with the Pingora settings wpgate runs with (--like-wpgate:
#      no downstream modules, and no work stealing, as both run one thread): what
#      those settings are worth
#   d  wpgate with API-key auth + credential injection, set up through its CLI
#   e  the same wpgate, a site that takes HS256 JWTs (iss/aud/lifetime checked)
#   f  reference: HAProxy 2.6 (Debian) checking the same JWT with jwt_verify, iss, aud
#      and exp, and setting the same Basic credential (1 thread); installed if missing
#   g  bare Pingora over HTTPS (its rustls listener, TLS 1.3, ECDSA P-256 certificate)
#   h  wpgate over HTTPS (listen.proxy_tls, the same certificate), API key as in (d)
#      wrk keeps its 64 connections open: (g) and (h) measure TLS record cost, not
#      handshakes.
#   Every target gets the same request: the path below and the headers of (d), an
#   X-Website-ID and an X-API-Key (a key of the same shape for the baselines, which
#   forward them), so that the ratios compare the same work on the same bytes.
#   k  another wpgate binary (WPGATE_BASE, e.g. a build of an older commit), API key as
#      in (d): a before/after comparison in one run (ratio d/k)
# Proxy and upstream share core 0, wrk runs on core 1. Reports requests/s, p50/p99
# latency and the proxy's CPU time per request (utime+stime from /proc, and each part),
# which varies far less between runs than requests/s on shared machines; targets are
# measured in interleaved rounds, so that the ratios compare like with like.
#
# Env: TARGETS="a b c s d e f g h"  DURATION=5 (s per run)  ROUNDS=4 (runs per target,
#      interleaved)  WARMUP=2 (s)  OUT=target/load-results.json
#      PORT_BASE=27180 (uses PORT_BASE..PORT_BASE+10 and, for callgrind, +20..+22 on 127.0.0.1)
#      BARE_PINGORA=/path, WPGATE=/path: use these binaries instead of building them.
#      WPGATE_BASE=/path: the binary of target k (required for k).
#      CALLGRIND=1: afterwards, benches/callgrind.sh counts the instructions per request
#      of c, d and e (those wanted) with the same binaries, CALLGRIND_REQUESTS=2000
#      each (0: skip); the report and OUT name the CPU model and carry these counts.
# Only loopback traffic; every wait is bounded; everything started is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

TARGETS=${TARGETS:-"a b c s d e f g h"}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-4}
WARMUP=${WARMUP:-2}
OUT=${OUT:-target/load-results.json}
CALLGRIND=${CALLGRIND:-1}
CALLGRIND_REQUESTS=${CALLGRIND_REQUESTS:-2000}
PORT_BASE=${PORT_BASE:-27180}
CONNS=64
TARGET_DIR=${CARGO_TARGET_DIR:-target}

P_STATIC=$PORT_BASE
P_NGINX=$((PORT_BASE + 1))
P_BARE=$((PORT_BASE + 2))
P_WPGATE=$((PORT_BASE + 3))
P_ADMIN=$((PORT_BASE + 4))
P_HAPROXY=$((PORT_BASE + 5))
P_BARE_TLS=$((PORT_BASE + 6))
P_WPGATE_TLS=$((PORT_BASE + 7))
P_BASE=$((PORT_BASE + 8))
P_BASE_ADMIN=$((PORT_BASE + 9))
P_BARE_SAME=$((PORT_BASE + 10))

wants() { [[ " $TARGETS " == *" $1 "* ]]; }
die() { echo "load.sh: $*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    echo "installing wrk and nginx-light" >&2
    apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi
if wants f && ! command -v haproxy >/dev/null; then
    echo "installing haproxy (reference for target f; its service is not started)" >&2
    made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
    [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
fi
for tool in wrk nginx curl taskset getconf; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ $(nproc) -ge 2 ]] || die "needs 2 cores (proxy on core 0, wrk on core 1)"
CLK_TCK=$(getconf CLK_TCK)
CPU_MODEL=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
# Other load on this 2-core machine skews everything: record it with the results.
LOADAVG_START=$(cut -d' ' -f1 /proc/loadavg)

# --- build (before starting anything, so the build does not compete for CPU) --
# (g) and (h) need bare_pingora too: it writes their test certificate.
if { wants c || wants s || wants g || wants h; } && [[ -z ${BARE_PINGORA:-} ]]; then
    cargo build --release --example bare_pingora
    BARE_PINGORA=$TARGET_DIR/release/examples/bare_pingora
fi
if wants k; then
    [[ -n ${WPGATE_BASE:-} && -x ${WPGATE_BASE:-} ]] || die "target k needs WPGATE_BASE=<wpgate binary>"
fi
if { wants d || wants e || wants h; } && [[ -z ${WPGATE:-} ]]; then
    cargo build --release --bin wpgate
    WPGATE=$TARGET_DIR/release/wpgate
fi

# --- process bookkeeping ----------------------------------------------------
tmp=$(mktemp -d /tmp/wpgate-load.XXXXXX)
# shellcheck source=benches/lib.sh
. benches/lib.sh
trap cleanup EXIT

for port in "$P_STATIC" "$P_NGINX" "$P_BARE" "$P_WPGATE" "$P_ADMIN" "$P_HAPROXY" \
    "$P_BARE_TLS" "$P_WPGATE_TLS" "$P_BASE" "$P_BASE_ADMIN" "$P_BARE_SAME"; do
    ! port_open "$port" || die "port $port already in use (set PORT_BASE)"
done

# CPU ticks (utime+stime, /proc/<pid>/stat fields 14 and 15) of a process and its
# direct children: nginx does its work in the worker, a child of the master.
# Prints "utime stime".
cpu_ticks() {
    local pid=$1 user=0 sys=0 p stat rest f
    for p in "$pid" $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        stat=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        rest=${stat##*) } # drop "pid (comm) ": comm may contain spaces
        read -r -a f <<<"$rest"
        # f[0] is field 3 (state), so fields 14 and 15 are f[11] and f[12].
        user=$((user + f[11]))
        sys=$((sys + f[12]))
    done
    echo "$user $sys"
}

# --- nginx instances, each with its own prefix, config, pid and logs ---------
# $1 name, $2 port, $3 http-block body (server/upstream blocks); sets started_pid.
# (Not called in $(...): a subshell would lose the pid bookkeeping.)
started_pid=""
start_nginx() {
    local name=$1 port=$2 body=$3 dir=$tmp/$1
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    # wrk and the proxies keep their connections: don't recycle them every 1000
    # requests (nginx's default), Pingora doesn't either.
    keepalive_requests 10000000;
    $body
}
EOF
    # -e: nginx opens its error log before reading the config; keep it off /var/log.
    taskset -c 0 nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
    wait_port "$port" "$started_pid" "$dir/error.log"
}

# Every target is asked for the same REST API path (wpgate forwards only the REST API).
REQ_PATH=/wp-json/wp/v2/posts
BODY='{"id":1,"name":"bench","status":"publish","link":"http://127.0.0.1/bench","tags":[1,2,3]}'

# The baselines' client headers: (d)'s, with a key of the same shape.
SAME=(-H "X-Website-ID: bench" -H "X-API-Key: wpg_aaaaaaaaaaaa_$(printf 'A%.0s' {1..43})")

# Static upstream: always needed.
start_nginx static "$P_STATIC" "
    server {
        listen 127.0.0.1:$P_STATIC;
        location / { default_type application/json; return 200 '$BODY'; }
    }"

# --- measurement ------------------------------------------------------------
results=()   # lines: name|rps|p50_us|p99_us|cpu_us_per_req|user_us_per_req|sys_us_per_req

# wrk prints latencies like 812.00us, 1.23ms, 1.01s: convert to µs.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /m$/) print n * 60e6; else if (v ~ /s$/) print n * 1e6; else print "null" }'
}

# Targets are measured in ROUNDS short runs each, interleaved (a b c ... a b c ...), so
# that a slow spell of this shared machine falls on every target alike; CPU time and
# requests are summed over a target's runs, latencies are the median of its runs.
planned=()
declare -A url_of=() pid_of=() hdrs_of=() reqs_of=() user_of=() sys_of=() p50s_of=() p99s_of=()

# $1 target letter, $2 url, $3 proxy pid ("" for none), rest: wrk args (headers)
measure() {
    local name=$1
    planned+=("$name")
    url_of[$name]=$2
    pid_of[$name]=$3
    shift 3
    local IFS=$'\n'
    hdrs_of[$name]="$*"
}

# One timed run of a planned target; adds to its sums.
run_once() {
    local name=$1 out=$tmp/wrk-$1.txt url=${url_of[$1]} pid=${pid_of[$1]} args=()
    [[ -z ${hdrs_of[$name]} ]] || mapfile -t args <<<"${hdrs_of[$name]}"
    local before="0 0" after="0 0"
    if [[ -n $pid ]]; then before=$(cpu_ticks "$pid"); fi
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${args[@]}" "$url" >"$out"
    if [[ -n $pid ]]; then after=$(cpu_ticks "$pid"); fi

    # A fast error path would look like a fast proxy: refuse non-2xx and errors.
    if grep -qE 'Non-2xx|Socket errors' "$out"; then
        cat "$out" >&2
        die "target $name: errors or non-2xx responses during the run"
    fi
    local reqs u0 s0 u1 s1
    reqs=$(awk '/requests in/ {print $1}' "$out")
    [[ -n $reqs ]] || { cat "$out" >&2; die "target $name: cannot parse wrk output"; }
    read -r u0 s0 <<<"$before"
    read -r u1 s1 <<<"$after"
    reqs_of[$name]=$((${reqs_of[$name]:-0} + reqs))
    user_of[$name]=$((${user_of[$name]:-0} + u1 - u0))
    sys_of[$name]=$((${sys_of[$name]:-0} + s1 - s0))
    p50s_of[$name]+=" $(to_us "$(awk '$1 == "50%" {print $2}' "$out")")"
    p99s_of[$name]+=" $(to_us "$(awk '$1 == "99%" {print $2}' "$out")")"
}

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run_rounds() {
    local name r args
    for name in "${planned[@]}"; do
        echo "== $name: warm-up ${WARMUP}s" >&2
        args=()
        [[ -z ${hdrs_of[$name]} ]] || mapfile -t args <<<"${hdrs_of[$name]}"
        taskset -c 1 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${args[@]}" "${url_of[$name]}" >/dev/null
    done
    for r in $(seq "$ROUNDS"); do
        echo "== round $r/$ROUNDS: ${DURATION}s per target at $CONNS connections (${planned[*]})" >&2
        for name in "${planned[@]}"; do run_once "$name"; done
    done
    for name in "${planned[@]}"; do
        local reqs=${reqs_of[$name]} cpu="-" user="-" sys="-" rps
        rps=$(awk -v r="$reqs" -v d="$((DURATION * ROUNDS))" 'BEGIN { printf "%.2f", r / d }')
        if [[ -n ${pid_of[$name]} ]]; then
            per_req() { awk -v d="$1" -v t="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.2f", d / t * 1e6 / r }'; }
            cpu=$(per_req $((user_of[$name] + sys_of[$name])))
            user=$(per_req "${user_of[$name]}")
            sys=$(per_req "${sys_of[$name]}")
        fi
        results+=("$name|$rps|$(median "${p50s_of[$name]}")|$(median "${p99s_of[$name]}")|$cpu|$user|$sys")
    done
}

check_200() { # $1 name, $2 url, $3 log file, rest: curl args
    local name=$1 url=$2 log=$3 code
    shift 3
    code=$(curl -s -o "$tmp/check-$name.body" -w '%{http_code}' --max-time 5 "$@" "$url") || true
    if [[ $code != 200 ]]; then
        echo "--- response body:" >&2; cat "$tmp/check-$name.body" >&2 || true
        echo "--- log ($log):" >&2; cat "$log" >&2 || true
        die "target $name answered HTTP $code instead of 200"
    fi
}

if wants a; then
    check_200 a "http://127.0.0.1:$P_STATIC$REQ_PATH" "$tmp/static/error.log" "${SAME[@]}"
    measure a "http://127.0.0.1:$P_STATIC$REQ_PATH" "" "${SAME[@]}"
fi

if wants b; then
    start_nginx proxy "$P_NGINX" "
    upstream static { server 127.0.0.1:$P_STATIC; keepalive 64; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Bench 1;
        }
    }"
    nginx_pid=$started_pid
    check_200 b "http://127.0.0.1:$P_NGINX$REQ_PATH" "$tmp/proxy/error.log" "${SAME[@]}"
    measure b "http://127.0.0.1:$P_NGINX$REQ_PATH" "$nginx_pid" "${SAME[@]}"
fi

if wants c; then
    taskset -c 0 "$BARE_PINGORA" --listen "127.0.0.1:$P_BARE" --upstream "127.0.0.1:$P_STATIC" \
        >"$tmp/bare.log" 2>&1 &
    bare_pid=$!
    pids+=("$bare_pid")
    wait_port "$P_BARE" "$bare_pid" "$tmp/bare.log"
    check_200 c "http://127.0.0.1:$P_BARE$REQ_PATH" "$tmp/bare.log" "${SAME[@]}"
    measure c "http://127.0.0.1:$P_BARE$REQ_PATH" "$bare_pid" "${SAME[@]}"
fi

if wants s; then
    taskset -c 0 "$BARE_PINGORA" --listen "127.0.0.1:$P_BARE_SAME" --upstream "127.0.0.1:$P_STATIC" \
        --like-wpgate >"$tmp/bare-same.log" 2>&1 &
    bare_same_pid=$!
    pids+=("$bare_same_pid")
    wait_port "$P_BARE_SAME" "$bare_same_pid" "$tmp/bare-same.log"
    check_200 s "http://127.0.0.1:$P_BARE_SAME$REQ_PATH" "$tmp/bare-same.log" "${SAME[@]}"
    measure s "http://127.0.0.1:$P_BARE_SAME$REQ_PATH" "$bare_same_pid" "${SAME[@]}"
fi

# One self-signed certificate (ECDSA P-256, for 127.0.0.1) for both HTTPS targets.
TLS_DIR=$tmp/tls
if wants g || wants h; then
    "$BARE_PINGORA" --write-test-cert "$TLS_DIR"
fi

if wants g; then
    taskset -c 0 "$BARE_PINGORA" --listen "127.0.0.1:$P_BARE_TLS" --upstream "127.0.0.1:$P_STATIC" \
        --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem" >"$tmp/bare-tls.log" 2>&1 &
    bare_tls_pid=$!
    pids+=("$bare_tls_pid")
    wait_port "$P_BARE_TLS" "$bare_tls_pid" "$tmp/bare-tls.log"
    check_200 g "https://127.0.0.1:$P_BARE_TLS$REQ_PATH" "$tmp/bare-tls.log" --cacert "$TLS_DIR/cert.pem" \
        "${SAME[@]}"
    measure g "https://127.0.0.1:$P_BARE_TLS$REQ_PATH" "$bare_tls_pid" "${SAME[@]}"
fi

# The HS256 token of (e) and (f): iss, aud, iat, exp.
JWT=$(mint_jwt)

if wants d || wants e || wants h; then
    # Set wpgate up exactly as a user would: config file, then the CLI. (h) is the same
    # process's HTTPS listener.
    tls_listen="" tls_table=""
    if wants h; then
        tls_listen="proxy_tls = \"127.0.0.1:$P_WPGATE_TLS\""
        tls_table="[tls]
cert_file = \"$TLS_DIR/cert.pem\"
key_file = \"$TLS_DIR/key.pem\""
    fi
    KEY=$(setup_wpgate "$WPGATE" "$tmp" "$P_WPGATE" "$P_ADMIN" "$tls_listen" "$tls_table")
    [[ -n $KEY ]] || die "wpgate set-up failed"
    taskset -c 0 "$WPGATE" --config "$tmp/wpgate.toml" serve >"$tmp/wpgate.log" 2>&1 &
    wpgate_pid=$!
    pids+=("$wpgate_pid")
    wait_port "$P_WPGATE" "$wpgate_pid" "$tmp/wpgate.log"
    if wants d; then
        auth=(-H "X-Website-ID: bench" -H "X-API-Key: $KEY")
        check_200 d "http://127.0.0.1:$P_WPGATE$REQ_PATH" "$tmp/wpgate.log" "${auth[@]}"
        measure d "http://127.0.0.1:$P_WPGATE$REQ_PATH" "$wpgate_pid" "${auth[@]}"
    fi
    if wants e; then
        auth=(-H "X-Website-ID: benchjwt" -H "Authorization: Bearer $JWT")
        check_200 e "http://127.0.0.1:$P_WPGATE$REQ_PATH" "$tmp/wpgate.log" "${auth[@]}"
        measure e "http://127.0.0.1:$P_WPGATE$REQ_PATH" "$wpgate_pid" "${auth[@]}"
    fi
    if wants h; then
        wait_port "$P_WPGATE_TLS" "$wpgate_pid" "$tmp/wpgate.log"
        auth=(-H "X-Website-ID: bench" -H "X-API-Key: $KEY")
        check_200 h "https://127.0.0.1:$P_WPGATE_TLS$REQ_PATH" "$tmp/wpgate.log" \
            --cacert "$TLS_DIR/cert.pem" "${auth[@]}"
        measure h "https://127.0.0.1:$P_WPGATE_TLS$REQ_PATH" "$wpgate_pid" "${auth[@]}"
    fi
fi

if wants k; then
    # The same set-up as (d), with the other binary, its own data dir and ports.
    BASE_KEY=$(setup_wpgate "$WPGATE_BASE" "$tmp/base" "$P_BASE" "$P_BASE_ADMIN" "" "" key-only)
    [[ -n $BASE_KEY ]] || die "WPGATE_BASE set-up failed"
    taskset -c 0 "$WPGATE_BASE" --config "$tmp/base/wpgate.toml" serve >"$tmp/base/wpgate.log" 2>&1 &
    base_pid=$!
    pids+=("$base_pid")
    wait_port "$P_BASE" "$base_pid" "$tmp/base/wpgate.log"
    auth=(-H "X-Website-ID: bench" -H "X-API-Key: $BASE_KEY")
    check_200 k "http://127.0.0.1:$P_BASE$REQ_PATH" "$tmp/base/wpgate.log" "${auth[@]}"
    measure k "http://127.0.0.1:$P_BASE$REQ_PATH" "$base_pid" "${auth[@]}"
fi

if wants f; then
    # The same checks as (e): signature (HS256 only), iss, aud, exp; the client's
    # token replaced by the site's Basic credential.
    cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend jwt
    bind 127.0.0.1:$P_HAPROXY
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$JWT_SECRET") -m int 1 }
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
    http-request deny deny_status 401 unless { var(txn.iss) -m str load-test }
    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
    http-request deny deny_status 401 unless { var(txn.aud) -m str wordpress }
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    http-request set-header Authorization "Basic YXBpOmFiY2QgZWZnaCBpamtsIG1ub3AgcXJzdCB1dnd4"
    default_backend static
backend static
    http-reuse always
    server s1 127.0.0.1:$P_STATIC
EOF
    taskset -c 0 haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
    haproxy_pid=$!
    pids+=("$haproxy_pid")
    wait_port "$P_HAPROXY" "$haproxy_pid" "$tmp/haproxy.log"
    auth=(-H "Authorization: Bearer $JWT")
    check_200 f "http://127.0.0.1:$P_HAPROXY$REQ_PATH" "$tmp/haproxy.log" "${auth[@]}"
    # A forged token must be refused, or the reference measures nothing.
    i=$((${#JWT} - 10))
    [[ ${JWT:i:1} == A ]] && c=B || c=A
    forged=${JWT:0:i}$c${JWT:i+1}
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        -H "Authorization: Bearer $forged" "http://127.0.0.1:$P_HAPROXY$REQ_PATH") || true
    [[ $code == 401 ]] || die "target f accepted a token with a bad signature (HTTP $code)"
    measure f "http://127.0.0.1:$P_HAPROXY$REQ_PATH" "$haproxy_pid" "${auth[@]}"
fi

run_rounds

# --- report -----------------------------------------------------------------
declare -A label=([a]="direct (static nginx)" [b]="nginx proxy" [c]="bare Pingora" [s]="bare, wpgate settings"
    [d]="wpgate (api key)"
    [e]="wpgate (jwt hs256)" [f]="haproxy jwt_verify" [g]="bare Pingora TLS" [h]="wpgate TLS (api key)"
    [k]="WPGATE_BASE (api key)")
declare -A cpu_of=()

printf '\n%-24s %12s %10s %10s %15s %10s %10s\n' target "req/s" "p50 ms" "p99 ms" "CPU µs/req" "user" "sys"
for r in "${results[@]}"; do
    IFS='|' read -r name rps p50 p99 cpu user sys <<<"$r"
    cpu_of[$name]=$cpu
    printf '%-24s %12s %10s %10s %14s %10s %10s\n' "$name ${label[$name]}" "$rps" \
        "$(awk -v v="$p50" 'BEGIN { printf "%.3f", v / 1000 }')" \
        "$(awk -v v="$p99" 'BEGIN { printf "%.3f", v / 1000 }')" "$cpu" "$user" "$sys"
done

ratios_json=""
ratio() { # $1 numerator target, $2 denominator target
    local n=${cpu_of[$1]:-} d=${cpu_of[$2]:-} v
    [[ -n $n && -n $d && $n != "-" && $d != "-" ]] || return 0
    v=$(awk -v n="$n" -v d="$d" 'BEGIN { printf "%.2f", n / d }')
    printf 'CPU/request %s / %s: %sx\n' "$1" "$2" "$v"
    ratios_json+="${ratios_json:+, }\"$1/$2\": $v"
}
echo "CPU: $CPU_MODEL ($(nproc) cores)"
echo "load average (1 min): $LOADAVG_START at start, $(cut -d' ' -f1 /proc/loadavg) at end"
echo
ratio c b
ratio d b
ratio d c
ratio s c
ratio d s
ratio e c
ratio e d
ratio e f
ratio h g
ratio g c
ratio h d
ratio k c
ratio d k

# --- instructions per request (callgrind) -----------------------------------
# CPU time per request depends on the CPU (a ratio met on one machine may not be on
# the next); an instruction count does not, nor on what else the machine is doing.
callgrind_json=null
cg_targets=""
wants c && cg_targets+=" bare"
wants s && cg_targets+=" same"
wants d && cg_targets+=" key"
wants e && cg_targets+=" jwt"
if [[ $CALLGRIND != 0 && -n $cg_targets ]]; then
    echo
    TARGETS=$cg_targets BARE_PINGORA=${BARE_PINGORA:-} WPGATE=${WPGATE:-} \
        REQUESTS=$CALLGRIND_REQUESTS WARMUP=$((CALLGRIND_REQUESTS / 10 + 1)) \
        PORT_BASE=$((PORT_BASE + 20)) OUT="$tmp/callgrind.json" benches/callgrind.sh
    callgrind_json=$(cat "$tmp/callgrind.json")
fi

mkdir -p "$(dirname "$OUT")"
{
    printf '{\n  "cpu": "%s", "duration_s": %s, "connections": %s, "nproc": %s, "loadavg_start": %s, "loadavg_end": %s,\n  "callgrind": %s,\n  "targets": {\n' \
        "$CPU_MODEL" "$((DURATION * ROUNDS))" "$CONNS" "$(nproc)" "$LOADAVG_START" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$callgrind_json"
    sep=""
    for r in "${results[@]}"; do
        IFS='|' read -r name rps p50 p99 cpu user sys <<<"$r"
        [[ $cpu == "-" ]] && cpu=null user=null sys=null
        printf '%s    "%s": {"label": "%s", "rps": %s, "p50_us": %s, "p99_us": %s, "cpu_us_per_req": %s, "user_us_per_req": %s, "sys_us_per_req": %s}' \
            "$sep" "$name" "${label[$name]}" "$rps" "$p50" "$p99" "$cpu" "$user" "$sys"
        sep=$',\n'
    done
    printf '\n  },\n  "cpu_ratios": {%s}\n}\n' "$ratios_json"
} >"$OUT"
echo "results written to $OUT"
