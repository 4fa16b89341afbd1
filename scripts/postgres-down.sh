#!/usr/bin/env bash
# Stop the PostgreSQL cluster scripts/postgres-up.sh started, and nothing
# else: a cluster that was already online when it ran is left running.
set -euo pipefail

STATE_FILE=${ARVADOS_DISPATCH_PG_STATE:-/run/arvados-dispatch-postgres.started}
if [[ ! -f $STATE_FILE ]]; then
  echo "postgres-down: nothing started by postgres-up.sh"
  exit 0
fi
pg_ctlcluster 15 main stop || true
rm -f "$STATE_FILE"
echo "postgres-down: stopped cluster 15/main"
