#!/usr/bin/env bash
# putallkv build entry point.
#   ./build.sh          build output/ (bin/putallkv, bin/putallctl, bin/putallbench, conf/, bootstrap.sh)
#   ./build.sh run      build, then run the server in the foreground on the embedded default
#                       configuration (extra arguments go to putallkv, e.g. -conf FILE)
#   ./build.sh test     gofmt check, go vet, and the whole test suite under -race, reporting
#                       each package as it finishes (script/testprogress)
#   ./build.sh bench    the standard comparison: putallkv vs Redis vs an empty Kitex handler
#                       (script/bench.sh; installs redis-server if missing), then the store's
#                       Go benchmarks
#   ./build.sh bench security   what tokens and TLS cost on the PutAll benchmark
#                       (script/bench-security.sh)
#   ./build.sh bench cluster    putallkv on Redis Cluster vs rueidis and go-redis straight to it
#                       (script/bench-cluster.sh)
#   ./build.sh bench load       a bulk load of 1M keys: the Load stream vs a loop of PutAll vs
#                       redis-cli --pipe (script/bench-load.sh)
#   ./build.sh ab ...   an A/B of two revisions, run alternately (script/ab.sh: server or store)
#   ./build.sh observe [ADMIN_ADDR]   Prometheus scraping a running node (default
#                       127.0.0.1:9100) with the alert rules loaded, on 127.0.0.1:9190
#                       (PROMETHEUS_PORT), until Ctrl-C (script/observe.sh; installs prometheus)
#   ./build.sh cluster  a Redis Cluster and two putallkv nodes on it, ports printed, until
#                       Ctrl-C (script/cluster.sh; installs redis-server)
#   ./build.sh ldflags  the -ldflags the binaries are built with (version and commit stamps)
#   ./build.sh package [DIR]   a release archive, putallkv-<version>-<os>-<arch>.tar.gz, in DIR
#                       (default output/): binaries, default configuration, bootstrap.sh, the
#                       systemd unit and SHA256SUMS; prints its path (RELEASE_VERSION=v overrides
#                       the version)
#   ./build.sh deploy [--release FILE] [--rollback|--restart|--stop] [--systemd UNIT] DIR...
#                       install a release into node directories one at a time, health-gated,
#                       rolled back when the node does not become ready (script/deploy.sh)
set -euo pipefail
cd "$(dirname "$0")"

need_go() {
  command -v go >/dev/null 2>&1 || { echo "build.sh: Go is required (see go.mod for the version)" >&2; exit 1; }
}

# version is the release version: $RELEASE_VERSION when set, else git describe (empty outside a
# git checkout).
version() {
  if [ -n "${RELEASE_VERSION:-}" ]; then echo "$RELEASE_VERSION"; return; fi
  git describe --always --dirty 2>/dev/null || true
}

# ldflags stamps the version and the commit into pkg/buildinfo; outside a git checkout both
# stay empty and the binaries fall back to what the go command recorded.
ldflags() {
  local version commit
  version=$(version)
  commit=$(git rev-parse HEAD 2>/dev/null || true)
  if [ -n "$commit" ] && ! git diff --quiet HEAD 2>/dev/null; then commit="$commit-dirty"; fi
  echo "-X github.com/putallkv/putallkv/pkg/buildinfo.version=$version -X github.com/putallkv/putallkv/pkg/buildinfo.commit=$commit"
}

build() {
  need_go
  mkdir -p output/bin output/conf
  local flags; flags=$(ldflags)
  go build -ldflags "$flags" -o output/bin/putallkv .
  go build -ldflags "$flags" -o output/bin/putallctl ./cmd/putallctl
  go build -C cmd/putallbench -o "$PWD/output/bin/putallbench" .
  cp conf/putallkv.yaml output/conf/
  cp script/bootstrap.sh output/
  chmod +x output/bootstrap.sh
}

# package builds a release archive into $1 (default output/) and prints its path. The archive
# holds one directory, putallkv-<version>/: VERSION, bin/putallkv, bin/putallctl,
# conf/putallkv.yaml, conf/systemd/putallkv.service, bootstrap.sh, and SHA256SUMS listing every
# other file (sha256sum -c reads it), which script/deploy.sh verifies before installing.
package() {
  need_go
  local dest=${1:-output} v
  v=$(version)
  if ! [[ "$v" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
    echo "build.sh package: the version \"$v\" cannot name a release (set RELEASE_VERSION, or build in a git checkout)" >&2
    exit 1
  fi
  local name="putallkv-$v" stage archive
  archive="$dest/$name-$(go env GOOS)-$(go env GOARCH).tar.gz"
  stage=$(mktemp -d)
  trap "rm -rf '$stage'" EXIT
  local d="$stage/$name" flags
  mkdir -p "$d/bin" "$d/conf/systemd" "$dest"
  flags=$(ldflags)
  go build -ldflags "$flags" -o "$d/bin/" . ./cmd/putallctl
  cp conf/putallkv.yaml "$d/conf/"
  cp conf/systemd/putallkv.service "$d/conf/systemd/"
  cp script/bootstrap.sh "$d/"
  chmod +x "$d/bootstrap.sh"
  echo "$v" >"$d/VERSION"
  (cd "$d" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | xargs sha256sum >"$stage/SHA256SUMS" && mv "$stage/SHA256SUMS" .)
  tar -C "$stage" -czf "$archive.tmp" "$name"
  mv "$archive.tmp" "$archive"
  echo "$archive"
}

# modules are the Go modules of the repository: the service and SDK at the root, and the load
# generator in one of its own so that its plotting and Redis client stay out of the SDK's
# module graph (tools/ holds only the pinned kitex generator; examples/sdk is built by
# test/sdkmodule the way a user's program would be).
modules=(. cmd/putallbench)

run_tests() {
  need_go
  echo "== gofmt"
  unformatted=$(find . -name '*.go' -not -path './output/*' -not -path './.gocache/*' -print0 | xargs -0 gofmt -l)
  if [ -n "$unformatted" ]; then
    echo "gofmt would change:" >&2; echo "$unformatted" >&2; exit 1
  fi
  echo "== go vet"
  local m
  for m in "${modules[@]}"; do go vet -C "$m" ./...; done
  echo "== go test -race"
  local tmp; tmp=$(mktemp -d)
  trap "rm -rf '$tmp'" EXIT
  go build -o "$tmp/testprogress" ./script/testprogress
  {
    local rc=0
    for m in "${modules[@]}"; do go test -C "$m" -race -count=1 -timeout 30m -json ./... || rc=1; done
    exit $rc
  } | "$tmp/testprogress"
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
  build) build ;;
  run) build; exec output/bin/putallkv "$@" ;;
  test) run_tests ;;
  bench)
    need_go
    if [ "${1:-}" = security ]; then exec script/bench-security.sh; fi
    if [ "${1:-}" = cluster ]; then exec script/bench-cluster.sh; fi
    if [ "${1:-}" = load ]; then exec script/bench-load.sh; fi
    script/bench.sh; go test -run '^$' -bench . -benchmem -count 1 ./pkg/store/ ;;
  ab) need_go; script/ab.sh "$@" ;;
  observe) exec script/observe.sh "$@" ;;
  cluster) exec script/cluster.sh ;;
  ldflags) ldflags ;;
  package) package "$@" ;;
  deploy) exec script/deploy.sh "$@" ;;
  *) echo "usage: ./build.sh [build|run|test|bench|ab|observe|cluster|ldflags|package|deploy]" >&2; exit 2 ;;
esac
