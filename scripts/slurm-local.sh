#!/usr/bin/env bash
# Start a one-node SLURM cluster (partitions cpu and gpu with a fake GPU gres) on this machine.
# Needs root (Debian): installs slurm-wlm and munge when missing. Idempotent: `start` again is harmless.
# Usage: scripts/slurm-local.sh start|stop|status
set -euo pipefail
cmd=${1:-start}
here=$(cd "$(dirname "$0")" && pwd)
state=${TDPH_SLURM_STATE:-/var/lib/tdph-slurm}
host=$(hostname -s)
conf_dir=/etc/slurm

start() {
  if ! command -v slurmctld >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  mkdir -p "$state/ctld" "$state/d" "$conf_dir" /run/munge
  sed -e "s/@HOST@/$host/g" -e "s#@STATE@#$state#g" -e "s/@CPUS@/$(nproc)/g" \
      "$here/slurm/slurm.conf.in" > "$conf_dir/slurm.conf"
  sed -e "s/@HOST@/$host/g" "$here/slurm/gres.conf.in" > "$conf_dir/gres.conf"
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown -R munge: /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      sinfo
      return 0
    fi
    sleep 1
  done
  echo "SLURM node did not become idle; logs in $state" >&2
  sinfo >&2 || true
  return 1
}

stop() {
  pkill -x slurmd || true
  pkill -x slurmctld || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
