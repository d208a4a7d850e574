#!/usr/bin/env bash
# A throwaway PostgreSQL server for trying several workers on one ledger:
#   scripts/pg-throwaway.sh start DIR   -> prints the ledger URL
#   scripts/pg-throwaway.sh stop DIR
# It runs initdb into DIR (as the `postgres` user when run as root: initdb
# refuses root), and pg_ctl on a free 127.0.0.1 port, trust authentication,
# loopback only. Needs Debian's `postgresql` package (`make pg` installs it).
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR}
dir=${2:?usage: $0 start|stop DIR}
bin=${REDRELAY_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "PostgreSQL's server binaries are missing: install Debian's postgresql package (make pg)" >&2
    exit 1
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
    fi
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres redrelay 2>/dev/null || true
    echo "postgres://postgres@127.0.0.1:$port/redrelay"
    ;;
stop)
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
