#!/usr/bin/env bash
# The replica's entrypoint (runs as the postgres user). On the first start, with an empty data
# volume, it clones the primary with `pg_basebackup -R` (which writes standby.signal and
# primary_conninfo), then it runs PostgreSQL as a read-only hot standby streaming from the primary.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:?PRIMARY_HOST is not set}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD is not set}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "replica: waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
  until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT"; do
    sleep 1
  done
  # Leftovers of an interrupted clone: start again from scratch.
  find "$PGDATA" -mindepth 1 -delete
  echo "replica: cloning the primary with pg_basebackup -R"
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
    --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username=replicator \
    --pgdata="$PGDATA" --write-recovery-conf --wal-method=stream --checkpoint=fast --progress
  chmod 0700 "$PGDATA"
fi

# standby.signal (written by -R) keeps it in recovery: every session is read-only.
exec postgres \
  -c hot_standby=on \
  -c hot_standby_feedback=on \
  -c max_standby_streaming_delay=30s \
  -c max_connections=200 \
  "$@"
