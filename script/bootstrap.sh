#!/usr/bin/env bash
# Starts putallkv from an output/ directory built by ./build.sh, with the configuration file
# shipped beside it (conf/putallkv.yaml). Extra arguments go to putallkv, e.g. -addr HOST:PORT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/bin/putallkv" -conf "$here/conf/putallkv.yaml" "$@"
