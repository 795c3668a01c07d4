#!/usr/bin/env bash
# One etcd on loopback, for the registry of putallkv nodes (discovery.etcd_endpoints).
#
#   script/etcd.sh up   [PORT] [DIR]
#   script/etcd.sh down [PORT] [DIR]
#
# up starts an etcd serving clients on 127.0.0.1:PORT (default 2379) and its peer port on
# 127.0.0.1:PORT+1, its data in DIR (default: a new temporary directory, printed), and waits, at
# most ETCD_WAIT seconds (default 30), until it answers /health. It records the pid it started
# in DIR/pid, and the directory in /tmp/putallkv-etcd-PORT so that down finds it without DIR.
# When etcd is missing, up installs Debian's etcd-server with apt-get (as root; otherwise it
# says so and stops).
#
# down stops exactly the process up recorded, after checking that the pid is still an etcd,
# then removes DIR if up created it; it never touches other processes.
set -euo pipefail

cmd=${1:-}
port=${2:-2379}
dir=${3:-}
wait_s=${ETCD_WAIT:-30}
marker=/tmp/putallkv-etcd-$port

die() { echo "etcd: $*" >&2; exit 1; }

case "$port" in ''|*[!0-9]*) die "PORT must be a number, got '$port'" ;; esac
[ "$port" -ge 1 ] && [ $((port + 1)) -le 65535 ] || die "ports $port..$((port + 1)) are out of range"

source "$(dirname "$0")/server-lib.sh"
ensure_etcd() { ensure_package etcd-server etcd; }

# is_ours PID: the pid is alive (not a zombie) and is an etcd.
is_ours() { is_process "$1" etcd; }

healthy() {
  local body
  body=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null) || return 1
  [[ "$body" == *'"health":"true"'* ]]
}

up() {
  ensure_etcd
  if [ -e "$marker" ]; then
    die "an etcd on port $port is already recorded in $marker (run: $0 down $port)"
  fi
  for p in "$port" $((port + 1)); do
    if listening 127.0.0.1 "$p"; then die "127.0.0.1:$p is already in use"; fi
  done
  local created=0
  if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/putallkv-etcd.XXXXXX); created=1; fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  echo "$dir" >"$marker"
  [ "$created" = 1 ] && touch "$dir/.created-by-up"
  local client="http://127.0.0.1:$port" peer="http://127.0.0.1:$((port + 1))"
  etcd --name "putallkv-$port" --data-dir "$dir/data" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "putallkv-$port=$peer" --initial-cluster-state new \
    </dev/null >"$dir/etcd.log" 2>&1 &
  echo "$!" >"$dir/pid"
  local pid=$! deadline=$((SECONDS + wait_s))
  until healthy; do
    if ! is_ours "$pid"; then
      tail -n 5 "$dir/etcd.log" >&2 || true
      down_recorded; die "etcd exited (its log's end is above)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then down_recorded; die "etcd did not answer /health within ${wait_s}s"; fi
    sleep 0.1
  done
  echo "etcd: up on 127.0.0.1:$port, data in $dir"
  echo "endpoints=127.0.0.1:$port"
}

# down_recorded stops the process recorded in $dir/pid and forgets it.
down_recorded() {
  local p=""
  [ -f "$dir/pid" ] && p=$(cat "$dir/pid")
  if [ -n "$p" ] && is_ours "$p"; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 100); do is_ours "$p" || break; sleep 0.1; done
    if is_ours "$p"; then kill -9 "$p" 2>/dev/null || true; fi
  fi
  rm -f "$marker"
  if [ -f "$dir/.created-by-up" ]; then rm -rf "$dir"; else rm -rf "$dir/pid" "$dir/data"; fi
}

down() {
  if [ -z "$dir" ]; then
    [ -f "$marker" ] || die "no etcd recorded for port $port ($marker is missing)"
    dir=$(cat "$marker")
  fi
  [ -f "$dir/pid" ] || die "no pid recorded in $dir"
  down_recorded
  echo "etcd: down (port $port)"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [PORT] [DIR]" >&2; exit 2 ;;
esac
