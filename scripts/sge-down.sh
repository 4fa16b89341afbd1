#!/usr/bin/env bash
# Stop the Grid Engine daemons that scripts/sge-up.sh started (recorded by PID
# in its state file; never by process name), then remove the state file.
# Idempotent: without a state file there is nothing of ours to stop.
set -euo pipefail

STATE_FILE=${ARVADOS_DISPATCH_SGE_STATE:-/run/arvados-dispatch-sge.pids}
export SGE_ROOT=/var/lib/gridengine
export SGE_CELL=default
H=$(hostname)

say() { echo "sge-down: $*"; }

if [[ ! -f $STATE_FILE ]]; then
  say "no state file ($STATE_FILE); nothing to stop"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "sge-down: must run as root" >&2; exit 1; }

# ours NAME PID: the PID is still the daemon we started and not a zombie
# (PID 1 here may reap a stopped daemon late, so kill -0 is not enough).
ours() {
  local state
  [[ -r /proc/$2/comm && $(cat "/proc/$2/comm") == "$1" ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$2/stat" 2>/dev/null | cut -c1)
  [[ -n $state && $state != Z && $state != X ]]
}

# Stop in reverse start order: execd, then qmaster. Ask politely through
# qconf first (the daemons then write their state), then by signal.
mapfile -t lines < <(tac "$STATE_FILE")
for line in "${lines[@]}"; do
  read -r name pid <<<"$line"
  [[ -n ${name:-} && ${pid:-} =~ ^[0-9]+$ ]] || continue
  if ! ours "$name" "$pid"; then
    say "$name ($pid) already gone"
    continue
  fi
  case $name in
    sge_execd) timeout 10 qconf -ke "$H" >/dev/null 2>&1 || true ;;
    sge_qmaster) timeout 10 qconf -km >/dev/null 2>&1 || true ;;
  esac
  for ((i = 0; i < 100; i++)); do
    ours "$name" "$pid" || break
    sleep 0.1
  done
  if ours "$name" "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      ours "$name" "$pid" || break
      sleep 0.1
    done
  fi
  if ours "$name" "$pid"; then
    say "$name ($pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  say "stopped $name ($pid)"
done
rm -f "$STATE_FILE"
