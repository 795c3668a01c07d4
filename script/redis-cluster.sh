#!/usr/bin/env bash
# A Redis Cluster on loopback for putallkv's redis_cluster engine: 3 masters and 3 replicas.
#
#   script/redis-cluster.sh up   [BASE_PORT] [DIR]
#   script/redis-cluster.sh down [BASE_PORT] [DIR]
#   script/redis-cluster.sh restart BASE_PORT PORT
#
# up starts six redis-server processes in cluster mode on 127.0.0.1:BASE_PORT..BASE_PORT+5
# (BASE_PORT defaults to 7000), each with its data in DIR/PORT (DIR defaults to a new temporary
# directory, printed), creates the cluster (one replica per master) and waits, at most
# REDIS_CLUSTER_WAIT seconds (default 60), until every node reports cluster_state:ok and every
# replica's link to its master is up (so that a WAIT for one replica can be confirmed). It records
# the pids it started in DIR/pids, and the directory in /tmp/putallkv-redis-cluster-BASE_PORT so
# that down finds it without DIR. When redis-server is missing, up installs it with apt-get (as
# root; otherwise it says so and stops).
#
# With REDIS_CLUSTER_TLS_DIR set, the nodes speak only TLS (see below). With
# REDIS_CLUSTER_MODULE set to a built module (script/redis-module.sh), every node loads it
# (up and restart alike) and takes MODULE commands from loopback connections.
#
# Every node runs with cluster-node-timeout REDIS_CLUSTER_NODE_TIMEOUT (ms, default 5000: a dead
# master is replaced by its replica in about that) and cluster-require-full-coverage no (while one master's slots fail over, the other
# masters' slots keep serving instead of the whole cluster answering CLUSTERDOWN).
#
# restart starts the node of PORT again (after it died: a failover test's kill -9), with its
# data directory and cluster configuration, and records its new pid in place of the old one: it
# rejoins the cluster as a replica of the master that replaced it.
#
# down stops exactly the processes up recorded, after checking that each pid is still a
# redis-server, then removes DIR if up created it; it never touches other processes.
set -euo pipefail

cmd=${1:-}
base=${2:-7000}
dir=${3:-}
[ "$cmd" = restart ] && dir=''
node_port=${3:-}
wait_s=${REDIS_CLUSTER_WAIT:-60}
node_timeout=${REDIS_CLUSTER_NODE_TIMEOUT:-5000}
tls_dir=${REDIS_CLUSTER_TLS_DIR:-}
module=${REDIS_CLUSTER_MODULE:-}

die() { echo "redis-cluster: $*" >&2; exit 1; }

# With REDIS_CLUSTER_TLS_DIR the nodes speak TLS only (clients, replication and the cluster
# bus), with the certificates of that directory: ca.pem (verifies every peer), server.pem and
# server-key.pem (what a node serves), client.pem and client-key.pem (what it and redis-cli
# present: clients must have a certificate).
node_tls=()
cli_tls=()
if [ -n "$tls_dir" ]; then
  if [ "$cmd" != down ]; then # down needs no certificate: their directory may be gone already
    for f in ca.pem server.pem server-key.pem client.pem client-key.pem; do
      [ -r "$tls_dir/$f" ] || die "REDIS_CLUSTER_TLS_DIR has no readable $f"
    done
  fi
  node_tls=(--tls-cluster yes --tls-replication yes --tls-ca-cert-file "$tls_dir/ca.pem"
    --tls-cert-file "$tls_dir/server.pem" --tls-key-file "$tls_dir/server-key.pem"
    --tls-client-cert-file "$tls_dir/client.pem" --tls-client-key-file "$tls_dir/client-key.pem")
  cli_tls=(--tls --cacert "$tls_dir/ca.pem" --cert "$tls_dir/client.pem" --key "$tls_dir/client-key.pem")
fi

# cli runs redis-cli, over TLS when the nodes speak it.
cli() { redis-cli "${cli_tls[@]}" "$@"; }

if [ -n "$module" ] && [ "$cmd" != down ] && [ ! -r "$module" ]; then
  die "REDIS_CLUSTER_MODULE=$module is not a readable file (build it with script/redis-module.sh)"
fi

nodes=6
marker=/tmp/putallkv-redis-cluster-$base


case "$base" in ''|*[!0-9]*) die "BASE_PORT must be a number, got '$base'" ;; esac
case "$node_timeout" in ''|*[!0-9]*) die "REDIS_CLUSTER_NODE_TIMEOUT must be a number of ms, got '$node_timeout'" ;; esac
[ "$base" -ge 1 ] && [ $((base + nodes - 1)) -le 65535 ] || die "ports $base..$((base + nodes - 1)) are out of range"

source "$(dirname "$0")/server-lib.sh"
ensure_redis() { ensure_package redis-server redis-server redis-cli; }

# is_ours PID: the pid is alive (not a zombie) and is a redis-server.
is_ours() { is_process "$1" redis-server; }

# linked_replicas: how many nodes are replicas whose link to their master is up.
linked_replicas() {
  local n=0 port
  for ((j = 0; j < nodes; j++)); do
    port=$((base + j))
    if cli -h 127.0.0.1 -p "$port" info replication 2>/dev/null | tr -d '\r' | grep -qx 'master_link_status:up'; then
      n=$((n + 1))
    fi
  done
  echo "$n"
}

# node_ok PORT: the node answers cluster_state:ok.
node_ok() {
  cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'
}

up() {
  ensure_redis
  if [ -e "$marker" ]; then
    die "a cluster on base port $base is already recorded in $marker (run: $0 down $base)"
  fi
  local created=0
  if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/putallkv-redis-cluster.XXXXXX); created=1; fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  : >"$dir/pids"
  echo "$dir" >"$marker"
  [ "$created" = 1 ] && touch "$dir/.created-by-up"
  local addrs=() port
  for ((i = 0; i < nodes; i++)); do
    port=$((base + i))
    if listening 127.0.0.1 "$port"; then
      down_recorded; die "127.0.0.1:$port is already in use"
    fi
    start_node "$port"
    echo "$!" >>"$dir/pids"
    addrs+=("127.0.0.1:$port")
  done
  local started=() p
  mapfile -t started <"$dir/pids"
  for ((i = 0; i < nodes; i++)); do
    port=$((base + i))
    local n=0
    until cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; do
      if ! is_ours "${started[$i]}"; then
        tail -n 5 "$dir/$port/redis.log" >&2 || true
        down_recorded; die "the node on port $port exited (its log's end is above)"
      fi
      n=$((n + 1))
      if [ "$n" -gt $((wait_s * 10)) ]; then down_recorded; die "node $port did not answer PING within ${wait_s}s"; fi
      sleep 0.1
    done
  done
  if ! cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
    cat "$dir/create.log" >&2; down_recorded; die "redis-cli --cluster create failed"
  fi
  local deadline=$((SECONDS + wait_s))
  for ((i = 0; i < nodes; i++)); do
    port=$((base + i))
    until node_ok "$port"; do
      if [ "$SECONDS" -ge "$deadline" ]; then down_recorded; die "node $port did not reach cluster_state:ok within ${wait_s}s"; fi
      sleep 0.1
    done
  done
  until [ "$(linked_replicas)" -ge $((nodes / 2)) ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then down_recorded; die "the replicas did not all link to their masters within ${wait_s}s"; fi
    sleep 0.1
  done
  echo "redis-cluster: up on 127.0.0.1:$base..$((base + nodes - 1)), data in $dir"
  echo "addrs=$(IFS=,; echo "${addrs[*]}")"
}

# start_node PORT starts the node of PORT in the background ($! is its pid).
start_node() {
  mkdir -p "$dir/$1"
  local ports=(--port "$1")
  [ -n "$tls_dir" ] && ports=(--port 0 --tls-port "$1")
  local load=()
  [ -n "$module" ] && load=(--loadmodule "$module" --enable-module-command local)
  redis-server "${ports[@]}" "${node_tls[@]}" "${load[@]}" --bind 127.0.0.1 --dir "$dir/$1" --daemonize no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout" \
    --cluster-require-full-coverage no --appendonly no --save '' \
    --logfile "$dir/$1/redis.log" --pidfile "$dir/$1/redis.pid" </dev/null >/dev/null 2>&1 &
}

restart() {
  [ -f "$marker" ] || die "no cluster recorded for base port $base ($marker is missing)"
  dir=$(cat "$marker")
  case "$node_port" in ''|*[!0-9]*) die "restart needs the node's PORT, got '$node_port'" ;; esac
  local i=$((node_port - base))
  [ "$i" -ge 0 ] && [ "$i" -lt "$nodes" ] || die "port $node_port is not a node of the cluster on $base"
  local old
  old=$(sed -n "$((i + 1))p" "$dir/pids")
  if [ -n "$old" ] && is_ours "$old"; then die "the node on port $node_port (pid $old) is still running"; fi
  start_node "$node_port"
  sed -i "$((i + 1))s/.*/$!/" "$dir/pids"
  local n=0
  until cli -h 127.0.0.1 -p "$node_port" ping 2>/dev/null | grep -q PONG; do
    n=$((n + 1))
    if [ "$n" -gt $((wait_s * 10)) ]; then die "node $node_port did not answer PING within ${wait_s}s"; fi
    sleep 0.1
  done
  echo "redis-cluster: restarted 127.0.0.1:$node_port"
}

# down_recorded stops the processes recorded in $dir/pids and forgets the cluster.
down_recorded() {
  local pids=() p
  if [ -f "$dir/pids" ]; then
    while read -r p; do
      [ -n "$p" ] || continue
      if is_ours "$p"; then kill "$p" 2>/dev/null || true; pids+=("$p"); fi
    done <"$dir/pids"
  fi
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do is_ours "$p" || break; sleep 0.1; done
    if is_ours "$p"; then kill -9 "$p" 2>/dev/null || true; fi
  done
  rm -f "$marker"
  if [ -f "$dir/.created-by-up" ]; then rm -rf "$dir"; else rm -f "$dir/pids"; fi
}

down() {
  if [ -z "$dir" ]; then
    [ -f "$marker" ] || die "no cluster recorded for base port $base ($marker is missing)"
    dir=$(cat "$marker")
  fi
  [ -f "$dir/pids" ] || die "no pids recorded in $dir"
  down_recorded
  echo "redis-cluster: down (base port $base)"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  restart) restart ;;
  *) echo "usage: $0 up|down [BASE_PORT] [DIR] | restart BASE_PORT PORT" >&2; exit 2 ;;
esac
