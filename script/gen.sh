#!/usr/bin/env bash
# Regenerates kitex_gen/ from idl/kv.thrift with the kitex tool pinned in tools/go.mod (a `tool`
# directive in a module of its own, so the generator and thriftgo stay out of the SDK's module
# graph, and the generator version is the library version of go.mod).
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
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -C "$root/tools" -o "$bin/kitex" github.com/cloudwego/kitex/tool/cmd/kitex
cd "$out"
rm -rf kitex_gen
"$bin/kitex" -module github.com/putallkv/putallkv -streamx idl/kv.thrift
gofmt -w kitex_gen
