# Shared by the benchmark scripts (sourced by bench.sh and bench-security.sh): the workload
# settings, the binaries, a scratch directory, the processes started (stopped at exit),
# wait_port and putallkv. A script may set default_duration before sourcing it.
#
# Environment: BENCH_DURATION (per run), BENCH_CONCURRENCY (50 callers), BENCH_BATCH (16 keys
# a PutAll), BENCH_VALUE (64 bytes).
duration=${BENCH_DURATION:-${default_duration:-10s}}
conc=${BENCH_CONCURRENCY:-50}
batch=${BENCH_BATCH:-16}
value=${BENCH_VALUE:-64}

./build.sh
source script/server-lib.sh

work=$(mktemp -d)
pids=()
declare -A pid
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_port PORT: until something listens on 127.0.0.1:PORT (at most 10s).
wait_port() {
  for _ in $(seq 100); do
    if listening 127.0.0.1 "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench: nothing listens on 127.0.0.1:$1" >&2; return 1
}

# putallkv NAME PORT [VAR=VALUE...]: a server on PORT (admin on PORT+BENCH_ADMIN_OFFSET, default
# 1000; no HTTP gateway), its log in $work/NAME.log and its pid in pid[NAME].
putallkv() {
  local name=$1 port=$2; shift 2
  env PUTALLKV_SERVER_ADDR=127.0.0.1:$port PUTALLKV_ADMIN_ADDR=127.0.0.1:$((port + ${BENCH_ADMIN_OFFSET:-1000})) \
    PUTALLKV_GATEWAY_ADDR= "$@" output/bin/putallkv 2>"$work/$name.log" & pids+=($!); pid[$name]=$!
}
