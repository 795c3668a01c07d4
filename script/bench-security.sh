#!/usr/bin/env bash
# What authentication and TLS cost (./build.sh bench security): four memory-only putallkv
# servers on loopback ports, one plain, one with a token file, one serving RPC over TLS, one
# with both, driven one after the other, twice over, with the standard workload (50 callers,
# PutAll of 16 keys of 64 bytes, plain SDK), and the figures printed side by side as ratios to
# the plain server's first run. The certificate is a self-signed one made with openssl for
# 127.0.0.1; the token is minted with putallctl token.
#
# Environment: BENCH_DURATION (default 8s per run), BENCH_CONCURRENCY (50), BENCH_BATCH (16),
# BENCH_VALUE (64 bytes), BENCH_ROUNDS (2), BENCH_PORT (18900: the servers' RPC ports are it,
# +2, +4 and +6, each with its admin port 1000 above). Reports land in output/bench/security/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rounds=${BENCH_ROUNDS:-2}
base=${BENCH_PORT:-18900}
declare -A port=([plain]=$base [auth]=$((base + 2)) [tls]=$((base + 4)) [auth-tls]=$((base + 6)))

default_duration=8s
source script/bench-lib.sh

out=output/bench/security
mkdir -p "$out"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
{ read -r token; read -r line; } < <(output/bin/putallctl token write bench 2>/dev/null)
echo "$line" >"$work/tokens"

tls=(PUTALLKV_TLS_CERT_FILE="$work/cert.pem" PUTALLKV_TLS_KEY_FILE="$work/key.pem" PUTALLKV_TLS_RPC=true
  PUTALLKV_TLS_ADMIN=false)
putallkv plain ${port[plain]}
putallkv auth ${port[auth]} PUTALLKV_AUTH_TOKEN_FILE="$work/tokens"
putallkv tls ${port[tls]} "${tls[@]}"
putallkv auth-tls ${port[auth-tls]} PUTALLKV_AUTH_TOKEN_FILE="$work/tokens" "${tls[@]}"
for p in "${port[@]}"; do wait_port "$p"; done

declare -A args=([plain]="" [auth]="--token $token" [tls]="--ca $work/cert.pem"
  [auth-tls]="--token $token --ca $work/cert.pem")
declare -A desc=([plain]="no auth, plain RPC" [auth]="bearer token checked on every call"
  [tls]="RPC over TLS (Go-net transport)" [auth-tls]="bearer token and TLS")
reports=()
for r in $(seq "$rounds"); do
  for name in plain auth tls auth-tls; do
    echo "bench: round $r: ${desc[$name]}" >&2
    # shellcheck disable=SC2086 # args holds flags
    output/bin/putallbench --target rpc --coalesce 0 --addr 127.0.0.1:${port[$name]} --steps "$conc" --batch "$batch" \
      --value-size "$value" --duration "$duration" --json --describe "${desc[$name]} (round $r)" \
      --pid "${pid[$name]}" ${args[$name]} >"$out/$name-$r.json"
    reports+=("$out/$name-$r.json")
  done
done

echo
echo "$(nproc) cores; $conc callers, PutAll of $batch keys of $value bytes, $duration per run, memory-only servers"
output/bin/putallbench compare "${reports[@]}"
