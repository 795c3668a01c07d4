#!/usr/bin/env bash
# Builds putallkv's Redis module (pkg/redisstore/module: the PUTALL.APPLY command, see
# docs/redis-cluster.md#the-redis-module) and prints the path of the shared object:
#
#   script/redis-module.sh [OUT]
#
# OUT defaults to output/redis/putallkv.so. It is rebuilt only when missing or older than its
# sources, written beside OUT first and renamed into place, so that builds running side by
# side (test binaries) never load a half-written file. When gcc is missing, it is installed
# with apt-get (as root). Load the module with redis-server --loadmodule OUT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/output/redis/putallkv.so}
src=$root/pkg/redisstore/module

die() { echo "redis-module: $*" >&2; exit 1; }
source "$root/script/server-lib.sh"

if [ -f "$out" ] && [ -z "$(find "$src" -newer "$out" -type f)" ]; then
  echo "$out"
  exit 0
fi
ensure_package gcc gcc
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
gcc -O2 -Wall -Wextra -Werror -std=c99 -fPIC -shared -o "$tmp" "$src/putallkv.c"
chmod 755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "$out"
