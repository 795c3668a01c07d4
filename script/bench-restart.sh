#!/usr/bin/env bash
# Restart time of a durable node: starts putallkv on a fresh data directory (wal.fsync=none),
# writes BENCH_KEYS keys through putallbench for BENCH_FILL (by then the node has taken snapshots,
# and the log after the newest one is left to replay), stops it, then BENCH_ROUNDS times starts
# it on a copy of the directory and prints how long until `putallctl get` answers, the server's
# CPU seconds by then and its putallkv_recovery_duration_seconds.
#
# Environment: BENCH_KEYS (default 1000000), BENCH_FILL (default 40s), BENCH_ROUNDS (default 3),
# BENCH_CONCURRENCY, BENCH_BATCH, BENCH_VALUE (see bench-lib.sh), BENCH_RESTART_PORT (default
# 18896; admin on it + 1), BENCH_RESTART_DIR (restart on a copy of this data directory instead of
# writing one; it is never changed), BENCH_RESTART_BIN (the putallkv binary to restart, default
# output/bin/putallkv: another build's, to compare two on one directory).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source script/bench-lib.sh
keys=${BENCH_KEYS:-1000000}
rounds=${BENCH_ROUNDS:-3}
port=${BENCH_RESTART_PORT:-18896}
bin=${BENCH_RESTART_BIN:-output/bin/putallkv}
data=${BENCH_RESTART_DIR:-}

die() { echo "bench-restart: $*" >&2; exit 1; }
node() { # node DIR: a durable server on DIR, started in the background; its pid in $node_pid
  env PUTALLKV_SERVER_ADDR=127.0.0.1:$port PUTALLKV_ADMIN_ADDR=127.0.0.1:$((port + 1)) PUTALLKV_GATEWAY_ADDR= \
    PUTALLKV_STORE_DATA_DIR="$1" PUTALLKV_WAL_FSYNC=none "$bin" 2>>"$work/node.log" &
  node_pid=$!
  pids+=("$node_pid")
}
stop() { kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; }

if [ -z "$data" ]; then
  data=$work/data
  node "$data"
  wait_port "$port"
  output/bin/putallbench --addr "127.0.0.1:$port" --keys "$keys" --steps "$conc" --batch "$batch" \
    --value-size "$value" --duration "${BENCH_FILL:-40s}" >/dev/null 2>"$work/fill.log" || die "putallbench failed: $(tail -3 "$work/fill.log")"
  stop
fi
# The log to replay: the segments from the one holding the record after the newest snapshot on.
snap=$(find "$data" -maxdepth 1 -name '*.snap' | sort | tail -1)
cut=$((10#$(basename "${snap:-0.snap}" .snap)))
replay=0 prev=
for seg in $(find "$data" -maxdepth 1 -name '*.wal' | sort) ""; do
  if [ -n "$prev" ] && { [ -z "$seg" ] || [ $((10#$(basename "$seg" .wal) - 1)) -gt "$cut" ]; }; then
    replay=$((replay + $(stat -c %s "$prev")))
  fi
  prev=$seg
done
echo "data directory: $(du -sh "$data" | cut -f1); newest snapshot $(stat -c %s "${snap:-/dev/null}" 2>/dev/null || echo 0) bytes at LSN $cut, then the log to replay in $((replay >> 20)) MiB of segments; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  rm -rf "$work/run" && cp -r "$data" "$work/run" && chmod -R u+w "$work/run" && sync
  start=$(date +%s%N)
  node "$work/run"
  deadline=$((start + 120000000000))
  until { output/bin/putallctl --addr "127.0.0.1:$port" --timeout 1s get bench-restart-probe 2>&1 || true; } | grep -q NOT_FOUND; do
    [ "$(date +%s%N)" -lt "$deadline" ] || die "no answer within 2 minutes (log: $work/node.log)"
    is_process "$node_pid" "$(basename "$bin")" || die "the server exited (log: $work/node.log)"
  done
  end=$(date +%s%N)
  cpu=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$node_pid/stat")
  recovery=$(curl -s "127.0.0.1:$((port + 1))/metrics" | awk '/^putallkv_recovery_duration_seconds/ {printf "%.2f", $2}')
  echo "round $round: first answer after $(awk "BEGIN {printf \"%.2f\", ($end - $start) / 1e9}") s, server CPU $cpu s, recovery $recovery s, load average $(cut -d' ' -f1 /proc/loadavg)"
  stop
done
