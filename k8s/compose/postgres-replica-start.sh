#!/usr/bin/env bash
# The reader: on first start, clone the writer with pg_basebackup (-R writes the standby settings),
# then run as a hot standby that streams the writer's WAL.
set -euo pipefail
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_basebackup -h postgres -U replicator -D "$PGDATA" -Fp -Xs -R; do
    echo "waiting for the writer..." >&2
    sleep 1
  done
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
