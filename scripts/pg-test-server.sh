#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests, from Debian's packages (scripts/install-test-tools.sh
# installs them): initdb in DIR, listening on 127.0.0.1:PORT only, superuser "gateway", trust
# authentication (loopback and a private socket directory only).
#   pg-test-server.sh start DIR PORT
#   pg-test-server.sh stop DIR
#   pg-test-server.sh resume DIR PORT   (start a stopped cluster again, its data kept)
# initdb refuses to run as root: as root, the cluster runs as the "postgres" user the package
# created.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?directory}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ]; then
    echo "pg-test-server: PostgreSQL is not installed (make test-tools installs it as root)" >&2
    exit 3
fi
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
    port=${3:?port}
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || { echo "pg-test-server: no postgres user" >&2; exit 3; }
        chown postgres "$dir"
    fi
    as_owner "$bindir/initdb" -D "$dir/data" -U gateway -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c shared_buffers=16MB" start >/dev/null
    ;;
stop)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    port=${3:?port}
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c shared_buffers=16MB" start >/dev/null
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR | resume DIR PORT" >&2
    exit 2
    ;;
esac
