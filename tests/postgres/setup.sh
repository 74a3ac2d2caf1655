#!/usr/bin/env bash
# PostgreSQL on loopback for wpgate's store tests (tests/store_contract.rs,
# tests/store_migrate.rs): a server on 127.0.0.1:5432 that trusts user postgres from
# loopback, with a database `test` the tests create their own databases through.
# Runs as root, needs no init system, installs Debian's `postgresql` with apt-get when
# missing. A quick no-op when everything already answers. Listens on loopback only.
#
# usage: tests/postgres/setup.sh        (then: WPGATE_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test)
set -euo pipefail

HOST=127.0.0.1
PORT=5432
ME=$(basename "$0")
log() { printf '[%s] %s\n' "$ME" "$*" >&2; }
die() {
    log "ERROR: $*"
    local f
    for f in /var/log/postgresql/*.log; do
        [ -s "$f" ] || continue
        printf '\n----- tail of %s -----\n' "$f" >&2
        tail -n 25 "$f" >&2 || true
    done
    exit 1
}

answers() { # the server answers as postgres without a password, in database $1
    psql -h "$HOST" -p "$PORT" -U postgres -d "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1
}

has_test_db() {
    [ "$(psql -h "$HOST" -p "$PORT" -U postgres -d postgres -XAtqc \
        "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null)" = 1 ]
}

# The integration tests run 8 at a time, several with three gateways on one database
# (each pools up to 16 connections): more than PostgreSQL's default 100.
MAX_CONNECTIONS=300
max_connections() {
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -XAtqc 'SHOW max_connections' 2>/dev/null || echo 0
}

if command -v psql >/dev/null && answers test && [ "$(max_connections)" -ge "$MAX_CONNECTIONS" ]; then
    exit 0 # already set up
fi

# Install (without letting the package start anything: we start it below).
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
    log "installing postgresql"
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
    } >/tmp/wpgate-apt-postgresql.log 2>&1 || rc=$?
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
    if [ "$rc" -ne 0 ]; then
        tail -n 30 /tmp/wpgate-apt-postgresql.log >&2
        die "apt-get install postgresql failed (exit $rc; log /tmp/wpgate-apt-postgresql.log)"
    fi
fi

VERSION=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
if [ -z "$VERSION" ]; then
    VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    log "creating cluster $VERSION/main"
    pg_createcluster "$VERSION" main >/dev/null
fi
CONF=/etc/postgresql/$VERSION/main
[ -d "$CONF" ] || { log "creating cluster $VERSION/main"; pg_createcluster "$VERSION" main >/dev/null; }

# Loopback only, on the port the tests use; trust user postgres from loopback.
changed=""
want_conf=$(printf "listen_addresses = '%s'\nport = %s\nmax_connections = %s\n" "$HOST" "$PORT" "$MAX_CONNECTIONS")
if [ "$(cat "$CONF/conf.d/90-wpgate-tests.conf" 2>/dev/null)" != "$want_conf" ]; then
    mkdir -p "$CONF/conf.d"
    printf '%s\n' "$want_conf" >"$CONF/conf.d/90-wpgate-tests.conf"
    changed=restart
fi
hba_line="host all postgres $HOST/32 trust"
if ! grep -qxF "$hba_line" "$CONF/pg_hba.conf"; then
    # First matching line wins: put ours first.
    { echo "# wpgate tests (tests/postgres/setup.sh)"; echo "$hba_line"; cat "$CONF/pg_hba.conf"; } >"$CONF/pg_hba.conf.new"
    chown --reference="$CONF/pg_hba.conf" "$CONF/pg_hba.conf.new"
    chmod --reference="$CONF/pg_hba.conf" "$CONF/pg_hba.conf.new"
    mv "$CONF/pg_hba.conf.new" "$CONF/pg_hba.conf"
    [ -n "$changed" ] || changed=reload
fi

status=0
pg_ctlcluster --skip-systemctl-redirect "$VERSION" main status >/dev/null 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    log "starting PostgreSQL $VERSION/main"
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start || die "pg_ctlcluster start failed"
elif [ -n "$changed" ]; then
    log "PostgreSQL $VERSION/main: configuration changed, ${changed}ing"
    pg_ctlcluster --skip-systemctl-redirect "$VERSION" main "$changed" || die "pg_ctlcluster $changed failed"
fi

deadline=$((SECONDS + 30))
until answers postgres; do
    [ "$SECONDS" -lt "$deadline" ] || die "PostgreSQL does not answer on $HOST:$PORT as postgres within 30s"
    sleep 0.5
done
if ! has_test_db; then
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -XAtqc 'CREATE DATABASE test' >/dev/null ||
        die "cannot create database test"
fi
answers test || die "database test does not answer"
log "PostgreSQL $VERSION answers on $HOST:$PORT (user postgres, database test)"
