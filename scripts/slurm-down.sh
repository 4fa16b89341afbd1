#!/usr/bin/env bash
# Stop the Slurm daemons that scripts/slurm-up.sh started, by the PIDs it
# recorded (never by process name), then remove the state file. Idempotent:
# without a state file there is nothing of ours to stop.
#
# Jobs that are still running keep their slurmstepd processes; cancel them
# first (scancel) if that matters.
set -euo pipefail

STATE_FILE=${ARVADOS_DISPATCH_SLURM_STATE:-/run/arvados-dispatch-slurm.pids}

say() { echo "slurm-down: $*"; }

if [[ ! -f $STATE_FILE ]]; then
  say "no state file ($STATE_FILE); nothing to stop"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "slurm-down: must run as root" >&2; exit 1; }

# ours NAME PID: the PID is still the daemon we started (not a reused PID).
ours() { [[ -r /proc/$2/comm && $(cat "/proc/$2/comm") == "$1" ]]; }

# Stop in reverse start order: slurmd, slurmctld, then munged, which both use.
mapfile -t lines < <(tac "$STATE_FILE")
for line in "${lines[@]}"; do
  read -r name pid <<<"$line"
  [[ -n ${name:-} && ${pid:-} =~ ^[0-9]+$ ]] || continue
  if ! ours "$name" "$pid"; then
    say "$name ($pid) already gone"
    continue
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    ours "$name" "$pid" || break
    sleep 0.1
  done
  if ours "$name" "$pid"; then
    say "$name ($pid) ignored SIGTERM for 20s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  say "stopped $name ($pid)"
done
rm -f "$STATE_FILE"
