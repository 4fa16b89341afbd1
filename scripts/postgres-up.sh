#!/usr/bin/env bash
# Bring up a single-node PostgreSQL 15 (Debian packages) for the cluster-lock
# tests, with a user and the databases they connect to: $PGTEST_DB and
# ${PGTEST_DB}_standby. Advisory locks are per database, so the hot-standby
# test (which takes the dispatch lock in the second) runs beside the
# cluster-lock test (the first) without either holding the other's lock
# (see test/helpers/postgres.ts). Idempotent: a cluster
# that is already online is left as it is (and not stopped by
# postgres-down.sh). Must run as root.
#
# Environment knobs (all optional):
#   ARVADOS_DISPATCH_PG_STATE  state file (default /run/arvados-dispatch-postgres.started)
#   PGTEST_USER / PGTEST_PASSWORD / PGTEST_DB  (default arvados_dispatch_test / xyzzy-lock-test / arvados_test)
set -euo pipefail

STATE_FILE=${ARVADOS_DISPATCH_PG_STATE:-/run/arvados-dispatch-postgres.started}
VERSION=15
CLUSTER=main
DB_USER=${PGTEST_USER:-arvados_dispatch_test}
DB_PASSWORD=${PGTEST_PASSWORD:-xyzzy-lock-test}
DB_NAME=${PGTEST_DB:-arvados_test}

die() { echo "postgres-up: $*" >&2; exit 1; }
say() { echo "postgres-up: $*"; }

[[ $(id -u) == 0 ]] || die "must run as root"

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ ! -d /usr/lib/postgresql/$VERSION ]]; then
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL $VERSION is not installed and there is no apt-get"
  say "installing postgresql from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null
fi

status=$(pg_lsclusters --no-header 2>/dev/null | awk -v v=$VERSION -v c=$CLUSTER '$1 == v && $2 == c { print $4 }')
[[ -n $status ]] || die "no PostgreSQL cluster $VERSION/$CLUSTER (pg_createcluster $VERSION $CLUSTER)"
if [[ $status == online ]]; then
  say "cluster $VERSION/$CLUSTER already online"
else
  pg_ctlcluster $VERSION $CLUSTER start
  : >"$STATE_FILE"
  say "started cluster $VERSION/$CLUSTER"
fi

psql_su() { su postgres -c "psql -v ON_ERROR_STOP=1 -qAt $*"; }
for ((i = 0; i < 50; i++)); do
  psql_su "-c 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
if [[ $(psql_su "-c \"select 1 from pg_roles where rolname = '$DB_USER'\"") != 1 ]]; then
  psql_su "-c \"create user $DB_USER with password '$DB_PASSWORD' superuser\"" >/dev/null
else
  psql_su "-c \"alter user $DB_USER with password '$DB_PASSWORD'\"" >/dev/null
fi
for db in "$DB_NAME" "${DB_NAME}_standby"; do
  if [[ $(psql_su "-c \"select 1 from pg_database where datname = '$db'\"") != 1 ]]; then
    psql_su "-c 'create database $db owner $DB_USER'" >/dev/null
  fi
  PGPASSWORD=$DB_PASSWORD psql -h 127.0.0.1 -U "$DB_USER" "$db" -qAt -c 'select 1' >/dev/null || die "cannot connect as $DB_USER to $db"
done
say "ready: postgresql://$DB_USER@127.0.0.1:5432/$DB_NAME (and ${DB_NAME}_standby)"
