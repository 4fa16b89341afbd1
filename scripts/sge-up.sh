#!/usr/bin/env bash
# Bring up a single-node Son of Grid Engine (sge_qmaster, sge_execd) from the
# Debian packages on this machine for the real-Grid-Engine integration tests.
# Idempotent: if the queue already takes jobs it does nothing; if only some
# daemons are up, it starts the missing ones. Must run as root.
#
# The PIDs of the daemons *this script* started are recorded in $STATE_FILE so
# that scripts/sge-down.sh stops exactly those processes and nothing else.
#
# Environment knobs (all optional):
#   ARVADOS_DISPATCH_SGE_STATE  state file (default /run/arvados-dispatch-sge.pids)
#   SGE_UP_TIMEOUT              seconds to wait for the queue to take jobs (default 60)
#   SGE_SLOTS                   slots of all.q (default 16, whatever the hardware has)
set -euo pipefail

STATE_FILE=${ARVADOS_DISPATCH_SGE_STATE:-/run/arvados-dispatch-sge.pids}
UP_TIMEOUT=${SGE_UP_TIMEOUT:-60}
SLOTS=${SGE_SLOTS:-16}
export SGE_ROOT=/var/lib/gridengine
export SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
QMASTER_PIDFILE=/var/spool/gridengine/qmaster/qmaster.pid
EXECD_PIDFILE=/run/gridengine/execd.pid
H=$(hostname)

die() { echo "sge-up: $*" >&2; exit 1; }
say() { echo "sge-up: $*"; }

# alive PIDFILE COMM: PIDFILE names a live (not zombie) process whose command
# is COMM. The command check guards against a stale file whose PID was reused;
# the state check against a stopped daemon that PID 1 has not reaped yet.
alive() {
  local pid state
  [[ -r $1 ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n $pid && -r /proc/$pid/comm ]] || return 1
  [[ $(cat "/proc/$pid/comm") == "$2" ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
  [[ -n $state && $state != Z && $state != X ]]
}

# The queue instance on this host exists and has no state flags (no "u"
# unknown, "d" disabled, "E" error, "a" alarm).
queue_usable() {
  local line
  line=$(timeout 10 qstat -f -q "all.q@$H" 2>/dev/null | awk -v q="all.q@$H" '$1 == q') || return 1
  [[ -n $line ]] || return 1
  # Columns: queuename qtype resv/used/tot. load_avg arch [states]
  [[ $(awk '{ print NF }' <<<"$line") -le 5 ]]
}

record() {
  local pid others=""
  pid=$(tr -dc '0-9' <"$2")
  [[ -f $STATE_FILE ]] && others=$(grep -v "^$1 " "$STATE_FILE" || true)
  { [[ -n $others ]] && printf '%s\n' "$others"; echo "$1 $pid"; } >"$STATE_FILE.tmp"
  mv "$STATE_FILE.tmp" "$STATE_FILE"
}

wait_for_pidfile() {
  local i
  for ((i = 0; i < 100; i++)); do
    alive "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

# all.q has $SLOTS slots.
slots_set() {
  [[ $(timeout 10 qconf -sq all.q 2>/dev/null | awk '$1 == "slots" { print $2 }') == "$SLOTS" ]]
}

if command -v qstat >/dev/null 2>&1 &&
  alive "$QMASTER_PIDFILE" sge_qmaster && alive "$EXECD_PIDFILE" sge_execd && queue_usable && slots_set; then
  say "already running; nothing to do"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"

if ! command -v qsub >/dev/null 2>&1 || [[ ! -x /usr/sbin/sge_qmaster || ! -x /usr/sbin/sge_execd ]]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available; install gridengine-master, -exec and -client by hand"
  say "installing gridengine-master, gridengine-exec, gridengine-client (apt-get)"
  for pkg in gridengine-common gridengine-client gridengine-master gridengine-exec; do
    echo "$pkg shared/gridenginemaster string $H"
  done | debconf-set-selections
  printf '%s\n' 'gridengine-common shared/gridengineconfig boolean true' \
    'gridengine-common shared/gridenginecell string default' | debconf-set-selections
  # The packages pull in a mail server; keep maintainer scripts from starting
  # any service, but leave an existing policy in place.
  tmp_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    tmp_policy=/usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends gridengine-master gridengine-exec gridengine-client >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || { [[ -n $tmp_policy ]] && rm -f "$tmp_policy"; die "apt-get update failed"; }
    apt-get install -y -qq --no-install-recommends gridengine-master gridengine-exec gridengine-client >/dev/null ||
      { [[ -n $tmp_policy ]] && rm -f "$tmp_policy"; die "apt-get install gridengine-master gridengine-exec gridengine-client failed"; }
  fi
  [[ -n $tmp_policy ]] && rm -f "$tmp_policy"
fi
[[ -f $COMMON/bootstrap ]] || die "$COMMON/bootstrap is missing: the package's init_cluster did not run (dpkg-reconfigure gridengine-master)"

# This host's name may resolve to 127.0.0.1, whose reverse name is
# "localhost"; qmaster then refuses every client ("access denied"). An alias
# fixes that without touching /etc/hosts.
if [[ ! -f $COMMON/host_aliases ]] || ! grep -qx "$H localhost" "$COMMON/host_aliases"; then
  echo "$H localhost" >"$COMMON/host_aliases"
  chown sgeadmin:sgeadmin "$COMMON/host_aliases"
fi
if [[ $(cat "$COMMON/act_qmaster" 2>/dev/null) != "$H" ]]; then
  echo "$H" >"$COMMON/act_qmaster"
  chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
fi

if ! alive "$QMASTER_PIDFILE" sge_qmaster; then
  /usr/sbin/sge_qmaster || die "sge_qmaster failed to start (see /var/spool/gridengine/qmaster/messages)"
  wait_for_pidfile "$QMASTER_PIDFILE" sge_qmaster || die "sge_qmaster did not write $QMASTER_PIDFILE"
  record sge_qmaster "$QMASTER_PIDFILE"
fi
deadline=$((SECONDS + UP_TIMEOUT))
until qconf -sh >/dev/null 2>&1; do
  ((SECONDS < deadline)) || die "qmaster does not answer after ${UP_TIMEOUT}s: $(qconf -sh 2>&1 | head -1)"
  sleep 0.2
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Configuration changes reach a running execd only partly (a job then fails
# and the queue goes to state E), so configure before starting it.
changed=0
# qconf wraps long values onto continuation lines ("\\" at the end); join
# them so that each attribute is one line before editing.
qconf -sconf global | sed -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*/ /; ta' >"$work/current"
sed -e 's/^min_uid .*/min_uid                      0/' \
  -e 's/^min_gid .*/min_gid                      0/' \
  -e 's/^reporting_params .*/reporting_params             accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00/' \
  "$work/current" >"$work/global"
if ! cmp -s "$work/current" "$work/global"; then
  qconf -Mconf "$work/global" >/dev/null 2>&1 || die "qconf -Mconf global failed"
  changed=1
fi

qconf -ssconf >"$work/sconf.current"
sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
  -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
  -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' \
  "$work/sconf.current" >"$work/sconf"
if ! cmp -s "$work/sconf.current" "$work/sconf"; then
  qconf -Msconf "$work/sconf" >/dev/null 2>&1 || die "qconf -Msconf failed"
fi

qconf -sh 2>/dev/null | grep -qx "$H" || qconf -ah "$H" >/dev/null 2>&1 || die "qconf -ah $H failed"
qconf -ss 2>/dev/null | grep -qx "$H" || qconf -as "$H" >/dev/null 2>&1 || die "qconf -as $H failed"

if ! qconf -sq all.q >/dev/null 2>&1; then
  # qconf -Aq refuses partial files; edit the template through EDITOR instead.
  cat >"$work/edit-queue" <<EOF
#!/bin/sh
sed -i -e 's/^hostlist .*/hostlist              $H/' \\
  -e 's/^slots .*/slots                 $SLOTS/' \\
  -e 's/^pe_list .*/pe_list               NONE/' \\
  -e 's/^load_thresholds .*/load_thresholds       NONE/' "\$1"
EOF
  chmod 755 "$work/edit-queue"
  EDITOR=$work/edit-queue qconf -aq all.q >/dev/null 2>&1 || die "qconf -aq all.q failed"
fi

# More slots than cores: the system tier's files run side by side, and their
# jobs mostly sleep or wait, so each file's jobs start without waiting for
# another file's to end. A queue made with another count is changed.
if ! slots_set; then
  qconf -mattr queue slots "$SLOTS" all.q >/dev/null 2>&1 || die "qconf -mattr queue slots $SLOTS all.q failed"
fi

# qdel then sends SIGTERM, which crunch-run handles by stopping its
# container cleanly, instead of SIGKILL, which leaves the container behind.
if [[ $(qconf -sq all.q | awk '$1 == "terminate_method" { print $2 }') != SIGTERM ]]; then
  qconf -mattr queue terminate_method SIGTERM all.q >/dev/null 2>&1 || die "qconf -mattr queue terminate_method SIGTERM all.q failed"
fi

if alive "$EXECD_PIDFILE" sge_execd && ((changed)); then
  # A running execd keeps stale values: restart it (only if we started it).
  if grep -q "^sge_execd " "$STATE_FILE" 2>/dev/null; then
    qconf -ke "$H" >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do alive "$EXECD_PIDFILE" sge_execd || break; sleep 0.1; done
  fi
fi
if ! alive "$EXECD_PIDFILE" sge_execd; then
  install -d -o sgeadmin /run/gridengine
  SGE_EXECD_PIDFILE=$EXECD_PIDFILE /usr/sbin/sge_execd || die "sge_execd failed to start (see /var/spool/gridengine/execd/$H/messages)"
  wait_for_pidfile "$EXECD_PIDFILE" sge_execd || die "sge_execd did not write $EXECD_PIDFILE"
  record sge_execd "$EXECD_PIDFILE"
fi

deadline=$((SECONDS + UP_TIMEOUT))
until queue_usable; do
  qmod -c "all.q@$H" >/dev/null 2>&1 || true
  qmod -e "all.q@$H" >/dev/null 2>&1 || true
  if ((SECONDS >= deadline)); then
    qstat -f 2>&1 | sed 's/^/sge-up: /' >&2 || true
    die "queue all.q@$H not usable after ${UP_TIMEOUT}s"
  fi
  sleep 0.5
done
say "up: all.q@$H, $SLOTS slots"
