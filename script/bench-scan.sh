#!/usr/bin/env bash
# PutAll latency with and without a Scan beside it: starts putallkv (memory only), fills it with
# BENCH_KEYS keys through putallbench, then alternates, BENCH_ROUNDS times, a putallbench run of
# the standard write load alone and one with `putallctl scan` (values included, pages of
# limits.max_scan_entries) looping over the whole store beside it, and prints each run's figures
# and the full scans completed during it. Reports land in output/bench/scan-*.json.
#
# Environment: BENCH_DURATION (default 8s per run), BENCH_CONCURRENCY, BENCH_BATCH, BENCH_VALUE
# (see bench-lib.sh), BENCH_KEYS (default 200000), BENCH_ROUNDS (default 3), BENCH_SCAN_PORT
# (default 18894; admin on it + 1), BENCH_SCAN_ARGS (more arguments of the looping `putallctl scan`,
# e.g. --keys-only).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
default_duration=8s
source script/bench-lib.sh
keys=${BENCH_KEYS:-200000}
rounds=${BENCH_ROUNDS:-3}
port=${BENCH_SCAN_PORT:-18894}
out=output/bench
mkdir -p "$out"

putallkv scan "$port" PUTALLKV_ADMIN_ADDR=127.0.0.1:$((port + 1))
wait_port "$port"
load() { output/bin/putallbench --addr "127.0.0.1:$port" --keys "$keys" --steps "$conc" --batch "$batch" --value-size "$value" --duration "$duration" "$@"; }
load >/dev/null # fill
echo "keys in the store: $(output/bin/putallctl --addr "127.0.0.1:$port" --timeout 10m scan --keys-only | wc -l)"
for round in $(seq "$rounds"); do
  load --json --describe "no scan" >"$out/scan-none-$round.json"
  # The scanning loop; stopped, it stops the scan in progress too, so the next run is alone.
  (
    trap 'kill "$c" 2>/dev/null; exit 0' TERM
    while :; do
      output/bin/putallctl --addr "127.0.0.1:$port" --timeout 10m scan ${BENCH_SCAN_ARGS:-} >/dev/null & c=$!
      wait "$c" || exit 1
      echo
    done
  ) >"$work/scans" &
  scanner=$!
  load --json --describe "full scan looping" >"$out/scan-looping-$round.json"
  kill "$scanner"; wait "$scanner" 2>/dev/null || true
  echo "round $round: $(wc -l <"$work/scans") full scans completed beside the load"
  output/bin/putallbench compare "$out/scan-none-$round.json" "$out/scan-looping-$round.json"
done
