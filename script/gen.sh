#!/usr/bin/env bash
# Regenerates kitex_gen/ from idl/kv.thrift with the kitex tool pinned in go.mod (a `tool`
# directive, so the generator version is the library version).
# Usage: script/gen.sh [OUTDIR]   OUTDIR defaults to the repository root; the test suite passes a
# scratch directory and compares the result with the committed kitex_gen/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
if [ "$out" != "$root" ]; then
  mkdir -p "$out"
  cp "$root/go.mod" "$root/go.sum" "$out/"
  rm -rf "$out/idl" && cp -r "$root/idl" "$out/idl"
fi
cd "$out"
rm -rf kitex_gen
go tool kitex -module putallkv idl/kv.thrift
gofmt -w kitex_gen
