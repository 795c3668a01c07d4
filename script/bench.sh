#!/usr/bin/env bash
# The standard comparison on this machine (./build.sh bench): starts putallkv (memory only, and
# durable with wal.fsync=always and =interval), an empty Kitex handler (the framework's ceiling)
# and Redis (persistence off, and appendonly with appendfsync everysec; through go-redis and
# through rueidis, which pipelines concurrent callers by itself) on loopback ports, drives
# each with the same putallbench workload one after the other, and prints the figures side by
# side as ratios to the first. putallkv and the empty handler are driven three times:
# through the generated Kitex client alone (--target kitex), the plain SDK (--coalesce 0: one
# round trip per PutAll) and the SDK as kvclient.New makes it (coalescing: concurrent callers'
# PutAll calls share PutAllMany round trips). Then single-key writes: the SDK's Batcher Put
# against Redis SET through rueidis, at BENCH_CONCURRENCY and at ten times as many callers.
# The HTTP gateway's putAll runs against the memory-only server's gateway. Redis is installed
# through apt-get when it is missing (as root).
#
# Environment: BENCH_DURATION (default 10s per run), BENCH_CONCURRENCY (default 50),
# BENCH_BATCH (default 16), BENCH_VALUE (default 64 bytes), BENCH_COALESCE (round trips in
# flight of the coalescing SDK against memory-only servers; default: the SDK's own) and
# BENCH_COALESCE_DURABLE (the same against fsync=always; default: the SDK's own), BENCH_PORT_BASE (default
# 18888: the servers listen on it and the 40 ports above it, admin ports BENCH_ADMIN_OFFSET,
# default 1000, above theirs). Reports land in output/bench/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

coalesce=${BENCH_COALESCE:-}
coalesce_durable=${BENCH_COALESCE_DURABLE:-}
b=${BENCH_PORT_BASE:-18888}
rpc_port=$b always_port=$((b + 2)) interval_port=$((b + 4)) http_port=$((b + 6)) empty_port=$((b + 11)) redis_port=$((b + 30)) aof_port=$((b + 31))
co=(); if [ -n "$coalesce" ]; then co=(--coalesce "$coalesce"); fi
co_durable=(); if [ -n "$coalesce_durable" ]; then co_durable=(--coalesce "$coalesce_durable"); fi

source script/bench-lib.sh
if ! command -v redis-server >/dev/null 2>&1; then
  echo "bench: installing redis-server" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

out=output/bench
mkdir -p "$out"

putallkv memory $rpc_port PUTALLKV_GATEWAY_ADDR=127.0.0.1:$http_port
mkdir -p "$work/always" "$work/interval" "$work/redis-aof"
putallkv always $always_port PUTALLKV_STORE_DATA_DIR="$work/always" PUTALLKV_WAL_FSYNC=always
putallkv interval $interval_port PUTALLKV_STORE_DATA_DIR="$work/interval" PUTALLKV_WAL_FSYNC=interval
output/bin/putallbench serve --addr 127.0.0.1:$empty_port 2>"$work/empty.log" & pids+=($!); pid[empty]=$!
redis-server --bind 127.0.0.1 --port $redis_port --save '' --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 & pids+=($!); pid[redis]=$!
redis-server --bind 127.0.0.1 --port $aof_port --save '' --appendonly yes --appendfsync everysec \
  --dir "$work/redis-aof" >"$work/redis-aof.log" 2>&1 & pids+=($!); pid[redis-aof]=$!
for p in $rpc_port $http_port $always_port $interval_port $empty_port $redis_port $aof_port; do wait_port "$p"; done

bench() { # bench NAME SERVER DESCRIPTION ARGS...: the server's CPU per call is measured too
  local name=$1 server=$2 desc=$3; shift 3
  echo "bench: $desc" >&2
  output/bin/putallbench --steps "$conc" --batch "$batch" --value-size "$value" --duration "$duration" \
    --json --describe "$desc" --pid "${pid[$server]}" "$@" >"$out/$name.json"
}
bench redis redis "redis MSET, persistence off" --target redis --addr 127.0.0.1:$redis_port
bench rueidis redis "redis MSET through rueidis (auto-pipelining), persistence off" --target rueidis --addr 127.0.0.1:$redis_port
bench rpc memory "putallkv PutAll, memory only, plain SDK" --target rpc --coalesce 0 --addr 127.0.0.1:$rpc_port
bench empty empty "empty Kitex handler, plain SDK" --target rpc --coalesce 0 --addr 127.0.0.1:$empty_port
bench redis-aof redis-aof "redis MSET, appendfsync everysec" --target redis --addr 127.0.0.1:$aof_port
bench rueidis-aof redis-aof "redis MSET through rueidis, appendfsync everysec" --target rueidis --addr 127.0.0.1:$aof_port
bench always always "putallkv PutAll, wal.fsync=always, plain SDK" --target rpc --coalesce 0 --addr 127.0.0.1:$always_port
bench interval interval "putallkv PutAll, wal.fsync=interval, plain SDK" --target rpc --coalesce 0 --addr 127.0.0.1:$interval_port
bench rpc-co memory "putallkv PutAll, memory only, default SDK (coalescing)" --target rpc --addr 127.0.0.1:$rpc_port "${co[@]}"
bench empty-co empty "empty Kitex handler, default SDK (coalescing)" --target rpc --addr 127.0.0.1:$empty_port "${co[@]}"
bench always-co always "putallkv PutAll, wal.fsync=always, default SDK (coalescing)" --target rpc --addr 127.0.0.1:$always_port "${co_durable[@]}"
bench kitex memory "putallkv PutAll, memory only, generated Kitex client" --target kitex --addr 127.0.0.1:$rpc_port
bench empty-kitex empty "empty Kitex handler, generated Kitex client" --target kitex --addr 127.0.0.1:$empty_port
bench http memory "putallkv putAll over the HTTP gateway, memory only" --target http --addr 127.0.0.1:$http_port
single() { # single NAME SERVER DESCRIPTION ARGS...: one key per call, at $conc and 10 x $conc callers
  local name=$1 server=$2 desc=$3; shift 3
  echo "bench: $desc" >&2
  output/bin/putallbench --steps "$conc,$((10 * conc))" --batch 1 --value-size "$value" --duration "$duration" \
    --json --describe "$desc" --pid "${pid[$server]}" "$@" >"$out/$name.json"
}
single set-rueidis redis "redis SET through rueidis, persistence off" --target rueidis --addr 127.0.0.1:$redis_port
single batcher memory "putallkv Batcher Put, memory only" --target batcher --addr 127.0.0.1:$rpc_port

echo
echo "$(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; $conc callers, $batch keys of $value bytes per call, $duration per run; coalescing SDK: ${coalesce:-SDK default} round trips (${coalesce_durable:-SDK default} durable)"
echo "in memory:"
output/bin/putallbench compare "$out/redis.json" "$out/rueidis.json" "$out/kitex.json" "$out/empty-kitex.json" "$out/rpc.json" "$out/empty.json" "$out/rpc-co.json" "$out/empty-co.json" "$out/http.json"
echo "durable:"
output/bin/putallbench compare "$out/redis-aof.json" "$out/rueidis-aof.json" "$out/always.json" "$out/interval.json" "$out/always-co.json" "$out/rpc.json"
echo "single keys:"
output/bin/putallbench compare "$out/set-rueidis.json" "$out/batcher.json"
