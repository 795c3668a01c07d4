#!/usr/bin/env bash
# A/B of two revisions on this machine, run alternately so that both see the same noise
# (./build.sh ab). Figures move by ±15 % between runs on a shared VM; alternating A and B and
# taking medians is what makes a few per cent visible.
#
#   script/ab.sh server REV_A REV_B [ROUNDS]
#       builds the server at both revisions, starts both (memory only; extra PUTALLKV_* variables
#       in the environment apply to both), and drives them in turn with putallbench from the
#       working tree (50 callers, PutAll of 16 x 64 bytes, AB_DURATION each, default 5s) through
#       each of AB_TARGETS (default rpc, the plain SDK; "rpc http" adds the HTTP gateway);
#       prints per revision and target the median keys/s, server and client CPU per call, p99,
#       and with two targets the median per round of their keys/s ratio. Each server takes
#       four ports from AB_PORT (default 18870): RPC, admin, gateway.
#   script/ab.sh store REV_A REV_B BENCH_REGEX [ROUNDS]
#       builds pkg/store's test binary at both revisions, each with the working tree's
#       bench_test.go (so both run the same benchmark code), and runs the benchmarks matching
#       BENCH_REGEX in turn (AB_BENCHTIME each, default 1000000x); prints per benchmark and
#       revision the median and minimum ns/op.
#
# ROUNDS defaults to 5. Revisions are anything git understands (HEAD~3, a hash, a branch).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { sed -n '2,20p' "$0" >&2; exit 2; }
[ $# -ge 3 ] || usage
mode=$1 rev_a=$2 rev_b=$3
shift 3

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for t in a b; do git worktree remove --force "$work/$t" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# checkout NAME REV: a worktree of REV at $work/NAME.
checkout() { git worktree add --detach -q "$work/$1" "$2"; }

# median and min of the numbers on stdin, one per line.
# The one argument, default 1, is how many decimals to print.
stats() { sort -g | awk -v d="${1:-1}" '{v[NR]=$1} END {m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; f = "median %." d "f  min %." d "f  (%d runs)"; printf f, m, v[1], NR}'; }

case $mode in
server)
  rounds=${1:-5}
  go build -C cmd/putallbench -o "$work/putallbench" .
  base=${AB_PORT:-18870} targets=(${AB_TARGETS:-rpc})
  declare -A port=([a]=$base [b]=$((base + 4))) pid
  gateway() { [[ " ${targets[*]} " == *" http "* ]] && echo 127.0.0.1:$(($1 + 2)); true; }
  for t in a b; do
    rev=$rev_a; [ $t = b ] && rev=$rev_b
    checkout $t "$rev"
    (cd "$work/$t" && go build -o "$work/putallkv-$t" .)
    env PUTALLKV_SERVER_ADDR=127.0.0.1:${port[$t]} PUTALLKV_ADMIN_ADDR=127.0.0.1:$((port[$t] + 1)) \
      PUTALLKV_GATEWAY_ADDR="$(gateway ${port[$t]})" "$work/putallkv-$t" 2>"$work/$t.log" & pids+=($!); pid[$t]=$!
  done
  for t in a b; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${port[$t]}") 2>/dev/null && break; sleep 0.1; done
  done
  field() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" "$2"; }
  for r in $(seq "$rounds"); do
    for t in a b; do
      for target in "${targets[@]}"; do
        addr=127.0.0.1:${port[$t]} plain=(--coalesce 0)  # the RPC target through the plain SDK
        [ "$target" = http ] && addr=$(gateway ${port[$t]}) plain=()
        echo "ab: round $r, $t, $target" >&2
        "$work/putallbench" --target "$target" "${plain[@]}" --addr "$addr" --steps 50 --batch 16 \
          --duration "${AB_DURATION:-5s}" --pid "${pid[$t]}" --json >"$work/$t-$target-$r.json"
      done
    done
  done
  for t in a b; do
    rev=$rev_a; [ $t = b ] && rev=$rev_b
    for target in "${targets[@]}"; do
      echo "$t = $rev, $target"
      for f in keys_per_sec server_cpu_us_per_op client_cpu_us_per_op p99_ms; do
        printf '  %-22s ' "$f"
        for r in $(seq "$rounds"); do field $f "$work/$t-$target-$r.json"; done | stats
        echo
      done
    done
    if [ ${#targets[@]} = 2 ]; then
      printf '  %-22s ' "${targets[1]}/${targets[0]} keys/s"
      for r in $(seq "$rounds"); do
        x=$(field keys_per_sec "$work/$t-${targets[1]}-$r.json") y=$(field keys_per_sec "$work/$t-${targets[0]}-$r.json")
        awk -v x="$x" -v y="$y" 'BEGIN {printf "%.3f\n", x / y}'
      done | stats 3
      echo
    fi
  done
  ;;
store)
  [ $# -ge 1 ] || usage
  regex=$1 rounds=${2:-5}
  for t in a b; do
    rev=$rev_a; [ $t = b ] && rev=$rev_b
    checkout $t "$rev"
    cp pkg/store/bench_test.go "$work/$t/pkg/store/"
    (cd "$work/$t" && go test -c -o "$work/store-$t.test" ./pkg/store)
  done
  for r in $(seq "$rounds"); do
    for t in a b; do
      echo "ab: round $r, $t" >&2
      "$work/store-$t.test" -test.run '^$' -test.bench "$regex" -test.benchtime "${AB_BENCHTIME:-1000000x}" |
        awk -v t=$t '/^Benchmark/ {print $1, t, $3}' >>"$work/store.txt"
    done
  done
  for b in $(cut -d' ' -f1 "$work/store.txt" | sort -u); do
    for t in a b; do
      rev=$rev_a; [ $t = b ] && rev=$rev_b
      printf '%-45s %s (%s)  ' "$b" $t "$rev"
      awk -v b="$b" -v t=$t '$1 == b && $2 == t {print $3}' "$work/store.txt" | stats
      echo " ns/op"
    done
  done
  ;;
*) usage ;;
esac
