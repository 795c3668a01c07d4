#!/usr/bin/env bash
# Deploys putallkv releases (./build.sh package) into node directories, one node at a time,
# health-gated: ./build.sh deploy runs this script.
#
#   script/deploy.sh [--release FILE] [--systemd UNIT] DIR...   install and switch to a release
#   script/deploy.sh --rollback [--systemd UNIT] DIR...         go back one release
#   script/deploy.sh --restart [--systemd UNIT] DIR...          restart the current release
#   script/deploy.sh --stop [--systemd UNIT] DIR...             stop the node
#
# Without --release it packages this tree first (./build.sh package). For each DIR in turn it
# installs the release into DIR/releases/<version> (SHA256SUMS verified), has the new binary
# check the node's configuration (putallkv -check-config) before touching the running node,
# switches DIR/current atomically, restarts the node gracefully and waits for /readyz on its
# admin address; a release that does not become ready is rolled back (the previous release
# switched back and restarted) and the deploy stops there, leaving the later nodes alone. A
# release already current and serving is left as it is.
#
# A node directory holds (docs/operations.md#deploy):
#   conf/putallkv.yaml   the node's configuration (the operator's; deploys never change it)
#   conf/putallkv.env    optional PUTALLKV_* variables, KEY=VALUE a line, no quotes; the node and
#                        the check see these, never the PUTALLKV_* variables of the deploying shell
#   releases/<version>/  the installed releases; current -> releases/<version> is in service
#   history              the versions that were current, oldest first (--rollback pops the last)
#   putallkv.pid, log/putallkv.log   the node's pid and its log, when systemd does not run it
# The node runs with DIR as its working directory, so a relative store.data_dir (data) lives
# in DIR, outside the releases.
#
# Settings from the environment: DEPLOY_READY_TIMEOUT (seconds a node has to become ready,
# default 30), DEPLOY_STOP_TIMEOUT (seconds the old process has to drain and exit before it is
# killed, default 30; keep it over server.shutdown_timeout), DEPLOY_CURL_OPTS (extra curl
# options for /readyz, e.g. a client certificate).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ready_timeout=${DEPLOY_READY_TIMEOUT:-30}
stop_timeout=${DEPLOY_STOP_TIMEOUT:-30}

usage() {
  echo "usage: ./build.sh deploy [--release FILE] [--rollback | --restart | --stop] [--systemd UNIT] DIR..." >&2
  exit 2
}

die() {
  echo "deploy: ${dir:-}${dir:+: }$*" >&2
  exit 1
}

say() { echo "deploy: $dir: $*"; }

# --- arguments -------------------------------------------------------------------------------

action=deploy release="" unit="" dirs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --release) [ $# -ge 2 ] || usage; release=$2; shift 2 ;;
    --systemd) [ $# -ge 2 ] || usage; unit=$2; shift 2 ;;
    --rollback) action=rollback; shift ;;
    --restart) action=restart; shift ;;
    --stop) action=stop; shift ;;
    -h | --help) usage ;;
    -*) echo "deploy: unknown option $1" >&2; usage ;;
    *) dirs+=("$1"); shift ;;
  esac
done
[ ${#dirs[@]} -gt 0 ] || usage
if [ "$action" != deploy ] && [ -n "$release" ]; then usage; fi

if [ "$action" = deploy ] && [ -z "$release" ]; then
  release=$("$root/build.sh" package)
fi
if [ -n "$release" ]; then
  release=$(cd "$(dirname "$release")" && pwd)/$(basename "$release")
fi

# Several nodes: one at a time, each by a run of this script of its own, stopping at the first
# that fails.
if [ ${#dirs[@]} -gt 1 ]; then
  args=()
  [ "$action" = deploy ] || args+=("--$action")
  [ -z "$release" ] || args+=(--release "$release")
  [ -z "$unit" ] || args+=(--systemd "$unit")
  for i in "${!dirs[@]}"; do
    if ! "$0" "${args[@]}" "${dirs[$i]}"; then
      rest=("${dirs[@]:$((i + 1))}")
      echo "deploy: stopped at ${dirs[$i]}${rest[*]:+; not touched: ${rest[*]}}" >&2
      exit 1
    fi
  done
  exit 0
fi

[ -d "${dirs[0]}" ] || { echo "deploy: ${dirs[0]}: no such directory" >&2; exit 1; }
dir=$(cd "${dirs[0]}" && pwd)
conf="$dir/conf/putallkv.yaml"
unit=${unit//\{node\}/$(basename "$dir")}

# One deploy at a time per node directory. The node must not inherit the lock's descriptor.
exec 9>"$dir/.deploy.lock"
flock -n 9 || die "another deploy is running on this node directory"

# --- the node's process ----------------------------------------------------------------------

# node_env is the environment the node and its checks run with: the deploying shell's, less its
# PUTALLKV_* variables, plus conf/putallkv.env.
node_env=()
while IFS= read -r name; do node_env+=(-u "$name"); done < <(compgen -e | grep '^PUTALLKV_' || true)
if [ -f "$dir/conf/putallkv.env" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "conf/putallkv.env: not a KEY=VALUE line: $line"
    node_env+=("$line")
  done <"$dir/conf/putallkv.env"
fi

# putallkv BIN ARGS... runs BIN on the node's configuration, as the node runs.
putallkv() {
  local bin=$1
  shift
  (cd "$dir" && exec env "${node_env[@]}" "$bin" -conf "$conf" "$@")
}

# alive PID reports whether PID is a running process (a zombie is not).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  state=${state%% *}
  [ -n "$state" ] && [ "$state" != Z ]
}

# node_pid prints the pid of the node started by a deploy (pid file), if it still runs.
node_pid() {
  local pid
  pid=$(cat "$dir/putallkv.pid" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  # The pid is the node's, not a process that reused it.
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$conf" || return 1
  echo "$pid"
}

# started is the pid start_node started.
started=""

# start_node starts DIR/current in its own session, its log appended to log/putallkv.log.
start_node() {
  if [ -n "$unit" ]; then
    systemctl start "$unit"
    return
  fi
  mkdir -p "$dir/log"
  (cd "$dir" && exec setsid env "${node_env[@]}" "$dir/current/bin/putallkv" -conf "$conf" \
    </dev/null >>"$dir/log/putallkv.log" 2>&1 9>&-) &
  started=$!
  echo "$started" >"$dir/putallkv.pid"
}

# stop_node stops the node gracefully: SIGTERM, then the calls in flight drain and it exits;
# after DEPLOY_STOP_TIMEOUT seconds it is killed (the write-ahead log keeps every acknowledged
# write).
stop_node() {
  if [ -n "$unit" ]; then
    systemctl stop "$unit"
    return
  fi
  local pid deadline
  pid=$(node_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + stop_timeout))
  while alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      say "pid $pid did not exit within ${stop_timeout}s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  while alive "$pid"; do sleep 0.1; done
  rm -f "$dir/putallkv.pid"
}

# running reports whether the node's process runs.
running() {
  if [ -n "$unit" ]; then
    systemctl is-active --quiet "$unit"
  else
    node_pid >/dev/null
  fi
}

# still_starting reports whether the process start_node started has not exited.
still_starting() {
  if [ -n "$unit" ]; then
    systemctl is-active --quiet "$unit"
  else
    alive "$started"
  fi
}

# --- readiness -------------------------------------------------------------------------------

# admin_url is where /readyz is, from the OK line of putallkv -check-config.
admin_url=""

# check_config VERSION has that release's binary check the node's configuration and sets
# admin_url; it fails, saying why, when the binary refuses it.
check_config() {
  local out hostport host port scheme
  if ! out=$(putallkv "$dir/releases/$1/bin/putallkv" -check-config 2>&1); then
    say "release $1 refuses the node's configuration: $out"
    return 1
  fi
  scheme=$(sed -n 's|.* admin=\([a-z]*\)://.*|\1|p' <<<"$out")
  hostport=$(sed -n 's|.* admin=[a-z]*://\([^ ]*\).*|\1|p' <<<"$out")
  host=${hostport%:*} port=${hostport##*:}
  if [ -z "$hostport" ] || [ "$port" = 0 ]; then
    say "cannot probe the node: admin.addr must name a fixed port (-check-config said: $out)"
    return 1
  fi
  case "$host" in "" | 0.0.0.0) host=127.0.0.1 ;; "[::]") host="[::1]" ;; esac
  admin_url="$scheme://$host:$port"
}

# ready reports whether /readyz answers 200: through curl, or, where there is none and the
# admin address speaks plain HTTP, through bash's /dev/tcp.
ready() {
  if command -v curl >/dev/null; then
    local opts=(-fsS -o /dev/null --max-time 2)
    [[ "$admin_url" != https://* ]] || opts+=(-k)
    # shellcheck disable=SC2086 # DEPLOY_CURL_OPTS is a list of options
    curl "${opts[@]}" ${DEPLOY_CURL_OPTS:-} "$admin_url/readyz" 2>/dev/null
    return
  fi
  [[ "$admin_url" == http://* ]] || die "probing $admin_url/readyz over TLS needs curl"
  local hostport=${admin_url#http://} host
  host=${hostport%:*}
  host=${host#[}
  # shellcheck disable=SC2016 # expanded by the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 &&
    head -n 1 <&3 | grep -q "^HTTP/1\.[01] 200 "' _ "${host%]}" "${hostport##*:}" 2>/dev/null
}

# wait_ready waits up to DEPLOY_READY_TIMEOUT seconds for /readyz; it fails early when the
# process has exited.
wait_ready() {
  local deadline=$((SECONDS + ready_timeout))
  until ready; do
    if ! still_starting; then
      say "the node exited before it became ready (see $([ -n "$unit" ] && echo "journalctl -u $unit" || echo "$dir/log/putallkv.log"))"
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "the node did not become ready within ${ready_timeout}s ($admin_url/readyz)"
      return 1
    fi
    sleep 0.1
  done
}

# --- releases --------------------------------------------------------------------------------

# current prints the version DIR/current points at ("" when none).
current() {
  local target
  target=$(readlink "$dir/current" 2>/dev/null) || return 0
  basename "$target"
}

# switch_to VERSION points DIR/current at it in one rename ("" removes it).
switch_to() {
  if [ -z "$1" ]; then
    rm -f "$dir/current"
    return
  fi
  ln -sfn "releases/$1" "$dir/.current.new"
  mv -T "$dir/.current.new" "$dir/current"
}

# install VERSION unpacks the release archive into releases/VERSION and verifies it: every
# file listed in SHA256SUMS with its hash, no file unlisted, VERSION and the binary's -version
# naming the version. An installed release is kept if it is the same build, refused if not.
install() {
  local v=$1 tmp
  if [ -d "$dir/releases/$v" ]; then
    if ! tar -xzOf "$release" "putallkv-$v/SHA256SUMS" | cmp -s - "$dir/releases/$v/SHA256SUMS"; then
      die "release $v is installed already, and $release is a different build of that version; a version names one build"
    fi
    return
  fi
  mkdir -p "$dir/releases"
  tmp=$(mktemp -d "$dir/releases/.incoming-$v.XXXXXX")
  if ! tar -xzf "$release" -C "$tmp" --strip-components=1 --no-same-owner "putallkv-$v"; then
    rm -rf "$tmp"
    die "$release: cannot unpack putallkv-$v/"
  fi
  local listed present problem=""
  if ! (cd "$tmp" && sha256sum --quiet --strict -c SHA256SUMS) >/dev/null 2>&1; then
    problem="a file does not match SHA256SUMS"
  else
    listed=$(awk '{print $2}' "$tmp/SHA256SUMS" | LC_ALL=C sort)
    present=$(cd "$tmp" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort)
    if [ "$listed" != "$present" ]; then
      problem="the files are not those SHA256SUMS lists"
    elif [ "$(cat "$tmp/VERSION")" != "$v" ]; then
      problem="VERSION says $(cat "$tmp/VERSION"), the archive $v"
    elif ! "$tmp/bin/putallkv" -version 2>/dev/null | grep -qF "putallkv $v "; then
      problem="bin/putallkv -version does not name $v"
    fi
  fi
  if [ -n "$problem" ]; then
    rm -rf "$tmp"
    die "$release: refused: $problem"
  fi
  chmod 755 "$tmp"
  mv -T "$tmp" "$dir/releases/$v"
  say "installed release $v"
}

# restart_on VERSION switches DIR/current to VERSION, stops the node gracefully, starts
# VERSION and waits for it to become ready. When it does not, it switches back to FROM (the
# second argument; "" for none), restarts it and fails.
restart_on() {
  local v=$1 from=$2
  switch_to "$v"
  stop_node
  start_node
  if wait_ready; then
    say "release $v is serving ($admin_url)"
    return 0
  fi
  stop_node
  switch_to "$from"
  if [ -z "$from" ]; then
    say "no earlier release to roll back to; the node is stopped"
    return 1
  fi
  say "rolling back to release $from"
  if check_config "$from" && { start_node && wait_ready; }; then
    say "rolled back: release $from is serving"
  else
    say "the rollback to $from failed too; the node is down"
  fi
  return 1
}

# --- actions ---------------------------------------------------------------------------------

[ -f "$conf" ] || die "no node configuration at $conf (the release's conf/putallkv.yaml is a starting point)"

case "$action" in
  stop)
    stop_node
    say "stopped"
    ;;
  restart) # after a change of the node's configuration, say
    v=$(current)
    [ -n "$v" ] || die "no release is current; deploy one first"
    check_config "$v" || exit 1
    stop_node
    start_node
    wait_ready || exit 1
    say "release $v is serving ($admin_url)"
    ;;
  deploy)
    top=$(tar -tzf "$release" 2>/dev/null | sed -n 1p) || die "$release: not a release archive"
    v=${top%%/*}
    v=${v#putallkv-}
    [[ "$top" == putallkv-* ]] && [[ "$v" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "$release: not a release archive"
    install "$v"
    check_config "$v" || exit 1
    from=$(current)
    if running; then
      if [ "$from" = "$v" ] && ready; then
        say "release $v is current and serving; nothing changed"
        exit 0
      fi
    elif ready; then
      die "something this deploy does not manage answers $admin_url/readyz; stop it first"
    fi
    if [ "$from" = "$v" ]; then # current, but down or not ready: start it again
      stop_node
      start_node
      wait_ready || exit 1
      say "release $v is serving again ($admin_url)"
      exit 0
    fi
    restart_on "$v" "$from" || exit 1
    [ "$(tail -n 1 "$dir/history" 2>/dev/null)" = "$v" ] || echo "$v" >>"$dir/history"
    ;;
  rollback)
    from=$(current)
    [ -n "$from" ] || die "no release is current; nothing to roll back"
    [ "$(tail -n 1 "$dir/history" 2>/dev/null)" = "$from" ] || die "history does not end with the current release $from"
    to=$(tail -n 2 "$dir/history" | head -n 1)
    [ "$(wc -l <"$dir/history")" -ge 2 ] && [ -d "$dir/releases/$to" ] || die "no earlier release to go back to"
    check_config "$to" || exit 1
    restart_on "$to" "$from" || exit 1
    sed -i '$d' "$dir/history"
    say "rolled back from $from to $to"
    ;;
esac
