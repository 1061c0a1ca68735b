#!/usr/bin/env bash
# Runs once, when the primary's data volume is first initialised (the postgres image runs the
# files of /docker-entrypoint-initdb.d as the postgres user): creates the `replicator` role the
# replica streams with, and lets it connect for replication with a password.
set -euo pipefail

if [ -z "${REPLICATION_PASSWORD:-}" ]; then
  echo "10-replication.sh: REPLICATION_PASSWORD is not set" >&2
  exit 1
fi

# The password goes through a psql variable, never through the command line or the log.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --set=pw="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SQL

echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
echo "10-replication.sh: role replicator created; pg_hba.conf allows it to replicate"
