#!/usr/bin/env bash
# Runs once when the writer's data directory is created (docker-entrypoint-initdb.d): a role for
# streaming replication and the pg_hba line that lets the reader connect with it.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '${REPLICATOR_PASSWORD}'"
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
