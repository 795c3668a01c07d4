#!/usr/bin/env bash
# ./build.sh observe [ADMIN_ADDR]: a Prometheus for a person to look at, scraping the admin
# address of a running putallkv node (default 127.0.0.1:9100, the default admin.addr) with the
# alert rules of conf/prometheus/alerts.yml loaded. It listens on 127.0.0.1:PROMETHEUS_PORT,
# keeps its data in a temporary directory removed when it stops, and runs in the foreground
# until Ctrl-C. Debian's prometheus package is installed with apt-get when the binary is missing
# (as root; otherwise it says what to install).
#
# Environment: PROMETHEUS_PORT (9190: not 9090, where Debian's packaged service listens once
# installed on a machine with systemd), OBSERVE_INTERVAL (scrape and rule interval, 5s).
# The node's /metrics must be open to it: no token file, or auth.metrics_open: true.
set -euo pipefail
cd "$(dirname "$0")/.."

admin=${1:-127.0.0.1:9100}
port=${PROMETHEUS_PORT:-9190}
interval=${OBSERVE_INTERVAL:-5s}

die() { echo "observe: $*" >&2; exit 1; }

case "$admin" in
  *:*) ;;
  *) die "ADMIN_ADDR is host:port (the node's admin.addr), not '$admin'" ;;
esac

if ! command -v prometheus >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "prometheus is not installed and this is not root: apt-get install prometheus (Debian's package), then run again"
  echo "observe: installing Debian's prometheus package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
fi

source script/server-lib.sh

# ready: the Prometheus on $port answers /-/ready with 200.
ready() { http_ok 127.0.0.1 "$port" /-/ready; }

listening 127.0.0.1 "$port" && die "127.0.0.1:$port is in use: set PROMETHEUS_PORT to a free port"
if ! listening "${admin%:*}" "${admin##*:}"; then
  echo "observe: nothing answers on $admin yet: Prometheus will show the node down (PutallkvNodeDown) until it does" >&2
fi

work=$(mktemp -d)
prom=
cleanup() {
  if [ -n "$prom" ]; then kill "$prom" 2>/dev/null || true; wait "$prom" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: $interval
  evaluation_interval: $interval
rule_files:
  - $PWD/conf/prometheus/alerts.yml
scrape_configs:
  - job_name: putallkv
    static_configs:
      - targets: ['$admin']
EOF

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn &
prom=$!

up=
for _ in $(seq 300); do
  kill -0 "$prom" 2>/dev/null || die "prometheus exited at start (its log is above)"
  if ready; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || die "prometheus on 127.0.0.1:$port is not ready after 30s"

cat <<EOF
observe: Prometheus on http://127.0.0.1:$port scraping $admin every $interval (job putallkv)
  targets: http://127.0.0.1:$port/targets   alerts: http://127.0.0.1:$port/alerts
  dashboard: in Grafana 10 or later, add this Prometheus as a data source (URL above), then
  Dashboards > New > Import > upload conf/grafana/putallkv.json and pick it (docs/operations.md, Dashboard)
Ctrl-C stops it.
EOF
wait "$prom"
