#!/usr/bin/env bash
# ./build.sh cluster: putallkv on a Redis Cluster, to try the redis_cluster engine on one
# machine. It builds output/ (./build.sh), starts a Redis Cluster (script/redis-cluster.sh up:
# 3 masters and 3 replicas on 127.0.0.1:REDIS_PORT..REDIS_PORT+5) and two putallkv nodes on it,
# prints their addresses, and runs in the foreground until Ctrl-C (or SIGTERM), which stops
# the nodes gracefully and the cluster, and exits 0; it stops exactly what it started. If a
# node fails, it stops the rest and exits 1. The nodes' logs are in a temporary directory, printed,
# removed at the end.
#
# Environment (ports on 127.0.0.1; node 2 takes each node-1 port + 1):
#   CLUSTER_REDIS_PORT  the cluster's first port (7000)
#   CLUSTER_RPC_PORT    node 1's RPC port (8888)
#   CLUSTER_HTTP_PORT   node 1's HTTP gateway port (8080)
#   CLUSTER_ADMIN_PORT  node 1's admin port: /metrics, /readyz (9100)
#   CLUSTER_BIN         a putallkv binary to run instead of building output/
#   CLUSTER_MODULE      1: the Redis nodes load putallkv's Redis module (script/redis-module.sh
#                       builds it) and the putallkv nodes apply writes through it (redis.module)
# Not PUTALLKV_*: the nodes refuse variables of their prefix that name no configuration key.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_port=${CLUSTER_REDIS_PORT:-7000}
rpc_port=${CLUSTER_RPC_PORT:-8888}
http_port=${CLUSTER_HTTP_PORT:-8080}
admin_port=${CLUSTER_ADMIN_PORT:-9100}
bin=${CLUSTER_BIN:-}
module=${CLUSTER_MODULE:-0}
case "$module" in 0|1) ;; *) echo "cluster: CLUSTER_MODULE is 0 or 1, got '$module'" >&2; exit 1 ;; esac

die() { echo "cluster: $*" >&2; exit 1; }

for p in "$redis_port" "$rpc_port" "$http_port" "$admin_port"; do
  case "$p" in ''|*[!0-9]*) die "ports are numbers, got '$p'" ;; esac
done

source script/server-lib.sh

# ready PORT: the admin address on PORT answers /readyz with 200.
ready() { http_ok 127.0.0.1 "$1" /readyz; }

for p in "$rpc_port" "$http_port" "$admin_port"; do
  for q in "$p" $((p + 1)); do
    listening 127.0.0.1 "$q" && die "127.0.0.1:$q is in use: set CLUSTER_RPC_PORT, CLUSTER_HTTP_PORT or CLUSTER_ADMIN_PORT"
  done
done

if [ -z "$bin" ]; then
  ./build.sh
  bin=output/bin/putallkv
fi
[ -x "$bin" ] || die "$bin is not an executable"

work=$(mktemp -d /tmp/putallkv-cluster.XXXXXX)
nodes=()
redis_up=
cleanup() {
  local p
  for p in "${nodes[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${nodes[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$redis_up" ]; then script/redis-cluster.sh down "$redis_port" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "cluster: stopping"; exit 0' INT TERM

load=() use=false
if [ "$module" = 1 ]; then load=("REDIS_CLUSTER_MODULE=$(script/redis-module.sh)"); use=true; fi
env "${load[@]}" script/redis-cluster.sh up "$redis_port" "$work/redis" | tail -n 1 >"$work/addrs"
redis_up=1
addrs=$(sed -n 's/^addrs=//p' "$work/addrs")
[ -n "$addrs" ] || die "script/redis-cluster.sh up printed no addresses"

for n in 1 2; do
  i=$((n - 1))
  env PUTALLKV_STORE_ENGINE=redis_cluster PUTALLKV_REDIS_ADDRS="$addrs" PUTALLKV_REDIS_MODULE=$use \
    PUTALLKV_SERVER_ADDR=127.0.0.1:$((rpc_port + i)) PUTALLKV_GATEWAY_ADDR=127.0.0.1:$((http_port + i)) \
    PUTALLKV_ADMIN_ADDR=127.0.0.1:$((admin_port + i)) "$bin" 2>"$work/node$n.log" &
  nodes+=($!)
done
for n in 1 2; do
  i=$((n - 1))
  for _ in $(seq 300); do
    ready $((admin_port + i)) && continue 2
    kill -0 "${nodes[$i]}" 2>/dev/null || { tail -n 5 "$work/node$n.log" >&2; die "node $n exited at start (its log's end is above)"; }
    sleep 0.1
  done
  die "node $n was not ready within 30s (log: $work/node$n.log)"
done

cat <<EOF
cluster: Redis Cluster on 127.0.0.1:$redis_port..$((redis_port + 5)) (3 masters, 3 replicas); writes applied by $([ "$use" = true ] && echo "the Redis module's PUTALL.APPLY" || echo "the Lua script")
node 1: rpc 127.0.0.1:$rpc_port  http 127.0.0.1:$http_port  admin 127.0.0.1:$admin_port  log $work/node1.log
node 2: rpc 127.0.0.1:$((rpc_port + 1))  http 127.0.0.1:$((http_port + 1))  admin 127.0.0.1:$((admin_port + 1))  log $work/node2.log
try:
  curl -s -X PUT -H 'Content-Type: application/octet-stream' --data-binary hello http://127.0.0.1:$http_port/v1/kv/greeting
  curl -s http://127.0.0.1:$((http_port + 1))/v1/kv/greeting
  putallctl --addr 127.0.0.1:$((rpc_port + 1)) getall greeting
cluster: running; Ctrl-C stops the nodes and the Redis Cluster
EOF

# Ctrl-C reaches the nodes too (the terminal signals the whole process group), and one may
# exit 0 before the trap runs: a node that stopped gracefully ends the run as Ctrl-C does.
set +e
wait -n "${nodes[@]}"
rc=$?
set -e
if [ "$rc" = 0 ]; then echo; echo "cluster: stopping"; exit 0; fi
echo "cluster: a node exited with status $rc; stopping the rest" >&2
exit 1
