#!/usr/bin/env bash
# Bulk load side by side: BENCH_LOAD_KEYS keys (default 1 000 000) of BENCH_VALUE bytes (default
# 64) loaded three ways, each into an empty store: through putallkv's Load stream (the SDK's
# Loader, chunks of BENCH_LOAD_CHUNK keys, default 1000, BENCH_LOAD_WINDOW in flight, default the
# SDK's), through a loop of PutAll calls of BENCH_LOAD_CHUNK keys one after another through the
# SDK, and into Redis with `redis-cli --pipe` (SET commands of the same keys and values from a
# file written beforehand; persistence off). putallkv (memory only, no quota) is started afresh
# for each run; Redis is flushed. BENCH_ROUNDS rounds (default 3), the order rotating each
# round; each run prints "VIA KEYS SECONDS KEYS/S", each round its ratios and the load average.
#
# Environment: also BENCH_LOAD_PORT (default 18896; admin on it + 1) and BENCH_LOAD_REDIS_PORT
# (default 16381). redis-server is installed with apt-get when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source script/bench-lib.sh
keys=${BENCH_LOAD_KEYS:-1000000}
chunk=${BENCH_LOAD_CHUNK:-1000}
window=${BENCH_LOAD_WINDOW:-8}
rounds=${BENCH_ROUNDS:-3}
port=${BENCH_LOAD_PORT:-18896}
redis_port=${BENCH_LOAD_REDIS_PORT:-16381}
die() { echo "bench-load: $*" >&2; exit 1; }

ensure_package redis-server redis-server redis-cli
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 & pids+=($!)
wait_port "$redis_port"
output/bin/putallbench load --via redis-proto --keys "$keys" --value-size "$value" --chunk "$chunk" >"$work/load.resp"

# run VIA: one timed load, its line on stdout.
run() {
  if [ "$1" = redis-pipe ]; then
    redis-cli -p "$redis_port" flushall >/dev/null
    local start end
    start=$(date +%s.%N)
    redis-cli -p "$redis_port" --pipe <"$work/load.resp" >"$work/pipe.out"
    end=$(date +%s.%N)
    grep -q "errors: 0, replies: $keys" "$work/pipe.out" || die "redis-cli --pipe: $(cat "$work/pipe.out")"
    awk -v k="$keys" -v s="$start" -v e="$end" 'BEGIN { printf "redis-pipe %d %.3f %.0f\n", k, e - s, k / (e - s) }'
    return
  fi
  ! listening 127.0.0.1 "$port" || die "something else listens on 127.0.0.1:$port (BENCH_LOAD_PORT)"
  putallkv "load-$1" "$port" PUTALLKV_ADMIN_ADDR=127.0.0.1:$((port + 1)) PUTALLKV_STORE_MAX_BYTES=0 PUTALLKV_STORE_ENGINE=memory
  wait_port "$port"
  is_process "${pid[load-$1]}" putallkv || die "putallkv did not start: $(cat "$work/load-$1.log")"
  output/bin/putallbench load --via "$1" --addr "127.0.0.1:$port" --keys "$keys" --value-size "$value" \
    --chunk "$chunk" --window "$window"
  kill "${pid[load-$1]}"; wait "${pid[load-$1]}" 2>/dev/null || true
}

ways=(stream putall redis-pipe)
for round in $(seq "$rounds"); do
  echo "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  declare -A rate=()
  for i in 0 1 2; do
    way=${ways[$(((i + round - 1) % 3))]}
    line=$(run "$way")
    echo "  $line"
    rate[$way]=$(echo "$line" | cut -d' ' -f4)
  done
  awk -v s="${rate[stream]}" -v p="${rate[putall]}" -v r="${rate[redis-pipe]}" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "  stream / PutAll loop %.2fx, stream / redis-cli --pipe %.2fx (load average %s)\n", s / p, s / r, l }'
done
