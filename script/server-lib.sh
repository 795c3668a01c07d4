# Shared by the scripts that run servers (sourced by redis-cluster.sh, etcd.sh, cluster.sh,
# observe.sh and the bench scripts): installing a Debian package once however many scripts
# start at the same time, telling whether a pid is still one of the processes a script
# started, and probing a port or an HTTP path. ensure_package needs the sourcing script's
# die MESSAGE.

# ensure_package PACKAGE COMMAND...: unless every COMMAND is on PATH, installs PACKAGE with
# apt-get (as root; otherwise it dies saying how). Test binaries start servers side by side:
# one installs, the others wait for it, at most 10 minutes.
ensure_package() {
  local package=$1 cmd missing=; shift
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || missing=1; done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "$package is not installed and this is not root: install it (apt-get install -y $package) or run as root"
  fi
  exec 8>"/tmp/putallkv-$package-install.lock"
  flock -w 600 8 || die "waited 10 minutes for another installation of $package"
  missing=
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || missing=1; done
  if [ -n "$missing" ]; then
    echo "$(basename "$0"): installing $package with apt-get" >&2
    apt-get update -qq >&2
    # Where an init system runs, a server package may also start its server as a system service
    # on its default port: that one is not ours, and nothing here touches it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "$package" >&2
  fi
  flock -u 8
  exec 8>&-
}

# is_process PID COMM: the pid is alive (not a zombie) and runs the command COMM.
is_process() {
  local comm state
  comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
  state=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$comm" = "$2" ] && [ "$state" != Z ]
}

# listening HOST PORT: something accepts connections there.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# http_ok HOST PORT PATH: a plain-HTTP GET of PATH there answers 200 within 2 s.
http_ok() {
  (
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
    read -r -t 2 _ status _ <&3 && [ "$status" = 200 ]
  ) 2>/dev/null
}
