# Shared by benches/load.sh and benches/callgrind.sh (sourced, not run): process
# bookkeeping, waiting for ports, the HS256 token and a wpgate set up through its CLI.
# The sourcing script defines die() and sets tmp (a fresh temporary directory).

pids=()

# Stops everything started (TERM, a bounded wait of up to $STOP_WAIT tenths of a
# second per process, then KILL) and removes $tmp.
STOP_WAIT=${STOP_WAIT:-50}
cleanup() {
    local pid i
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < STOP_WAIT; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Polls until port $1 accepts connections: at most $PORT_WAIT tenths of a second, and
# stops early if process $2 died (printing its log $3).
PORT_WAIT=${PORT_WAIT:-200}
wait_port() {
    local port=$1 pid=$2 log=$3 i
    for ((i = 0; i < PORT_WAIT; i++)); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "process $pid exited before listening on $port"; }
        sleep 0.1
    done
    cat "$log" >&2
    die "nothing listening on port $port after $((PORT_WAIT / 10)) s"
}

# The HS256 token of the JWT targets (iss, aud, iat, exp), signed with $JWT_SECRET.
JWT_SECRET=0123456789abcdef0123456789abcdef-load-test
mint_jwt() {
    JWT_SECRET=$JWT_SECRET python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "load", "iss": "load-test", "aud": "wordpress",
                       "iat": now, "exp": now + 3600}).encode())
sig = hmac.new(os.environ["JWT_SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256)
print(f"{head}.{body}.{b64(sig.digest())}")
PY
}

# Sets a wpgate up as a user would: a config file $2/wpgate.toml (data in $2/data,
# proxy on port $3, admin on $4, one worker thread, warnings only; extra [listen] and
# top-level lines in $5 and $6), then the CLI of binary $1: site `bench` (API key,
# printed on stdout) and, unless $7 is "key-only", site `benchjwt` taking the HS256
# token of mint_jwt. Both forward to the static upstream on $P_STATIC.
setup_wpgate() {
    local bin=$1 dir=$2 port=$3 admin=$4 listen_extra=${5:-} top_extra=${6:-} what=${7:-}
    mkdir -p "$dir"
    cat >"$dir/wpgate.toml" <<TOML
data_dir = "$dir/data"
[listen]
proxy = "127.0.0.1:$port"
$listen_extra
admin = "127.0.0.1:$admin"
$top_extra
[proxy]
threads = 1
[log]
format = "json"
level = "warn"
TOML
    local site key
    for site in bench benchjwt; do
        [[ $site == benchjwt && $what == key-only ]] && continue
        echo -n 'abcd efgh ijkl mnop qrst uvwx' |
            "$bin" --config "$dir/wpgate.toml" site add "$site" \
                --upstream "http://127.0.0.1:$P_STATIC" --auth app-password \
                --username api --secret-stdin >/dev/null 2>&1
    done
    key=$("$bin" --config "$dir/wpgate.toml" key issue bench 2>/dev/null)
    [[ -n $key ]] || die "$bin key issue printed no key"
    if [[ $what != key-only ]]; then
        printf '%s' "$JWT_SECRET" | "$bin" --config "$dir/wpgate.toml" site set-auth benchjwt \
            --methods jwt --jwt-alg HS256 --jwt-secret-stdin --jwt-issuer load-test \
            --jwt-audience wordpress --jwt-max-lifetime 2h >/dev/null
    fi
    echo "$key"
}
