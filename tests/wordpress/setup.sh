#!/usr/bin/env bash
# Real WordPress sites on loopback for wpgate's end-to-end tests (and for poking at by hand).
#
# Debian bookworm's packaged WordPress (one code tree, /usr/share/wordpress) served by php-fpm
# and one dedicated nginx instance per site, backed by MariaDB. Runs as root, needs no init
# system, installs missing Debian packages with apt-get, and never talks to anything but
# loopback (the sites also refuse outgoing HTTP and mail).
#
# usage: tests/wordpress/setup.sh [COMMAND]
#   setup (default)            make sure everything is installed, configured, running and
#                              verified; a quick no-op when it already is
#   status                     show what is running and where
#   stop                       stop the nginx instances and the php-fpm this script started
#                              (MariaDB is left alone: it may be shared)
#   stop-site NAME             make one site unreachable (stops its nginx instance)
#   start-site NAME            make it reachable again
#   revoke-app-password NAME   delete the site's recorded application password in WordPress
#                              (sites.env keeps the now-dead password, so health checks see
#                              auth_failed)
#   new-app-password NAME      replace the site's "gateway" application password with a fresh
#                              one (the previous one stops working) and rewrite sites.env/json
#   purge                      stop, drop the sites' databases and DB users, remove their
#                              /etc/wordpress config files and the state directory
#
# Environment:
#   WPGATE_WP_STATE   state directory (default /tmp/wpgate-wordpress); must be traversable
#                     by www-data (it holds the php-fpm socket and the uploads)
#   WPGATE_WP_PORT1   site1 port on 127.0.0.1 (default 18181)
#   WPGATE_WP_PORT2   site2 port on 127.0.0.1 (default 18182)
# One set of sites per machine: the databases (wpgate_site1, wpgate_site2, MariaDB on
# 127.0.0.1:3306, root without password) and /etc/wordpress/config-wpgate-site{1,2}.php do
# not depend on the state directory. Concurrent runs are serialised by a lock in it.
#
# Output (rewritten whenever something changes):
#   $STATE/sites.env   KEY='value' lines (use `set -a; . sites.env; set +a`):
#     WPGATE_WP_STATE_DIR, WPGATE_WP_SITES ("site1 site2"), and for each site N (1, 2):
#     WPGATE_WP_SITEN_NAME, _URL, _PORT, _USER, _USER_ID, _APP_PASSWORD, _APP_PASSWORD_UUID,
#     _APP_PASSWORD_NAME, _ADMIN_PASSWORD, _CONFIG, _DB
#   $STATE/sites.json  {"state_dir": ..., "sites": [{"name", "url", "port", "admin_user",
#                      "admin_user_id", "app_password", "app_password_uuid", ...}, ...]}
#   The application password is the 24 characters WordPress returned (no spaces); use it
#   as HTTP Basic credentials "admin:<password>".
#   $STATE/logs/       nginx access/error logs per site, php-fpm and PHP error logs
#
# Both sites also load a must-use plugin, $WP_CONTENT/mu-plugins/wpgate-test-jwt.php: a
# minimal JWT bearer authentication like the common JWT plugins, for wpgate's delegated
# verification tests. POST /wp-json/wpgate-test-jwt/v1/token, authenticated as a user (e.g.
# with an Application Password), answers {"token": "<HS256 JWT, 10 minutes>"} for that user;
# `Authorization: Bearer <token>` then authenticates that user. The key derives from the
# site's salts. Any other bearer value authenticates nobody.
#
# Every wait has a deadline; on failure the script exits non-zero and shows the log tails.
set -euo pipefail

STATE=${WPGATE_WP_STATE:-/tmp/wpgate-wordpress}
SITES=(site1 site2)
declare -A PORT=([site1]=${WPGATE_WP_PORT1:-18181} [site2]=${WPGATE_WP_PORT2:-18182})

WP_ROOT=/usr/share/wordpress
WP_CONTENT=/var/lib/wordpress/wp-content
WP_ETC=/etc/wordpress
WEB_USER=www-data
DB_HOST=127.0.0.1
DB_PORT=3306
PHP_SERIES=8.2 # Debian bookworm
ME=$(basename "$0")

RUN=$STATE/run
LOGS=$STATE/logs
SITE_STATE=$STATE/sites
HELPER=$STATE/wp-helper.php

log() { printf '[%s] %s\n' "$ME" "$*" >&2; }

show_logs() {
    local f n
    for f in "$LOGS"/*.log; do
        [ -s "$f" ] || continue
        n=25
        [[ "$f" != *.access.log ]] || n=8
        printf '\n----- tail of %s -----\n' "$f" >&2
        tail -n "$n" "$f" >&2 || true
    done
}

die() { # a runtime failure: show what the services logged
    log "ERROR: $*"
    show_logs
    exit 1
}

fail() { # a usage or precondition error: nothing ran, no logs to show
    log "ERROR: $*"
    exit 1
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds, at most SECONDS (WHAT is a label).
wait_for() {
    local secs=$1
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# shellcheck disable=SC2016
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }
tcp_closed() { ! tcp_open "$@"; }

randstr() { # N alphanumeric characters
    local s=""
    while [ ${#s} -lt "$1" ]; do
        s+=$(head -c 96 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${s:0:$1}"
}

# write_file PATH MODE OWNER CONTENT: replace PATH only if the content differs.
# Returns 0 when it changed the file, 1 when it was already up to date.
write_file() {
    local path=$1 mode=$2 owner=$3 content=$4
    if [ -f "$path" ] && [ "$(cat "$path")" == "$content" ]; then
        return 1
    fi
    local tmp
    tmp=$(mktemp "$path.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$path"
    return 0
}

# pid_of PIDFILE COMM_PREFIX [CMDLINE_SUBSTRING]: prints the pid if the recorded process
# exists, is not a zombie, and is what we started (so a recycled pid is never signalled).
pid_of() {
    local pidfile=$1 comm=$2 want=${3:-} pid state
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 1 # it may vanish as the daemon exits
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ "$state" != Z ] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]] || return 1
    if [ -n "$want" ]; then
        tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -F -- "$want" >/dev/null || return 1
    fi
    printf '%s' "$pid"
}

# stop_pid PIDFILE COMM [CMDLINE_SUBSTRING]
stop_pid() {
    local pidfile=$1 comm=$2 want=${3:-} pid
    if ! pid=$(pid_of "$pidfile" "$comm" "$want"); then
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 15 "$comm exit" eval "! pid_of '$pidfile' '$comm' '$want' >/dev/null"; then
        log "$comm (pid $pid) ignored SIGTERM for 15s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 "$comm exit" eval "! pid_of '$pidfile' '$comm' '$want' >/dev/null" ||
            die "could not stop $comm (pid $pid)"
    fi
    rm -f "$pidfile"
}

site_index() { # site1 -> 1
    local i
    for i in "${!SITES[@]}"; do
        [ "${SITES[$i]}" != "$1" ] || { echo $((i + 1)); return 0; }
    done
    return 1
}

check_site_name() {
    site_index "$1" >/dev/null || fail "unknown site '$1' (known: ${SITES[*]})"
}

site_url() { printf 'http://127.0.0.1:%s' "${PORT[$1]}"; }
site_config() { printf 'wpgate-%s' "$1"; }   # /etc/wordpress/config-wpgate-site1.php
wp_config_file() { printf '%s/config-%s.php' "$WP_ETC" "$(site_config "$1")"; }
site_db() { printf 'wpgate_%s' "$1"; }
nginx_conf() { printf '%s/nginx/%s/nginx.conf' "$STATE" "$1"; }
nginx_pid() { printf '%s/nginx-%s.pid' "$RUN" "$1"; }

# ---------------------------------------------------------------------------------------
# packages

php_fpm_bin() {
    local c
    for c in "/usr/sbin/php-fpm$PHP_SERIES" /usr/sbin/php-fpm[0-9]*; do
        [ -x "$c" ] && { printf '%s' "$c"; return 0; }
    done
    return 1
}

ensure_packages() {
    local need=()
    [ -r "$WP_ROOT/wp-load.php" ] || need+=(wordpress)
    php_fpm_bin >/dev/null || need+=(php-fpm)
    command -v php >/dev/null || need+=(php-cli)
    compgen -G "/etc/php/*/fpm/conf.d/*mysqli.ini" >/dev/null || need+=(php-mysql)
    [ -x /usr/sbin/nginx ] || need+=(nginx-light)
    [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
    command -v mariadb >/dev/null || need+=(mariadb-client)
    command -v curl >/dev/null || need+=(curl)
    [ ${#need[@]} -gt 0 ] || return 0

    log "installing Debian packages: ${need[*]}"
    # Keep package scripts from starting the system's own nginx/php-fpm/mariadb services
    # (they would grab port 80 etc.); we start our own instances below.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT # also when interrupted
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${need[@]}" wordpress-theme-twentytwentythree "libapache2-mod-php$PHP_SERIES-"
    } >"$STATE/apt.log" 2>&1 || rc=$?
    [ -z "$made_policy" ] || { rm -f "$policy"; trap - EXIT; }
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$STATE/apt.log" >&2
        die "apt-get failed (full log: $STATE/apt.log)"
    fi
    [ -r "$WP_ROOT/wp-load.php" ] && php_fpm_bin >/dev/null && [ -x /usr/sbin/nginx ] ||
        die "packages installed but WordPress/php-fpm/nginx still missing"
}

# ---------------------------------------------------------------------------------------
# MariaDB

MYSQL_ROOT=()
mysql_root_detect() {
    [ ${#MYSQL_ROOT[@]} -eq 0 ] || return 0
    local c
    for c in "--protocol=socket" "--protocol=tcp -h $DB_HOST -P $DB_PORT"; do
        # shellcheck disable=SC2206
        local try=(mariadb $c -uroot --connect-timeout=5 --batch --skip-column-names)
        if "${try[@]}" -e 'SELECT 1' >/dev/null 2>&1; then
            MYSQL_ROOT=("${try[@]}")
            return 0
        fi
    done
    fail "cannot connect to MariaDB as root without a password (socket or $DB_HOST:$DB_PORT)"
}

ensure_mariadb() {
    if ! tcp_open "$DB_HOST" "$DB_PORT"; then
        log "MariaDB is not answering on $DB_HOST:$DB_PORT, starting mariadbd"
        if [ ! -d /var/lib/mysql/mysql ]; then
            mariadb-install-db --user=mysql >"$LOGS/mariadb-install-db.log" 2>&1 ||
                die "mariadb-install-db failed"
        fi
        install -d -o mysql -g mysql -m 755 /run/mysqld
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 9>&-
        if ! wait_for 60 "MariaDB" tcp_open "$DB_HOST" "$DB_PORT"; then
            tail -n 25 /var/log/mysql/error.log >&2 2>/dev/null || true
            die "MariaDB did not start listening on $DB_HOST:$DB_PORT within 60s"
        fi
    fi
    mysql_root_detect
}

# ---------------------------------------------------------------------------------------
# WordPress config files and databases

# The DB password lives in the site's config file (the single source of truth); it is
# created with the file and reused after.
site_db_password() {
    local f
    f=$(wp_config_file "$1")
    [ -f "$f" ] || return 1
    sed -n "s/^define( *'DB_PASSWORD', *'\([A-Za-z0-9]*\)' *);$/\1/p" "$f"
}

ensure_wp_config() {
    local site=$1 f pw
    f=$(wp_config_file "$site")
    if [ -f "$f" ]; then
        grep -q 'Managed by wpgate tests/wordpress/setup.sh' "$f" ||
            fail "$f exists and was not written by this script; not touching it"
        pw=$(site_db_password "$site")
        [ -n "$pw" ] || die "cannot read DB_PASSWORD from $f"
        return 0
    fi
    install -d -m 755 "$WP_ETC"
    pw=$(randstr 24)
    local salts="" k
    for k in AUTH_KEY SECURE_AUTH_KEY LOGGED_IN_KEY NONCE_KEY AUTH_SALT SECURE_AUTH_SALT LOGGED_IN_SALT NONCE_SALT; do
        salts+="define( '$k', '$(randstr 64)' );"$'\n'
    done
    write_file "$f" 640 "root:$WEB_USER" "<?php
// Managed by wpgate tests/wordpress/setup.sh: test site '$site' (database $(site_db "$site")).
// Selected by nginx with 'fastcgi_param WORDPRESS_CONFIG $(site_config "$site")'.
// Remove with: tests/wordpress/setup.sh purge
define( 'DB_NAME', '$(site_db "$site")' );
define( 'DB_USER', '$(site_db "$site")' );
define( 'DB_PASSWORD', '$pw' );
define( 'DB_HOST', '$DB_HOST:$DB_PORT' );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
$salts\$table_prefix = 'wp_';

// Application Passwords over plain http on loopback.
define( 'WP_ENVIRONMENT_TYPE', 'local' );
// Nothing but the tests may make traffic: no cron, no updates, no outgoing HTTP or mail.
define( 'DISABLE_WP_CRON', true );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_HTTP_BLOCK_EXTERNAL', true );
\$GLOBALS['wp_filter']['pre_wp_mail'][10][] = array( 'function' => '__return_true', 'accepted_args' => 1 );
define( 'WP_DEBUG', false );" || true
}

ensure_databases() {
    local sql="" site db pw host
    for site in "${SITES[@]}"; do
        db=$(site_db "$site")
        pw=$(site_db_password "$site")
        sql+="CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        for host in 127.0.0.1 localhost; do
            sql+="CREATE USER IF NOT EXISTS '$db'@'$host' IDENTIFIED BY '$pw';"
            sql+="ALTER USER '$db'@'$host' IDENTIFIED BY '$pw';"
            sql+="GRANT ALL PRIVILEGES ON \`$db\`.* TO '$db'@'$host';"
        done
    done
    "${MYSQL_ROOT[@]}" -e "$sql" || die "creating the databases failed"
}

# ---------------------------------------------------------------------------------------
# php-fpm and nginx

PHP_FPM_CHANGED=""
write_php_fpm_conf() {
    PHP_FPM_CHANGED=""
    write_file "$STATE/php-fpm.conf" 644 root:root "; Managed by wpgate tests/wordpress/setup.sh
[global]
pid = $RUN/php-fpm.pid
error_log = $LOGS/php-fpm.log
daemonize = yes

[wpgate]
user = $WEB_USER
group = $WEB_USER
listen = $RUN/php-fpm.sock
listen.owner = $WEB_USER
listen.group = $WEB_USER
listen.mode = 0660
pm = dynamic
pm.max_children = 8
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 4
request_terminate_timeout = 300
catch_workers_output = yes
php_admin_value[upload_max_filesize] = 64M
php_admin_value[post_max_size] = 72M
php_admin_value[memory_limit] = 256M
php_admin_value[max_execution_time] = 300
php_admin_value[max_input_time] = 300
php_admin_flag[display_errors] = off
php_admin_flag[log_errors] = on
php_admin_value[error_log] = $LOGS/php-error.log" && PHP_FPM_CHANGED=1 || true
}

ensure_php_fpm() {
    local bin pid
    bin=$(php_fpm_bin) || die "php-fpm is not installed"
    if pid=$(pid_of "$RUN/php-fpm.pid" php-fpm "$STATE/php-fpm.conf") && [ ! -S "$RUN/php-fpm.sock" ]; then
        log "php-fpm (pid $pid) has lost its socket, restarting it"
        stop_pid "$RUN/php-fpm.pid" php-fpm "$STATE/php-fpm.conf"
    fi
    if pid=$(pid_of "$RUN/php-fpm.pid" php-fpm "$STATE/php-fpm.conf"); then
        if [ -n "$PHP_FPM_CHANGED" ]; then
            log "php-fpm config changed, reloading (pid $pid)"
            kill -USR2 "$pid"
            sleep 0.5
        fi
    else
        rm -f "$RUN/php-fpm.pid" "$RUN/php-fpm.sock"
        log "starting php-fpm"
        "$bin" --fpm-config "$STATE/php-fpm.conf" >>"$LOGS/php-fpm.log" 2>&1 9>&- ||
            die "php-fpm failed to start"
    fi
    wait_for 15 "php-fpm socket" test -S "$RUN/php-fpm.sock" ||
        die "php-fpm socket $RUN/php-fpm.sock did not appear"
}

write_nginx_conf() { # returns 0 when the config changed
    local site=$1 dir=$STATE/nginx/$1 user_line=""
    [ "$(id -u)" -ne 0 ] || user_line="user $WEB_USER;"
    install -d -m 755 "$dir"
    write_file "$(nginx_conf "$site")" 644 root:root "# Managed by wpgate tests/wordpress/setup.sh: WordPress test site '$site'
$user_line
worker_processes 1;
daemon on;
pid $(nginx_pid "$site");
error_log $LOGS/nginx-$site.error.log error;

events { worker_connections 512; }

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $LOGS/nginx-$site.access.log;
    client_body_temp_path $dir/client_body;
    fastcgi_temp_path $dir/fastcgi;
    proxy_temp_path $dir/proxy;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    sendfile on;
    server_tokens off;
    absolute_redirect off;
    client_max_body_size 64m;
    client_body_buffer_size 1m;

    server {
        listen 127.0.0.1:${PORT[$site]};
        server_name _;
        root $WP_ROOT;
        index index.php;

        location / {
            try_files \$uri \$uri/ /index.php?\$args;
        }
        # Debian keeps wp-content under /var/lib/wordpress; this site's uploads are its own.
        location ^~ /wp-content/uploads/ {
            alias $STATE/uploads/$site/;
            location ~ \\.php\$ { return 403; }
        }
        location ^~ /wp-content/ {
            alias $WP_CONTENT/;
            location ~ \\.php\$ { return 403; }
        }
        location ~ \\.php\$ {
            try_files \$uri =404;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param CONTENT_TYPE \$content_type;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_param SCRIPT_NAME \$fastcgi_script_name;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REQUEST_URI \$request_uri;
            fastcgi_param DOCUMENT_URI \$document_uri;
            fastcgi_param DOCUMENT_ROOT \$document_root;
            fastcgi_param SERVER_PROTOCOL \$server_protocol;
            fastcgi_param REQUEST_SCHEME \$scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx;
            fastcgi_param REMOTE_ADDR \$remote_addr;
            fastcgi_param REMOTE_PORT \$remote_port;
            fastcgi_param SERVER_ADDR \$server_addr;
            fastcgi_param SERVER_PORT \$server_port;
            fastcgi_param SERVER_NAME \$server_name;
            fastcgi_param REDIRECT_STATUS 200;
            # Debian's fastcgi_params passes \$host (no port): WordPress needs the port.
            fastcgi_param HTTP_HOST \$http_host;
            fastcgi_param WORDPRESS_CONFIG $(site_config "$site");
            fastcgi_read_timeout 300s;
            fastcgi_pass unix:$RUN/php-fpm.sock;
        }
    }
}"
}

# The port a site's nginx config currently listens on (empty if there is no config yet).
nginx_conf_port() {
    sed -n 's/^ *listen 127\.0\.0\.1:\([0-9]*\);$/\1/p' "$(nginx_conf "$1")" 2>/dev/null || true
}

# Refuse to (re)start a site's nginx on a port that another process already listens on.
check_port_free() {
    local site=$1
    if site_running "$site" && [ "$(nginx_conf_port "$site")" == "${PORT[$site]}" ]; then
        return 0
    fi
    if tcp_open 127.0.0.1 "${PORT[$site]}"; then
        fail "127.0.0.1:${PORT[$site]} (for $site) is already in use by another process; pick another port with WPGATE_WP_PORT$(site_index "$site")"
    fi
}

start_nginx() {
    local site=$1 changed=${2:-} pid
    if pid=$(pid_of "$(nginx_pid "$site")" nginx "$(nginx_conf "$site")"); then
        if [ -n "$changed" ]; then
            log "nginx config for $site changed, reloading (pid $pid)"
            /usr/sbin/nginx -t -q -p "$STATE/nginx/$site" -c "$(nginx_conf "$site")" \
                -e "$LOGS/nginx-$site.error.log" || die "new nginx config for $site is invalid"
            kill -HUP "$pid"
        fi
    else
        rm -f "$(nginx_pid "$site")"
        log "starting nginx for $site on 127.0.0.1:${PORT[$site]}"
        /usr/sbin/nginx -p "$STATE/nginx/$site" -c "$(nginx_conf "$site")" \
            -e "$LOGS/nginx-$site.error.log" 9>&- || die "nginx for $site failed to start"
    fi
    wait_for 15 "nginx $site" tcp_open 127.0.0.1 "${PORT[$site]}" ||
        die "nginx for $site is not listening on 127.0.0.1:${PORT[$site]}"
}

site_running() { pid_of "$(nginx_pid "$1")" nginx "$(nginx_conf "$1")" >/dev/null; }

stop_nginx() {
    local site=$1
    pid_of "$(nginx_pid "$site")" nginx "$(nginx_conf "$site")" >/dev/null || return 0
    stop_pid "$(nginx_pid "$site")" nginx "$(nginx_conf "$site")"
    wait_for 10 "port ${PORT[$site]} closed" tcp_closed 127.0.0.1 "${PORT[$site]}" ||
        die "something still listens on 127.0.0.1:${PORT[$site]} after stopping nginx for $site"
}

# ---------------------------------------------------------------------------------------
# HTTP checks (loopback only; never through a proxy)

CURL=(curl -sS --noproxy '*' --connect-timeout 5 --max-time 60)

# http_get OUTFILE URL [USER PASSWORD] -> prints the status code ("000" if no answer)
http_get() {
    local out=$1 url=$2
    if [ $# -ge 4 ]; then
        "${CURL[@]}" -K - -o "$out" -w '%{http_code}' "$url" <<<"user = \"$3:$4\"" 2>/dev/null || true
    else
        "${CURL[@]}" -o "$out" -w '%{http_code}' "$url" 2>/dev/null || true
    fi
}

# Loads $SITE_STATE/NAME.env (written by the PHP helper) into S_* variables.
load_site_state() {
    S_URL="" S_USER="" S_USER_ID="" S_APP_PASSWORD="" S_APP_PASSWORD_UUID=""
    local f=$SITE_STATE/$1.env
    [ -f "$f" ] || return 1
    # shellcheck disable=SC1090
    . "$f"
}

# ---------------------------------------------------------------------------------------
# the PHP helper (WordPress APIs from the CLI, with Debian's per-site config selection)

helper_source() {
    cat <<'PHP'
<?php
// Managed by wpgate tests/wordpress/setup.sh. WordPress operations from the CLI:
//   php wp-helper.php ensure|new-app|revoke NAME CONFIG URL STATE_FILE UPLOAD_DIR
//   php wp-helper.php render STATE_DIR NAME...
// ensure: install the site if needed, fix its URL/permalinks/admin password, make sure the
// recorded "gateway" application password exists (create it if not); new-app: replace it;
// revoke: delete it. Each writes STATE_FILE (.json and .env) with the site's record.
if (PHP_SAPI !== 'cli') { exit(1); }
error_reporting(E_ALL & ~E_DEPRECATED & ~E_NOTICE & ~E_WARNING);

function fail($msg) { fwrite(STDERR, "wp-helper: $msg\n"); exit(1); }
function env_quote($v) { return "'" . str_replace("'", "'\\''", (string) $v) . "'"; }
function write_atomic($path, $data) {
    if (@file_get_contents($path) === $data) { return; }
    $tmp = $path . '.tmp' . getmypid();
    if (file_put_contents($tmp, $data) === false || !chmod($tmp, 0644) || !rename($tmp, $path)) {
        fail("cannot write $path");
    }
}

$cmd = $argv[1] ?? '';

if ($cmd === 'render') {
    $dir = $argv[2];
    $names = array_slice($argv, 3);
    $sites = array();
    $env = "# Generated by tests/wordpress/setup.sh; do not edit. Load with: set -a; . sites.env; set +a\n";
    $env .= 'WPGATE_WP_STATE_DIR=' . env_quote($dir) . "\n";
    $env .= 'WPGATE_WP_SITES=' . env_quote(implode(' ', $names)) . "\n";
    foreach ($names as $i => $name) {
        $rec = json_decode((string) @file_get_contents("$dir/sites/$name.json"), true);
        if (!is_array($rec)) { fail("no record for site $name"); }
        $sites[] = $rec;
        $p = 'WPGATE_WP_SITE' . ($i + 1) . '_';
        foreach (array(
            'NAME' => 'name', 'URL' => 'url', 'PORT' => 'port', 'USER' => 'admin_user',
            'USER_ID' => 'admin_user_id', 'APP_PASSWORD' => 'app_password',
            'APP_PASSWORD_UUID' => 'app_password_uuid', 'APP_PASSWORD_NAME' => 'app_password_name',
            'ADMIN_PASSWORD' => 'admin_password', 'CONFIG' => 'wordpress_config', 'DB' => 'database',
        ) as $k => $f) {
            $env .= $p . $k . '=' . env_quote($rec[$f] ?? '') . "\n";
        }
    }
    write_atomic("$dir/sites.env", $env);
    write_atomic("$dir/sites.json", json_encode(array('state_dir' => $dir, 'sites' => $sites),
        JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n");
    exit(0);
}

if (!in_array($cmd, array('ensure', 'new-app', 'revoke'), true) || count($argv) < 7) {
    fail('usage: wp-helper.php ensure|new-app|revoke NAME CONFIG URL STATE_FILE UPLOAD_DIR');
}
list(, , $name, $config, $url, $state_file, $upload_dir) = $argv;
$app_name = 'gateway';
$admin_login = 'admin';

$prev = json_decode((string) @file_get_contents($state_file), true);
if (!is_array($prev)) { $prev = array(); }

// What Debian's wp-config.php and WordPress expect from a web request.
$u = parse_url($url);
$host = $u['host'] . (isset($u['port']) ? ':' . $u['port'] : '');
$_SERVER['WORDPRESS_CONFIG'] = $config;
$_SERVER['HTTP_HOST'] = $host;
$_SERVER['SERVER_NAME'] = $u['host'];
$_SERVER['SERVER_PORT'] = $u['port'] ?? 80;
$_SERVER['REQUEST_METHOD'] = 'GET';
$_SERVER['REQUEST_URI'] = '/wp-admin/install.php';
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = '/wp-admin/install.php';
$_SERVER['SCRIPT_FILENAME'] = '/usr/share/wordpress/wp-admin/install.php';
$_SERVER['DOCUMENT_ROOT'] = '/usr/share/wordpress';
unset($_SERVER['HTTPS']);

define('WP_INSTALLING', true); // lets us load an uninstalled site without being redirected
require '/usr/share/wordpress/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

function random_password() { return wp_generate_password(24, false); }

$installed_now = false;
$admin_password = $prev['admin_password'] ?? '';
if ($admin_password === '') { $admin_password = random_password(); }
$email = "admin@$name.wpgate.test";

if ($cmd !== 'revoke' && !is_blog_installed()) {
    $r = wp_install("wpgate $name", $admin_login, $email, true, '', wp_slash($admin_password));
    if (!is_array($r) || empty($r['user_id'])) { fail('wp_install failed'); }
    $installed_now = true;
}
if (!is_blog_installed()) { fail("site $name is not installed; run setup first"); }

$user = get_user_by('login', $admin_login);
if ($cmd !== 'revoke') {
    if (!$user) {
        $id = wp_insert_user(array('user_login' => $admin_login, 'user_pass' => $admin_password,
            'user_email' => $email, 'role' => 'administrator'));
        if (is_wp_error($id)) { fail('creating the admin user failed: ' . $id->get_error_message()); }
        $user = get_user_by('id', $id);
    } elseif (!wp_check_password($admin_password, $user->user_pass, $user->ID)) {
        wp_set_password($admin_password, $user->ID);
    }
    foreach (array('siteurl' => $url, 'home' => $url, 'upload_path' => $upload_dir, 'upload_url_path' => '') as $k => $v) {
        if (get_option($k) !== $v) { update_option($k, $v); }
    }
    if ($installed_now) { update_option('blogname', "wpgate $name"); }
    global $wp_rewrite;
    if (get_option('permalink_structure') !== '/%postname%/' || !get_option('rewrite_rules') || $installed_now) {
        $wp_rewrite->set_permalink_structure('/%postname%/');
        flush_rewrite_rules(false);
    }
}
if (!$user) { fail("no user '$admin_login' in site $name"); }

$pw = $prev['app_password'] ?? '';
$uuid = $prev['app_password_uuid'] ?? '';
$created = false;
$revoked = false;
if ($cmd === 'revoke') {
    if ($uuid === '') { fail("site $name has no recorded application password"); }
    $r = WP_Application_Passwords::delete_application_password($user->ID, $uuid);
    $revoked = !is_wp_error($r);
} else {
    $ok = false;
    if ($cmd === 'ensure' && $pw !== '' && $uuid !== '') {
        $item = WP_Application_Passwords::get_user_application_password($user->ID, $uuid);
        $ok = $item && wp_check_password($pw, $item['password']);
    }
    if (!$ok) {
        // Application names are unique per user: drop any old "gateway" first.
        foreach (WP_Application_Passwords::get_user_application_passwords($user->ID) as $item) {
            if ($item['name'] === $app_name) {
                WP_Application_Passwords::delete_application_password($user->ID, $item['uuid']);
            }
        }
        $r = WP_Application_Passwords::create_new_application_password($user->ID, array('name' => $app_name));
        if (is_wp_error($r)) { fail('creating the application password failed: ' . $r->get_error_message()); }
        list($pw, $item) = $r;
        $uuid = $item['uuid'];
        $created = true;
    }
}

$rec = array(
    'name' => $name,
    'url' => $url,
    'port' => (int) ($u['port'] ?? 80),
    'admin_user' => $admin_login,
    'admin_user_id' => (int) $user->ID,
    'app_password' => $pw,
    'app_password_uuid' => $uuid,
    'app_password_name' => $app_name,
    'admin_password' => $admin_password,
    'admin_email' => $user->user_email,
    'wordpress_config' => $config,
    'database' => DB_NAME,
    'upload_dir' => $upload_dir,
);
write_atomic($state_file, json_encode($rec, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n");
$env = '';
foreach (array('S_URL' => 'url', 'S_USER' => 'admin_user', 'S_USER_ID' => 'admin_user_id',
    'S_APP_PASSWORD' => 'app_password', 'S_APP_PASSWORD_UUID' => 'app_password_uuid') as $k => $f) {
    $env .= $k . '=' . env_quote($rec[$f]) . "\n";
}
write_atomic(preg_replace('/\.json$/', '', $state_file) . '.env', $env);
echo json_encode(array('installed' => $installed_now, 'app_password_created' => $created,
    'app_password_revoked' => $revoked, 'app_password_uuid' => $uuid)), "\n";
PHP
}

jwt_plugin_source() {
    cat <<'PHP'
<?php
/*
 * Plugin Name: wpgate test JWT
 * Description: Managed by wpgate tests/wordpress/setup.sh (test sites only). A minimal JWT
 * bearer authentication, as the common JWT plugins do it: POST /wp-json/wpgate-test-jwt/v1/token
 * as a logged-in user (e.g. with an Application Password) answers {"token": ...}, an HS256 JWT
 * for that user valid 10 minutes; "Authorization: Bearer <token>" then authenticates that user.
 */
if (!defined('ABSPATH')) { exit; }

function wpgate_test_jwt_key() { return hash_hmac('sha256', 'wpgate-test-jwt', wp_salt('auth')); }
function wpgate_test_jwt_b64($s) { return rtrim(strtr(base64_encode($s), '+/', '-_'), '='); }
function wpgate_test_jwt_sign($data) {
    return wpgate_test_jwt_b64(hash_hmac('sha256', $data, wpgate_test_jwt_key(), true));
}

function wpgate_test_jwt_issue($user_id) {
    $now = time();
    $h = wpgate_test_jwt_b64(json_encode(array('alg' => 'HS256', 'typ' => 'JWT')));
    $p = wpgate_test_jwt_b64(json_encode(array('iss' => get_bloginfo('url'), 'iat' => $now,
        'exp' => $now + 600, 'data' => array('user' => array('id' => (int) $user_id)))));
    return "$h.$p." . wpgate_test_jwt_sign("$h.$p");
}

// The user a valid, unexpired token names; 0 for anything else.
function wpgate_test_jwt_user($token) {
    $parts = explode('.', $token);
    if (count($parts) !== 3 || !hash_equals(wpgate_test_jwt_sign("$parts[0].$parts[1]"), $parts[2])) {
        return 0;
    }
    $claims = json_decode((string) base64_decode(strtr($parts[1], '-_', '+/'), true), true);
    if (!is_array($claims) || !isset($claims['exp'], $claims['data']['user']['id']) || $claims['exp'] < time()) {
        return 0;
    }
    $id = (int) $claims['data']['user']['id'];
    return get_userdata($id) ? $id : 0;
}

add_filter('determine_current_user', function ($user_id) {
    $auth = $_SERVER['HTTP_AUTHORIZATION'] ?? '';
    if ($user_id || stripos($auth, 'Bearer ') !== 0) { return $user_id; }
    return wpgate_test_jwt_user(trim(substr($auth, 7))) ?: $user_id;
}, 30);

add_action('rest_api_init', function () {
    register_rest_route('wpgate-test-jwt/v1', '/token', array(
        'methods' => 'POST',
        'permission_callback' => function () { return is_user_logged_in(); },
        'callback' => function () { return array('token' => wpgate_test_jwt_issue(get_current_user_id())); },
    ));
});
PHP
}

write_jwt_plugin() {
    install -d -m 755 "$WP_CONTENT/mu-plugins"
    write_file "$WP_CONTENT/mu-plugins/wpgate-test-jwt.php" 644 root:root "$(jwt_plugin_source)" || true
}

write_helper() {
    write_file "$HELPER" 644 root:root "$(helper_source)" || true
}

# run_helper CMD SITE -> prints the helper's one-line JSON summary
run_helper() {
    local cmd=$1 site=$2 out
    out=$(timeout 180 php "$HELPER" "$cmd" "$site" "$(site_config "$site")" "$(site_url "$site")" \
        "$SITE_STATE/$site.json" "$STATE/uploads/$site" 2>>"$LOGS/wp-helper.log") ||
        die "WordPress helper '$cmd' failed for $site (see $LOGS/wp-helper.log)"
    chown -R "$WEB_USER:$WEB_USER" "$STATE/uploads/$site"
    printf '%s' "$out"
}

render_outputs() {
    timeout 30 php "$HELPER" render "$STATE" "${SITES[@]}" 2>>"$LOGS/wp-helper.log" ||
        die "writing sites.env/sites.json failed (see $LOGS/wp-helper.log)"
}

# ---------------------------------------------------------------------------------------
# sites

users_me_code() { # SITE [BODYFILE] -> HTTP status of users/me with the recorded app password
    load_site_state "$1" || { echo none; return 0; }
    [ "$S_URL" == "$(site_url "$1")" ] && [ -n "$S_APP_PASSWORD" ] || { echo stale; return 0; }
    http_get "${2:-/dev/null}" "$S_URL/wp-json/wp/v2/users/me" "$S_USER" "$S_APP_PASSWORD"
}

declare -A ME_OK=() # sites whose users/me already answered 200 as the admin in this run

ensure_site() {
    local site=$1 code out
    install -d -o "$WEB_USER" -g "$WEB_USER" -m 755 "$STATE/uploads/$site"
    local body
    body=$(mktemp)
    code=$(users_me_code "$site" "$body")
    load_site_state "$site" || true # users_me_code loaded it in a subshell
    if [ "$code" == 200 ] && grep -q "\"id\":$S_USER_ID," "$body"; then
        rm -f "$body"
        ME_OK[$site]=1
        return 0
    fi
    rm -f "$body"
    out=$(run_helper ensure "$site")
    log "$site: $(site_url "$site") ensured (users/me was $code; $out)"
}

# verify_site SITE: /wp-json/ answers JSON and the recorded app password authenticates.
verify_site() {
    local site=$1 url code body
    url=$(site_url "$site")
    body=$(mktemp)
    if ! wait_for 30 "$site /wp-json/" eval "[ \"\$(http_get '$body' '$url/wp-json/')\" == 200 ]"; then
        code=$(http_get "$body" "$url/wp-json/")
        log "GET $url/wp-json/ -> $code: $(head -c 400 "$body")"
        rm -f "$body"
        die "$site: /wp-json/ does not answer 200"
    fi
    if ! grep -Eq '"wp(\\)?/v2"' "$body"; then # WordPress escapes slashes in JSON
        log "GET $url/wp-json/ body: $(head -c 400 "$body")"
        rm -f "$body"
        die "$site: /wp-json/ is not WordPress's REST index"
    fi
    load_site_state "$site" || die "$site has no recorded state"
    if [ -n "${ME_OK[$site]:-}" ]; then
        rm -f "$body"
        log "$site: OK  $url  (user $S_USER id $S_USER_ID, app password $S_APP_PASSWORD_UUID)"
        return 0
    fi
    code=$(http_get "$body" "$url/wp-json/wp/v2/users/me" "$S_USER" "$S_APP_PASSWORD")
    if [ "$code" != 200 ] || ! grep -q "\"id\":$S_USER_ID," "$body"; then
        log "GET $url/wp-json/wp/v2/users/me as $S_USER -> $code: $(head -c 400 "$body")"
        rm -f "$body"
        die "$site: the application password does not authenticate"
    fi
    rm -f "$body"
    log "$site: OK  $url  (user $S_USER id $S_USER_ID, app password $S_APP_PASSWORD_UUID)"
}

prepare_dirs() {
    install -d -m 755 "$STATE" "$RUN" "$SITE_STATE" "$STATE/uploads" "$STATE/nginx"
    install -d -m 755 -o "$WEB_USER" -g "$WEB_USER" "$LOGS"
    touch "$LOGS/php-error.log"
    chown "$WEB_USER:$WEB_USER" "$LOGS/php-error.log"
    # nginx workers and php-fpm run as www-data: they need the php-fpm socket and uploads.
    runuser -u "$WEB_USER" -- test -w "$LOGS" ||
        fail "$WEB_USER cannot reach $STATE: WPGATE_WP_STATE must be traversable by $WEB_USER"
}

# Serialises concurrent runs (e.g. parallel tests each calling setup). Daemons are started
# with fd 9 closed, or they would hold the lock forever.
lock() {
    install -d -m 755 "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 600 9 || fail "another $ME holds $STATE/.lock for more than 600s"
}

check_ports() {
    local site p seen=" "
    for site in "${SITES[@]}"; do
        p=${PORT[$site]}
        [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || fail "bad port '$p' for $site"
        [[ "$seen" != *" $p "* ]] || fail "port $p is given to two sites"
        seen+="$p "
    done
}

cmd_setup() {
    local t0=$SECONDS site changed
    ensure_packages
    prepare_dirs
    ensure_mariadb
    for site in "${SITES[@]}"; do ensure_wp_config "$site"; done
    ensure_databases
    write_helper
    write_jwt_plugin
    write_php_fpm_conf
    ensure_php_fpm
    for site in "${SITES[@]}"; do
        check_port_free "$site"
        changed=""
        write_nginx_conf "$site" && changed=1
        start_nginx "$site" "$changed"
    done
    for site in "${SITES[@]}"; do ensure_site "$site"; done
    render_outputs # rewrites sites.env/json only when their content changes
    for site in "${SITES[@]}"; do verify_site "$site"; done
    log "ready in $((SECONDS - t0))s: $STATE/sites.env, $STATE/sites.json"
}

cmd_stop() {
    local site
    for site in "${SITES[@]}"; do stop_nginx "$site"; done
    stop_pid "$RUN/php-fpm.pid" php-fpm "$STATE/php-fpm.conf"
    rm -f "$RUN/php-fpm.sock"
    log "stopped nginx (${SITES[*]}) and php-fpm"
}

need_setup_done() {
    [ -f "$(nginx_conf "$1")" ] && [ -f "$SITE_STATE/$1.json" ] && [ -f "$HELPER" ] ||
        fail "site $1 is not set up; run $ME first"
}

cmd_status() {
    local site pid
    if pid=$(pid_of "$RUN/php-fpm.pid" php-fpm "$STATE/php-fpm.conf"); then
        echo "php-fpm   running (pid $pid)"
    else
        echo "php-fpm   stopped"
    fi
    for site in "${SITES[@]}"; do
        if pid=$(pid_of "$(nginx_pid "$site")" nginx "$(nginx_conf "$site")"); then
            echo "$site     running $(site_url "$site") (nginx pid $pid)"
        else
            echo "$site     stopped $(site_url "$site")"
        fi
    done
    if tcp_open "$DB_HOST" "$DB_PORT"; then echo "mariadb   answering on $DB_HOST:$DB_PORT"; else echo "mariadb   not answering"; fi
    [ ! -f "$STATE/sites.env" ] || echo "records   $STATE/sites.env $STATE/sites.json"
}

cmd_purge() {
    local site db sql="" host
    cmd_stop
    if [ -x /usr/sbin/mariadbd ] && tcp_open "$DB_HOST" "$DB_PORT"; then
        mysql_root_detect
        for site in "${SITES[@]}"; do
            db=$(site_db "$site")
            sql+="DROP DATABASE IF EXISTS \`$db\`;"
            for host in 127.0.0.1 localhost; do sql+="DROP USER IF EXISTS '$db'@'$host';"; done
        done
        "${MYSQL_ROOT[@]}" -e "$sql" || die "dropping the databases failed"
    fi
    for site in "${SITES[@]}"; do
        local f
        f=$(wp_config_file "$site")
        if [ -f "$f" ] && grep -q 'Managed by wpgate tests/wordpress/setup.sh' "$f"; then rm -f "$f"; fi
    done
    local plugin=$WP_CONTENT/mu-plugins/wpgate-test-jwt.php
    if [ -f "$plugin" ] && grep -q 'Managed by wpgate tests/wordpress/setup.sh' "$plugin"; then rm -f "$plugin"; fi
    case "$STATE" in
    "" | / | /tmp | /root | /home | /var | /usr | /etc) die "refusing to remove state directory '$STATE'" ;;
    esac
    rm -rf "$STATE"
    log "purged: databases, configs and $STATE"
}

main() {
    local cmd=${1:-setup}
    case "$cmd" in -h | --help | help) usage; return 0 ;; esac
    [ "$(id -u)" -eq 0 ] || fail "must run as root (it installs packages, writes /etc/wordpress and runs services)"
    check_ports
    case "$cmd" in
    setup | up | "")
        lock
        cmd_setup
        ;;
    status) cmd_status ;;
    stop)
        lock
        cmd_stop
        ;;
    purge)
        lock
        cmd_purge
        ;;
    stop-site | start-site | revoke-app-password | new-app-password)
        [ $# -eq 2 ] || fail "usage: $ME $cmd NAME (one of: ${SITES[*]})"
        local site=$2 out
        check_site_name "$site"
        lock
        need_setup_done "$site"
        case "$cmd" in
        stop-site)
            stop_nginx "$site"
            log "$site stopped ($(site_url "$site") refuses connections)"
            ;;
        start-site)
            prepare_dirs
            ensure_php_fpm
            check_port_free "$site"
            start_nginx "$site"
            verify_site "$site"
            ;;
        revoke-app-password)
            out=$(run_helper revoke "$site")
            render_outputs
            if [[ "$out" == *'"app_password_revoked":true'* ]]; then
                log "$site: revoked the recorded application password ($out)"
            else
                log "$site: the recorded application password was already gone ($out)"
            fi
            if site_running "$site"; then
                local code
                code=$(users_me_code "$site")
                [ "$code" == 401 ] || die "$site: users/me with the revoked password answers $code, not 401"
            fi
            ;;
        new-app-password)
            out=$(run_helper new-app "$site")
            render_outputs
            log "$site: new application password ($out)"
            if site_running "$site"; then verify_site "$site"; fi
            ;;
        esac
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
