#!/usr/bin/env bash
# putallkv on Redis Cluster against the direct clients (./build.sh bench cluster): starts a
# Redis Cluster of 3 masters and 3 replicas (script/redis-cluster.sh) and a one-master cluster,
# with two putallkv nodes on each (store.engine redis_cluster, redis.replicas_ack 0 like the
# direct clients' MSET, plus two nodes with replicas_ack 1 on the 3-master cluster), and drives,
# with the same workload (50 callers, 16 keys of 64 bytes an operation):
#   - one-slot batches (--one-slot: the keys share a hash tag): rueidis MSET, go-redis MSET, and
#     putallkv ATOMIC PutAll through the SDK spread over both nodes, with replicas_ack 0 and 1;
#   - spread keys: rueidis (one MSET per slot, side by side), go-redis (per-slot MSETs in a
#     pipeline) and putallkv BEST_EFFORT PutAll;
#   - the same one-slot runs against the one-master cluster.
# The nodes load putallkv's Redis module (script/redis-module.sh), and the putallkv runs are
# made twice more with nodes that apply through it (redis.module) instead of the Lua script.
# Each putallkv run is made twice, once measuring the CPU of its two nodes and once that of the
# masters, so that the CPU per key of each tier is known (the scaling model in
# docs/redis-cluster.md); the direct clients' runs measure the masters. The figures are printed
# side by side as ratios to rueidis's. Redis is installed with apt when missing (as root).
#
# Environment: BENCH_DURATION (default 6s per run), BENCH_CONCURRENCY (50), BENCH_BATCH (16),
# BENCH_VALUE (64 bytes), BENCH_CLUSTER_PORT (17000: the 3-master cluster on it..+5, the
# one-master cluster on +10; Redis's cluster-bus ports are 10000 above), BENCH_CLUSTER_KV_PORT
# (18960: the twelve putallkv nodes on it, +2, .. +22, each node's admin port BENCH_ADMIN_OFFSET,
# default 1, above it).
# Reports land in output/bench/cluster/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

base=${BENCH_CLUSTER_PORT:-17000}
single=$((base + 10))
kvbase=${BENCH_CLUSTER_KV_PORT:-18960}
BENCH_ADMIN_OFFSET=${BENCH_ADMIN_OFFSET:-1}
default_duration=6s
source script/bench-lib.sh

out=output/bench/cluster
mkdir -p "$out"

module=$(script/redis-module.sh)
REDIS_CLUSTER_MODULE=$module script/redis-cluster.sh up "$base" "$work/cluster" >/dev/null
stop_all() {
  script/redis-cluster.sh down "$base" "$work/cluster" >/dev/null 2>&1 || true
  cleanup
}
trap stop_all EXIT

# The one-master cluster: one node holding every slot (redis-cli --cluster create needs three).
mkdir -p "$work/single"
redis-server --bind 127.0.0.1 --port "$single" --cluster-enabled yes --cluster-config-file "$work/single/nodes.conf" \
  --save '' --appendonly no --dir "$work/single" --loadmodule "$module" >"$work/single.log" 2>&1 & pids+=($!)
wait_port "$single"
redis-cli -p "$single" cluster addslotsrange 0 16383 >/dev/null
for _ in $(seq 100); do
  redis-cli -p "$single" cluster info | grep -q '^cluster_state:ok' && break
  sleep 0.1
done

# masters PORT...: the pids of the nodes among the ports that are masters, comma-separated.
masters() {
  local p list=()
  for p in "$@"; do
    if redis-cli -p "$p" role | head -1 | grep -q master; then
      list+=("$(redis-cli -p "$p" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')")
    fi
  done
  (IFS=,; echo "${list[*]}")
}
three=$(masters $(seq "$base" $((base + 5))))
one=$(masters "$single")
seeds=127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))

node() { # node NAME PORT SEEDS ACK [MODULE]
  putallkv "$1" "$2" PUTALLKV_STORE_ENGINE=redis_cluster PUTALLKV_REDIS_ADDRS="$3" PUTALLKV_REDIS_REPLICAS_ACK="$4" \
    PUTALLKV_REDIS_MODULE="${5:-false}"
}
declare -A port=([a]=$kvbase [b]=$((kvbase + 2)) [c]=$((kvbase + 4)) [d]=$((kvbase + 6)) [e]=$((kvbase + 8)) [f]=$((kvbase + 10))
  [g]=$((kvbase + 12)) [h]=$((kvbase + 14)) [i]=$((kvbase + 16)) [j]=$((kvbase + 18)) [k]=$((kvbase + 20)) [l]=$((kvbase + 22)))
node a "${port[a]}" "$seeds" 0; node b "${port[b]}" "$seeds" 0
node c "${port[c]}" "$seeds" 1; node d "${port[d]}" "$seeds" 1
node e "${port[e]}" "127.0.0.1:$single" 0; node f "${port[f]}" "127.0.0.1:$single" 0
node g "${port[g]}" "$seeds" 0 true; node h "${port[h]}" "$seeds" 0 true
node i "${port[i]}" "127.0.0.1:$single" 0 true; node j "${port[j]}" "127.0.0.1:$single" 0 true
node k "${port[k]}" "$seeds" 1 true; node l "${port[l]}" "$seeds" 1 true
for p in "${port[@]}"; do wait_port "$p"; done

# The masters' own measure of their commands: INFO commandstats, reset before each run and
# summed over the masters after it (calls and µs per call, the commands a script runs
# included), saved as NAME.cmdstats. It is Redis's own measure of each command, so it leaves out
# the network; it is wall-clock time, so a busy machine inflates it too (compare the commands a
# script runs with the same commands sent alone to see by how much).
redis_ports="$(seq "$base" $((base + 5))) $single"
resetstats() {
  local p
  for p in $redis_ports; do redis-cli -p "$p" config resetstat >/dev/null; done
}
cmdstats() {
  local p
  for p in $redis_ports; do
    if redis-cli -p "$p" role | head -1 | grep -q master; then redis-cli -p "$p" info commandstats; fi
  done | tr -d '\r' | awk -F'[:,=]' '/^cmdstat_/ { c[$1] += $3; u[$1] += $5 }
    END { for (k in c) if (c[k] > 0) printf "  %-10s calls %9d  usec_per_call %7.1f\n", substr(k, 9), c[k], u[k] / c[k] }' | sort
}

bench() { # bench NAME PIDS DESCRIPTION ARGS...
  local name=$1 pids=$2 desc=$3; shift 3
  echo "bench: $desc" >&2
  resetstats
  output/bin/putallbench --steps "$conc" --batch "$batch" --value-size "$value" --duration "$duration" \
    --json --describe "$desc" --pid "$pids" "$@" >"$out/$name.json"
  cmdstats >"$out/$name.cmdstats"
}
kv() { # kv NAME NODES... -- ARGS: a putallkv run measured on its nodes, then on the masters
  local name=$1 a=$2 b=$3 ms=$4 desc=$5; shift 5
  bench "$name" "${pid[$a]},${pid[$b]}" "$desc (CPU: the 2 putallkv nodes)" --target rpc \
    --addr "127.0.0.1:${port[$a]},127.0.0.1:${port[$b]}" "$@"
  bench "$name-masters" "$ms" "$desc (CPU: the masters)" --target rpc \
    --addr "127.0.0.1:${port[$a]},127.0.0.1:${port[$b]}" "$@"
}

bench rueidis-slot "$three" "rueidis MSET, one slot, 3 masters" --target rueidis --addr "$seeds" --one-slot
bench goredis-slot "$three" "go-redis MSET, one slot, 3 masters" --target redis --addr "$seeds" --one-slot
kv kv-slot a b "$three" "putallkv ATOMIC, one slot, 3 masters, replicas_ack 0" --one-slot --mode atomic
kv kv-slot-ack c d "$three" "putallkv ATOMIC, one slot, 3 masters, replicas_ack 1" --one-slot --mode atomic
kv kv-slot-mod g h "$three" "putallkv ATOMIC, one slot, 3 masters, replicas_ack 0, module" --one-slot --mode atomic
kv kv-slot-ack-mod k l "$three" "putallkv ATOMIC, one slot, 3 masters, replicas_ack 1, module" --one-slot --mode atomic
bench rueidis-spread "$three" "rueidis MSET per slot, spread keys, 3 masters" --target rueidis --addr "$seeds"
bench goredis-spread "$three" "go-redis MSETs per slot pipelined, spread keys, 3 masters" --target redis --addr "$seeds"
kv kv-spread a b "$three" "putallkv BEST_EFFORT, spread keys, 3 masters, replicas_ack 0" --mode best_effort
kv kv-spread-mod g h "$three" "putallkv BEST_EFFORT, spread keys, 3 masters, replicas_ack 0, module" --mode best_effort
bench rueidis-one "$one" "rueidis MSET, one slot, 1 master" --target rueidis --addr "127.0.0.1:$single" --one-slot
kv kv-one e f "$one" "putallkv ATOMIC, one slot, 1 master, replicas_ack 0" --one-slot --mode atomic
kv kv-one-mod i j "$one" "putallkv ATOMIC, one slot, 1 master, replicas_ack 0, module" --one-slot --mode atomic

echo
echo "$(nproc) cores; $conc callers, $batch keys of $value bytes per operation, $duration per run"
echo "one slot, 3 masters (srv CPU: the masters for Redis clients, the putallkv nodes for putallkv):"
output/bin/putallbench compare "$out/rueidis-slot.json" "$out/goredis-slot.json" "$out/kv-slot.json" "$out/kv-slot-ack.json" "$out/kv-slot-mod.json" "$out/kv-slot-ack-mod.json"
echo "spread keys, 3 masters:"
output/bin/putallbench compare "$out/rueidis-spread.json" "$out/goredis-spread.json" "$out/kv-spread.json" "$out/kv-spread-mod.json"
echo "one slot, 1 master:"
output/bin/putallbench compare "$out/rueidis-one.json" "$out/kv-one.json" "$out/kv-one-mod.json"
echo "the masters' CPU under putallkv's runs:"
output/bin/putallbench compare "$out/kv-slot-masters.json" "$out/kv-slot-ack-masters.json" "$out/kv-slot-mod-masters.json" "$out/kv-slot-ack-mod-masters.json" \
  "$out/kv-spread-masters.json" "$out/kv-spread-mod-masters.json" "$out/kv-one-masters.json" "$out/kv-one-mod-masters.json"
echo "the masters' commands (INFO commandstats) per run:"
for f in rueidis-slot goredis-slot kv-slot kv-slot-ack kv-slot-mod kv-slot-ack-mod rueidis-spread kv-spread kv-spread-mod rueidis-one kv-one kv-one-mod; do
  echo "$f:"; cat "$out/$f.cmdstats"
done
