#!/usr/bin/env bash
# Bring up a single-node Slurm (munged, slurmctld, slurmd) on this machine for
# the real-Slurm integration tests. Idempotent: if everything already answers,
# it does nothing; if only some daemons are up, it starts the missing ones.
#
# The PIDs of the daemons *this script* started are recorded in $STATE_FILE so
# that scripts/slurm-down.sh stops exactly those processes and nothing else.
#
# Environment knobs (all optional):
#   ARVADOS_DISPATCH_SLURM_STATE  state file (default /run/arvados-dispatch-slurm.pids)
#   SLURM_CPUS                    node CPUs (default 16, whatever the hardware has)
#   SLURM_REAL_MEMORY             node RealMemory in MB (default 4000)
#   SLURM_TMP_DISK                node TmpDisk in MB (default: 90% of /tmp's size)
#   SLURM_UP_TIMEOUT              seconds to wait for the node to take jobs (default 60)
set -euo pipefail

STATE_FILE=${ARVADOS_DISPATCH_SLURM_STATE:-/run/arvados-dispatch-slurm.pids}
CPUS=${SLURM_CPUS:-16}
REAL_MEMORY=${SLURM_REAL_MEMORY:-4000}
UP_TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MUNGE_PIDFILE=/run/munge/munged.pid
SLURMCTLD_PIDFILE=/run/slurmctld.pid
SLURMD_PIDFILE=/run/slurmd.pid

die() { echo "slurm-up: $*" >&2; exit 1; }
say() { echo "slurm-up: $*"; }

# alive PIDFILE COMM: true if PIDFILE names a live process whose command is
# COMM. Checking the command guards against a stale file whose PID was reused.
alive() {
  local pid
  [[ -r $1 ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n $pid && -r /proc/$pid/comm ]] || return 1
  [[ $(cat "/proc/$pid/comm") == "$2" ]]
}

# The node answers and can take jobs. Busy (mixed/allocated) counts: other
# tests may be running jobs. A trailing "*" (not responding), down or drained
# does not.
node_usable() {
  local states
  states=$(timeout 10 sinfo --noheader --format='%T' 2>/dev/null) || return 1
  grep -qxE 'idle|mixed|allocated|completing' <<<"$states"
}

# record NAME PIDFILE: note the daemon we just started in the state file,
# replacing any stale line for the same daemon from an earlier run.
record() {
  local pid others=""
  pid=$(tr -dc '0-9' <"$2")
  [[ -f $STATE_FILE ]] && others=$(grep -v "^$1 " "$STATE_FILE" || true)
  { [[ -n $others ]] && printf '%s\n' "$others"; echo "$1 $pid"; } >"$STATE_FILE.tmp"
  mv "$STATE_FILE.tmp" "$STATE_FILE"
}

# wait_for_pidfile PIDFILE COMM: daemons fork before writing their PID file.
wait_for_pidfile() {
  local i
  for ((i = 0; i < 100; i++)); do
    alive "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

# v2: memory enforcement and job accounting; v3: more CPUs than cores. An
# older configuration of ours is rewritten below.
if command -v sinfo >/dev/null 2>&1 && grep -q 'slurm-up.sh (v3)' "$CONF" 2>/dev/null &&
  alive "$MUNGE_PIDFILE" munged && alive "$SLURMCTLD_PIDFILE" slurmctld &&
  alive "$SLURMD_PIDFILE" slurmd && node_usable; then
  say "already running; nothing to do"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 ||
  ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available; install slurm-wlm and munge by hand"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
fi

H=$(hostname -s)
if [[ -n ${SLURM_TMP_DISK:-} ]]; then
  TMP_DISK=$SLURM_TMP_DISK
else
  # slurmd drains a node whose configured TmpDisk exceeds what it measures, so
  # stay below the real size of /tmp (the default TmpFS).
  TMP_DISK=$(($(df -Pm /tmp | awk 'NR == 2 { print $2 }') * 9 / 10))
fi

# More CPUs than the machine has (SlurmdParameters=config_overrides makes
# slurmd accept the configured count): the system tier's files run side by
# side, and their jobs mostly sleep or wait, so each file's jobs start
# without waiting for another file's to end.

# Memory enforcement, so that a job exceeding --mem ends OUT_OF_MEMORY as on a
# real cluster: task/cgroup where a cgroup memory controller is available
# (v1 or v2), else none (jobs then run past --mem; the OOM test is skipped).
CGROUP=
if [[ -d /sys/fs/cgroup/memory ]]; then
  CGROUP=v1
elif [[ -r /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CGROUP=v2
fi
TASK_PLUGIN=task/none
[[ -n $CGROUP ]] && TASK_PLUGIN=task/cgroup

mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge \
  /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
[[ -f /etc/munge/munge.key ]] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 400 /etc/munge/munge.key

NEW_CONF=$(
  cat <<CONF
# Written by arvados-dispatch scripts/slurm-up.sh (v3): a single-node test cluster.
ClusterName=test
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=$TASK_PLUGIN
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=$SLURMCTLD_PIDFILE
SlurmdPidFile=$SLURMD_PIDFILE
NodeName=$H CPUs=$CPUS RealMemory=$REAL_MEMORY TmpDisk=$TMP_DISK State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
)
if [[ -n $CGROUP ]]; then
  printf 'CgroupPlugin=cgroup/%s\nConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nAllowedSwapSpace=0\n' "$CGROUP" >/etc/slurm/cgroup.conf
fi
CONF_CHANGED=
if [[ ! -f $CONF || $(cat "$CONF") != "$NEW_CONF" ]]; then
  CONF_CHANGED=1
  # Keep a copy of a configuration someone else wrote rather than losing it.
  if [[ -f $CONF ]] && ! grep -q 'arvados-dispatch scripts/slurm-up.sh' "$CONF"; then
    cp -p "$CONF" "$CONF.before-arvados-dispatch"
  fi
  printf '%s\n' "$NEW_CONF" >"$CONF"
fi

# Daemons running on an older configuration of ours: restart them (by PID).
if [[ -n $CONF_CHANGED ]]; then
  for d in "$SLURMD_PIDFILE:slurmd" "$SLURMCTLD_PIDFILE:slurmctld"; do
    if alive "${d%%:*}" "${d##*:}"; then
      say "restarting ${d##*:} for the new configuration"
      kill "$(tr -dc '0-9' <"${d%%:*}")"
      for _ in $(seq 100); do alive "${d%%:*}" "${d##*:}" || break; sleep 0.1; done
    fi
  done
fi

if ! alive "$MUNGE_PIDFILE" munged; then
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start (see /var/log/munge/munged.log)"
  wait_for_pidfile "$MUNGE_PIDFILE" munged || die "munged did not write $MUNGE_PIDFILE"
  record munged "$MUNGE_PIDFILE"
fi
if ! alive "$SLURMCTLD_PIDFILE" slurmctld; then
  /usr/sbin/slurmctld || die "slurmctld failed to start (see /var/log/slurm/slurmctld.log)"
  wait_for_pidfile "$SLURMCTLD_PIDFILE" slurmctld || die "slurmctld did not write $SLURMCTLD_PIDFILE"
  record slurmctld "$SLURMCTLD_PIDFILE"
fi
if ! alive "$SLURMD_PIDFILE" slurmd; then
  /usr/sbin/slurmd || die "slurmd failed to start (see /var/log/slurm/slurmd.log)"
  wait_for_pidfile "$SLURMD_PIDFILE" slurmd || die "slurmd did not write $SLURMD_PIDFILE"
  record slurmd "$SLURMD_PIDFILE"
fi

deadline=$((SECONDS + UP_TIMEOUT))
until node_usable; do
  if ((SECONDS >= deadline)); then
    sinfo --list-reasons 2>&1 | sed 's/^/slurm-up: /' >&2 || true
    die "node $H not usable after ${UP_TIMEOUT}s (see /var/log/slurm/*.log)"
  fi
  sleep 1
done
say "up: $(sinfo --noheader --format='%P %a %l %D %T %N' | tr -s ' ')"
