#!/usr/bin/env bash
# Shoal's test lab: a multi-host Shoal cluster on this one machine, for end-to-end tests.
#
# What it builds (everything named shl-* / shoal-lab, nothing else is touched):
#
#   netns shl-ul:  bridge br0, no address: the "physical" underlay switch
#      |n1               |n2               |n3   ...        (veth pairs; eth0 on the host side)
#   netns shl-n1     netns shl-n2     netns shl-n3
#   10.78.0.11/24    10.78.0.12/24    10.78.0.13/24         (host K = 10.78.0.(10+K))
#
# Each host K runs, inside its network namespace and its own mount and UTS namespaces
# (hostname nK; private /etc/docker, /run/docker, /run/containerd; /sys remounted for the
# namespace with the cgroup tree kept visible):
#   * its own dockerd (+ the containerd that dockerd starts):
#       --data-root /var/lib/shoal-lab/nK/docker   --exec-root /run/shoal-lab/nK/docker-exec
#       -H unix:///run/shoal-lab/nK/docker.sock    --pidfile /run/shoal-lab/nK/docker.pid
#       --bip 172.(30+K).0.1/24, address pool 172.(30+K).0.0/16, cgroup parent /shoal-lab-nK
#       log /var/lib/shoal-lab/nK/dockerd.log
#   * its own shoald, in its dockerd's namespaces (as on a real host, where the two share a
#     mount namespace and shoald sees the engine's container namespace files):
#       --data-dir /var/lib/shoal-lab/nK/shoald
#       --socket /run/shoal-lab/nK/shoald.sock --docker-host unix:///run/shoal-lab/nK/docker.sock
#       --docker-api unix:///run/shoal-lab/nK/docker-api.sock
#       --metrics-addr 10.78.0.(10+K):9323 (Prometheus scrapes GET /metrics there)
#       --web-addr 10.78.0.(10+K):9380 (the web view: `lab.sh shoal nK web` prints its link)
#       --node-name nK, log /var/lib/shoal-lab/nK/shoald.log; it listens for other nodes on
#       10.78.0.(10+K):4242 once it is in a swarm.
# The test images shoal-test/busybox:a|b are built once on n1 (deploy/build-test-images.sh)
# and loaded into every other host's engine. Hosts n1..nM are managers, the rest workers.
# Daemons run in their own session (setsid): they outlive the shell that started them.
#
# Usage (as root; idempotent):
#   lab.sh up [--managers M] [--workers W] [--no-join] [--no-swarm]
#                          build hosts n1..n(M+W) (default 1 manager, 2 workers), `swarm init`
#                          on n1 and join the others (--no-join: init only; --no-swarm: neither)
#   lab.sh down            remove everything the lab made (safe to run twice, or when nothing is up)
#   lab.sh status          list the hosts
#   lab.sh shoal nK ARGS   the shoal CLI against host K       lab.sh docker nK ARGS   docker CLI against K's engine
#   lab.sh exec nK CMD     run CMD inside host K              lab.sh ip nK            host K's underlay address
#   lab.sh docker-api nK   the URL of K's Docker Engine API for swarm objects (shoald's
#                          --docker-api): DOCKER_HOST=$(lab.sh docker-api n1) docker node ls
#   lab.sh stop nK         kill -9 K's shoald                 lab.sh start nK         start it again (same data dir)
#   lab.sh link nK down|up take K's underlay link down/up     lab.sh log nK [LINES]   tail K's shoald log
#   lab.sh add-worker      add the next host, join it as a worker; prints its name (nK)
#   lab.sh remove nK       `shoal swarm leave --force` on K, then remove the host
#   lab.sh registry [--auth USER:PASS]
#                          (re)start a registry (Debian's docker-registry) on the underlay at
#                          10.78.0.2:5000, plain HTTP (every host's dockerd trusts it), with
#                          basic auth when given; its images survive a restart; prints its address
# `down` ends, one pid at a time, every process in a shl-* namespace or a /shoal-lab-n* cgroup
# or whose command line names /run/shoal-lab or /var/lib/shoal-lab; the host's own dockerd
# (/var/run/docker.sock) is never touched. `exec` runs a tool this machine lacks but busybox
# has (ping, nc, wget) as a busybox applet.
# Needs: iproute2, util-linux (nsenter, unshare), curl, docker.io (dockerd 20.10, docker CLI),
# busybox-static (test images), and shoald/shoal built.
# Env: SHOAL_BIN_DIR (where shoald and shoal are; default $CARGO_TARGET_DIR/debug, with
#      CARGO_TARGET_DIR defaulting to /var/tmp/shoal-target).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
LAB_DATA=/var/lib/shoal-lab
LAB_RUN=/run/shoal-lab
UL_NS=shl-ul
SUBNET=10.78.0
# The lab's image registry (`lab.sh registry`), on the underlay switch itself.
REGISTRY_IP=$SUBNET.2
REGISTRY_ADDR=$REGISTRY_IP:5000
PORT=4242
MAX_HOSTS=50
BIN_DIR=${SHOAL_BIN_DIR:-${CARGO_TARGET_DIR:-/var/tmp/shoal-target}/debug}
IMAGES=(shoal-test/busybox:a shoal-test/busybox:b)

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[lab %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'lab.sh: error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ names and paths of host K
host_ns() { echo "shl-n$1"; }
host_ip() { echo "$SUBNET.$((10 + $1))"; }
host_dir() { echo "$LAB_DATA/n$1"; }
host_run() { echo "$LAB_RUN/n$1"; }
docker_sock() { echo "$LAB_RUN/n$1/docker.sock"; }
shoald_sock() { echo "$LAB_RUN/n$1/shoald.sock"; }
cgroup_parent() { echo "shoal-lab-n$1"; }

# "nK" (or "K") -> K, or die.
host_num() {
  local k=${1#n}
  if [[ ! $k =~ ^[0-9]+$ ]] || ((10#$k < 1 || 10#$k > MAX_HOSTS)); then
    die "no such host '$1' (hosts are n1..n$MAX_HOSTS)"
  fi
  echo "$((10#$k))"
}
have_ns() { [ -e "/run/netns/$1" ]; }
host_exists() { have_ns "$(host_ns "$1")"; }
require_host() { host_exists "$1" || die "host n$1 is not up (see: lab.sh status)"; }

# Hosts that exist in any form (namespace, state dir, run dir or cgroup), sorted.
known_hosts() {
  local p
  {
    for p in /run/netns/shl-n* "$LAB_DATA"/n* "$LAB_RUN"/n* /sys/fs/cgroup/*/shoal-lab-n* /sys/fs/cgroup/shoal-lab-n*; do
      [ -e "$p" ] || continue
      p=${p##*/}; p=${p##*-}; p=${p#n}
      [[ $p =~ ^[0-9]+$ ]] && echo "$p"
    done
  } | sort -nu
}

require_root() { [ "$(id -u)" = 0 ] || die "run as root (the lab makes network namespaces and runs dockerds)"; }
require_tools() {
  local c
  for c in ip nsenter unshare setsid curl dockerd docker timeout; do
    command -v "$c" >/dev/null || die "missing $c (deploy/ensure-host.sh installs what Shoal needs)"
  done
}
require_bins() {
  local b
  for b in shoald shoal; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not built: cargo build -p shoal-agent -p shoal-cli --bins (or set SHOAL_BIN_DIR)"
  done
}

# ------------------------------------------------------------------ running inside a host
# `lab.sh __host K CMD...` runs CMD in host K: its network namespace, plus a new mount and
# UTS namespace set up by `__enter`. nsenter and unshare exec without forking, so CMD keeps
# the pid the caller started.
cmd_host() {
  local k; k=$(host_num "$1"); shift
  require_host "$k"
  exec nsenter --net="/run/netns/$(host_ns "$k")" -- \
    unshare --mount --uts --propagation slave -- "$SELF" __enter "$k" "$@"
}

# `ip netns exec` remounts /sys for the namespace, which hides /sys/fs/cgroup (dockerd then
# dies: "Devices cgroup isn't mounted"). Here /sys is remounted the same way, but the cgroup
# tree is moved back on top. Then the host gets its own /etc/docker (key.json, engine id),
# /run/docker (plugins, netns files) and /run/containerd (so dockerd never mistakes another
# engine's containerd for a system one, and shim sockets stay apart), and its hostname.
# With LAB_PIDFILE set, the pid of CMD is written there. A CMD missing here that busybox
# has as an applet (ping on a minimal Debian) runs as that applet.
cmd_enter() {
  local k=$1; shift
  local run; run=$(host_run "$k")
  local tmp="$run/.cgroup-move"
  mkdir -p "$tmp" "$run/etc-docker" "$run/run-docker" "$run/run-containerd" /etc/docker /run/docker /run/containerd
  mount --rbind /sys/fs/cgroup "$tmp"
  umount -l /sys
  mount -t sysfs sysfs /sys
  mount --move "$tmp" /sys/fs/cgroup
  mount --bind "$run/etc-docker" /etc/docker
  mount --bind "$run/run-docker" /run/docker
  mount --bind "$run/run-containerd" /run/containerd
  hostname "n$k"
  if [ -n "${LAB_PIDFILE:-}" ]; then echo $$ >"$LAB_PIDFILE"; fi
  unset LAB_PIDFILE
  # a tool this machine lacks but busybox has (ping, nc, wget...) runs as a busybox applet
  if ! command -v "$1" >/dev/null && command -v busybox >/dev/null && busybox --list | grep -x "$1" >/dev/null; then
    set -- busybox "$@"
  fi
  exec "$@"
}

# Run CMD in host K's engine's own namespaces (network, mount, UTS): what shoald and
# `lab.sh exec` use, so they see the engine's mounts (its containers' network namespace
# files under the exec root) as on a real host, where the two share a mount namespace.
# Falls back to a fresh host view (cmd_host) when K's dockerd is not running.
cmd_in_engine() {
  local k; k=$(host_num "$1"); shift
  require_host "$k"
  local pid
  if ! pid=$(dockerd_pid "$k"); then cmd_host "$k" "$@"; fi
  if [ -n "${LAB_PIDFILE:-}" ]; then echo $$ >"$LAB_PIDFILE"; fi
  unset LAB_PIDFILE
  if ! command -v "$1" >/dev/null && command -v busybox >/dev/null && busybox --list | grep -x "$1" >/dev/null; then
    set -- busybox "$@"
  fi
  exec nsenter --target "$pid" --net --mount --uts -- "$@"
}

# Run a command inside host K (same view as its daemons).
in_host() { local k=$1; shift; "$SELF" __host "$k" "$@"; }

# ------------------------------------------------------------------ network
ensure_underlay() {
  have_ns "$UL_NS" || { log "creating the underlay switch (netns $UL_NS, bridge br0)"; ip netns add "$UL_NS"; }
  ip -n "$UL_NS" link set lo up
  ip -n "$UL_NS" link show br0 >/dev/null 2>&1 || ip -n "$UL_NS" link add br0 type bridge
  ip -n "$UL_NS" link set br0 up
  # a switch does not run iptables on the frames it bridges (the sysctls are per namespace)
  # shellcheck disable=SC2016
  ip netns exec "$UL_NS" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-ip*tables; do [ -w "$f" ] && echo 0 >"$f"; done; true'
}

ensure_host_net() {
  local k=$1 ns; ns=$(host_ns "$k")
  have_ns "$ns" || { log "n$k: creating netns $ns ($(host_ip "$k"))"; ip netns add "$ns"; }
  ip -n "$ns" link set lo up
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip -n "$UL_NS" link del "n$k" 2>/dev/null || true
    ip -n "$ns" link add eth0 type veth peer name "n$k" netns "$UL_NS"
    ip -n "$UL_NS" link set "n$k" master br0
    ip -n "$UL_NS" link set "n$k" up
    ip -n "$ns" addr add "$(host_ip "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
  fi
}

# ------------------------------------------------------------------ dockerd
docker_up() { curl -sf --max-time 2 --unix-socket "$(docker_sock "$1")" http://docker/_ping >/dev/null 2>&1; }
dk() { local k=$1; shift; docker -H "unix://$(docker_sock "$k")" "$@"; }

# Is pid alive? A zombie is not (its parent, often pid 1 here, may reap it late).
alive() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
pid_of() { # pidfile comm -> pid if that process is alive and is comm
  local pid; pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && alive "$pid" && echo "$pid"
}
dockerd_pid() { pid_of "$(host_run "$1")/docker.pid" dockerd; }

launch_dockerd() {
  local k=$1 dir run
  dir=$(host_dir "$k"); run=$(host_run "$k")
  docker_up "$k" && return 0
  if dockerd_pid "$k" >/dev/null; then return 0; fi  # starting already
  # pid files of a dead dockerd and its containerd (maybe zombies not yet reaped) would make
  # the new dockerd refuse to start, or wait for a containerd that is gone
  rm -f "$run/docker.pid"
  if ! pid_of "$run/docker-exec/containerd/containerd.pid" containerd >/dev/null; then
    rm -f "$run/docker-exec/containerd/containerd.pid"
  fi
  mkdir -p "$dir/docker" "$run/docker-exec"
  log "n$k: starting dockerd"
  setsid "$SELF" __host "$k" dockerd \
    --data-root "$dir/docker" --exec-root "$run/docker-exec" \
    -H "unix://$(docker_sock "$k")" --pidfile "$run/docker.pid" \
    --bip "172.$((30 + k)).0.1/24" --default-address-pool "base=172.$((30 + k)).0.0/16,size=24" \
    --cgroup-parent "/$(cgroup_parent "$k")" \
    --insecure-registry "$REGISTRY_ADDR" \
    >>"$dir/dockerd.log" 2>&1 </dev/null &
}

wait_dockerd() {
  local k=$1 i
  for i in $(seq 1 300); do
    docker_up "$k" && return 0
    sleep 0.2
  done
  tail -n 30 "$(host_dir "$k")/dockerd.log" >&2 || true
  die "n$k: dockerd did not answer on $(docker_sock "$k") within 60 s (log above: $(host_dir "$k")/dockerd.log)"
}

has_images() { local k=$1 i; for i in "${IMAGES[@]}"; do dk "$k" image inspect "$i" >/dev/null 2>&1 || return 1; done; }

# Build the test images on n1 once, then load them into host K.
ensure_images() {
  local k=$1 tar="$LAB_DATA/images.tar"
  has_images "$k" && return 0
  if ! has_images 1; then
    log "n1: building the test images"
    DOCKER="docker -H unix://$(docker_sock 1)" "$HERE/build-test-images.sh"
  fi
  [ "$k" = 1 ] && return 0
  if [ ! -s "$tar" ]; then
    dk 1 save -o "$tar.tmp" "${IMAGES[@]}" && mv "$tar.tmp" "$tar"
  fi
  log "n$k: loading the test images"
  dk "$k" load -q -i "$tar" >/dev/null
  has_images "$k" || die "n$k: the test images are still missing after docker load"
}

# ------------------------------------------------------------------ shoald
shoald_pid() { pid_of "$(host_run "$1")/shoald.pid" shoald; }
sh_k() { local k=$1; shift; "$BIN_DIR/shoal" -H "unix://$(shoald_sock "$k")" "$@"; }
shoald_up() { sh_k "$1" info >/dev/null 2>&1; }
docker_api_sock() { echo "$(host_run "$1")/docker-api.sock"; }

start_shoald() {
  local k=$1 dir run i
  dir=$(host_dir "$k"); run=$(host_run "$k")
  require_bins
  if ! shoald_pid "$k" >/dev/null; then
    mkdir -p "$dir/shoald"
    log "n$k: starting shoald"
    LAB_PIDFILE="$run/shoald.pid" NO_COLOR=1 setsid "$SELF" __engine "$k" "$BIN_DIR/shoald" \
      --data-dir "$dir/shoald" --socket "$(shoald_sock "$k")" \
      --docker-host "unix://$(docker_sock "$k")" --node-name "n$k" \
      --docker-api "unix://$(docker_api_sock "$k")" \
      --metrics-addr "$(host_ip "$k"):9323" --web-addr "$(host_ip "$k"):9380" \
      >>"$dir/shoald.log" 2>&1 </dev/null &
  fi
  for i in $(seq 1 200); do
    shoald_up "$k" && return 0
    if ((i > 10)) && ! shoald_pid "$k" >/dev/null; then break; fi
    sleep 0.1
  done
  tail -n 30 "$dir/shoald.log" >&2 || true
  die "n$k: shoald does not answer \`shoal info\` on $(shoald_sock "$k") (log above: $dir/shoald.log)"
}

stop_shoald() {
  local k=$1 pid i
  pid=$(shoald_pid "$k") || return 0
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  rm -f "$(host_run "$k")/shoald.pid"
}

# ------------------------------------------------------------------ swarm
swarm_state() { sh_k "$1" info 2>/dev/null | sed -n 's/^Swarm: //p'; }

swarm_init() {
  [ "$(swarm_state 1)" = active ] && return 0
  log "n1: swarm init on $(host_ip 1):$PORT"
  sh_k 1 swarm init --advertise-addr "$(host_ip 1)" --listen-addr "$(host_ip 1):$PORT" >&2 \
    || die "n1: shoal swarm init failed (log: $(host_dir 1)/shoald.log)"
}

# Join host K to n1's swarm as ROLE (manager|worker).
swarm_join() {
  local k=$1 role=$2 token out
  [ "$(swarm_state "$k")" = active ] && return 0
  log "n$k: joining as $role"
  if ! token=$(sh_k 1 swarm join-token -q "$role" 2>&1); then
    die "n$k: cannot get a $role join token from n1: $token
  (shoal swarm join/join-token may not be implemented yet: use \`lab.sh up --no-join\`)"
  fi
  if ! out=$(sh_k "$k" swarm join --token "$token" --advertise-addr "$(host_ip "$k")" \
    --listen-addr "$(host_ip "$k"):$PORT" "$(host_ip 1):$PORT" 2>&1); then
    die "n$k: shoal swarm join failed: $out
  (log: $(host_dir "$k")/shoald.log; use \`lab.sh up --no-join\` to build the hosts without joining)"
  fi
  [ -z "$out" ] || log "n$k: $out"
}

# ------------------------------------------------------------------ host life
# Bring host K up to a running dockerd with the images and a running shoald.
host_up() {
  local k=$1 role=$2
  ensure_host_net "$k"
  mkdir -p "$(host_dir "$k")" "$(host_run "$k")"
  echo "$role" >"$(host_dir "$k")/role"
  launch_dockerd "$k"
}

host_ready() {
  local k=$1
  wait_dockerd "$k"
  ensure_images "$k"
  start_shoald "$k"
}

check_underlay() {
  local k=$1 i
  for i in $(seq 1 10); do  # a fresh link may drop the very first packets
    in_host 1 ping -c1 -W1 "$(host_ip "$k")" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "n1 cannot reach n$k at $(host_ip "$k") over the underlay (lab.sh exec n1 ip addr; lab.sh exec n$k ip addr)"
}

# Pids that belong to host K (or to the whole lab with K=""), never this script or its callers.
lab_pids() {
  local k=${1:-} inodes="" ns p d nsl ino pat cg
  local skip=" $$ " a=$$
  while [ "$a" -gt 1 ]; do
    a=$(awk '/^PPid:/{print $2}' "/proc/$a/status" 2>/dev/null || echo 1); skip="$skip$a "
  done
  if [ -n "$k" ]; then
    pat="($LAB_RUN|$LAB_DATA)/n$k(/| |\$)"
    have_ns "$(host_ns "$k")" && inodes=$(stat -L -c %i "/run/netns/$(host_ns "$k")")
    cg="/sys/fs/cgroup/*/$(cgroup_parent "$k") /sys/fs/cgroup/$(cgroup_parent "$k")"
  else
    pat="($LAB_RUN|$LAB_DATA)(/| |\$)"
    for ns in /run/netns/shl-*; do [ -e "$ns" ] && inodes="$inodes $(stat -L -c %i "$ns")"; done
    cg="/sys/fs/cgroup/*/shoal-lab-n* /sys/fs/cgroup/shoal-lab-n*"
  fi
  {
    # processes in the host's cgroups (its containers)
    # shellcheck disable=SC2086
    for d in $cg; do
      [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
    done
    for d in /proc/[0-9]*; do
      p=${d#/proc/}
      if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qE "$pat"; then echo "$p"; continue; fi
      [ -n "$inodes" ] || continue
      nsl=$(readlink "$d/ns/net" 2>/dev/null) || continue
      ino=${nsl#net:[}; ino=${ino%]}
      case " $inodes " in *" $ino "*) echo "$p" ;; esac
    done
    true
  } | sort -nu | while read -r p; do
    case "$skip" in *" $p "*) ;; *) if alive "$p"; then echo "$p"; fi ;; esac
  done
}

# TERM, then KILL, whatever still belongs to host K (or to the lab).
kill_leftovers() {
  local k=${1:-} pids p i
  pids=$(lab_pids "$k")
  [ -n "$pids" ] || return 0
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    pids=$(for p in $pids; do if alive "$p"; then echo "$p"; fi; done)
    [ -n "$pids" ] || break
    sleep 0.1
  done
  pids=$(lab_pids "$k")
  for p in $pids; do
    warn "killing leftover pid $p ($(cat "/proc/$p/comm" 2>/dev/null || echo gone))"
    kill -KILL "$p" 2>/dev/null || true
  done
  for i in $(seq 1 50); do [ -z "$(lab_pids "$k")" ] && break; sleep 0.1; done
}

remove_cgroups() {
  local c
  for c in "$@"; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$c" ] && warn "could not remove cgroup $c"
  done
  return 0
}

# Stop and remove everything of host K: shoald, its containers, dockerd and containerd,
# leftover processes, its namespace (with its veth), cgroups and state.
host_destroy() {
  local k=$1 pid ids i
  log "n$k: removing"
  stop_shoald "$k"
  if docker_up "$k"; then
    ids=$(timeout 30 docker -H "unix://$(docker_sock "$k")" ps -aq 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || timeout 60 docker -H "unix://$(docker_sock "$k")" rm -f $ids >/dev/null 2>&1 || true
  fi
  if pid=$(dockerd_pid "$k"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do alive "$pid" || break; sleep 0.2; done
    if alive "$pid"; then
      warn "n$k: dockerd $pid still alive after 30 s, SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  kill_leftovers "$k"
  remove_overlay_namespaces "$k"
  if have_ns "$(host_ns "$k")"; then ip netns del "$(host_ns "$k")"; fi
  if have_ns "$UL_NS"; then ip -n "$UL_NS" link del "n$k" 2>/dev/null || true; fi
  remove_cgroups /sys/fs/cgroup/*/"$(cgroup_parent "$k")" "/sys/fs/cgroup/$(cgroup_parent "$k")"
  unmount_under "$(host_dir "$k")" "$(host_run "$k")"
  rm -rf "$(host_dir "$k")" "$(host_run "$k")"
}

# Unmount anything visible here under the given directories (normally nothing: the hosts'
# mounts live in their own mount namespaces).
unmount_under() {
  local d m
  for d in "$@"; do
    awk -v d="$d" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null && log "unmounted $m"
    done
  done
  return 0
}

# ------------------------------------------------------------------ commands
cmd_up() {
  local managers=1 workers=2 join=1 init=1 n k
  while [ $# -gt 0 ]; do
    case $1 in
      --managers) managers=${2:?--managers needs a number}; shift 2 ;;
      --workers) workers=${2:?--workers needs a number}; shift 2 ;;
      --no-join) join=0; shift ;;
      --no-swarm) join=0; init=0; shift ;;
      *) die "up: unknown argument '$1' (usage: lab.sh up [--managers M] [--workers W] [--no-join] [--no-swarm])" ;;
    esac
  done
  [[ $managers =~ ^[0-9]+$ && $workers =~ ^[0-9]+$ ]] || die "up: --managers and --workers take numbers"
  ((managers >= 1)) || die "up: at least one manager (n1) is needed"
  n=$((managers + workers))
  ((n <= MAX_HOSTS)) || die "up: at most $MAX_HOSTS hosts"
  require_root; require_tools; require_bins
  mkdir -p "$LAB_DATA" "$LAB_RUN"
  ensure_underlay
  for k in $(known_hosts); do
    ((k <= n)) || warn "n$k exists but is beyond n$n: left as it is (lab.sh remove n$k)"
  done
  for k in $(seq 1 "$n"); do
    if ((k <= managers)); then host_up "$k" manager; else host_up "$k" worker; fi
  done
  for k in $(seq 1 "$n"); do host_ready "$k"; done
  for k in $(seq 2 "$n"); do check_underlay "$k"; done
  if ((init)); then swarm_init; fi
  if ((join)); then
    for k in $(seq 2 "$n"); do
      if ((k <= managers)); then swarm_join "$k" manager; else swarm_join "$k" worker; fi
    done
  fi
  cmd_status
  log "lab up: $n hosts (CLI: lab.sh shoal nK ..., docker: lab.sh docker nK ...)"
}

# The overlay namespaces host K's shoald made (shoal-<node id prefix>-<network>): named
# namespaces outlive the processes that made them. Read from K's node record, so run it
# after K's shoald is stopped and before its data dir goes.
remove_overlay_namespaces() {
  local k=$1 record id ns
  record="$(host_dir "$k")/shoald/node.json"
  [ -f "$record" ] || return 0
  id=$(sed -n 's/.*"node_id"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$record" | head -n1)
  [ -n "$id" ] || return 0
  for ns in $(ip netns list 2>/dev/null | awk -v p="shoal-${id:0:8}-" 'index($1, p) == 1 {print $1}'); do
    ip netns del "$ns" 2>/dev/null || true
  done
}

cmd_down() {
  local k
  require_root
  # hosts are independent: tear them down side by side (a dockerd takes seconds to stop)
  local pids=() failed=0 p
  for k in $(known_hosts); do host_destroy "$k" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  ((failed == 0)) || warn "a host's teardown failed; sweeping what is left"
  kill_leftovers ""
  if have_ns "$UL_NS"; then log "removing the underlay ($UL_NS)"; ip netns del "$UL_NS"; fi
  remove_cgroups /sys/fs/cgroup/*/shoal-lab-n* /sys/fs/cgroup/shoal-lab-n*
  unmount_under "$LAB_DATA" "$LAB_RUN"
  rm -rf "$LAB_DATA" "$LAB_RUN"
  local left
  left=$(ip netns list 2>/dev/null | awk '$1 ~ /^shl-/ {print $1}' | tr '\n' ' ')
  [ -z "$left" ] || die "down: namespaces still there: $left"
  [ -z "$(lab_pids "")" ] || die "down: processes still there: $(lab_pids "" | tr '\n' ' ')"
  log "lab down"
}

cmd_status() {
  local k link dock shd swarm role
  printf '%-5s %-12s %-8s %-6s %-8s %-14s %s\n' HOST ADDRESS ROLE LINK DOCKERD SHOALD SWARM
  for k in $(known_hosts); do
    role=$(cat "$(host_dir "$k")/role" 2>/dev/null || echo '?')
    if host_exists "$k"; then
      link=$(ip -n "$(host_ns "$k")" -br link show eth0 2>/dev/null | awk '{print tolower($2)}')
    else
      link=gone
    fi
    if docker_up "$k"; then dock=up; else dock=down; fi
    if shd=$(shoald_pid "$k"); then
      shd="pid $shd"; swarm=$(swarm_state "$k"); swarm=${swarm:-no answer}
    else
      shd=stopped; swarm=-
    fi
    printf '%-5s %-12s %-8s %-6s %-8s %-14s %s\n' "n$k" "$(host_ip "$k")" "$role" "${link:-?}" "$dock" "$shd" "$swarm"
  done
}

cmd_add_worker() {
  local k=1 last
  require_root; require_tools; require_bins
  if ! have_ns "$UL_NS" || ! host_exists 1; then die "add-worker: the lab is not up (lab.sh up first)"; fi
  last=$(known_hosts | tail -n 1); k=$((last + 1))
  ((k <= MAX_HOSTS)) || die "add-worker: at most $MAX_HOSTS hosts"
  host_up "$k" worker
  host_ready "$k"
  check_underlay "$k"
  [ "$(swarm_state 1)" = active ] || die "add-worker: n1 is not in a swarm (n$k is up but not joined)"
  swarm_join "$k" worker
  echo "n$k"
}

cmd_remove() {
  local k out; k=$(host_num "${1:?usage: lab.sh remove nK}")
  require_root
  if shoald_up "$k" && [ "$(swarm_state "$k")" = active ]; then
    out=$(sh_k "$k" swarm leave --force 2>&1) || warn "n$k: shoal swarm leave --force failed: $out"
  fi
  host_destroy "$k"
}

cmd_link() {
  local k; k=$(host_num "${1:?usage: lab.sh link nK down|up}")
  case ${2:-} in
    up | down) ;;
    *) die "usage: lab.sh link nK down|up" ;;
  esac
  require_host "$k"
  ip -n "$(host_ns "$k")" link set eth0 "$2"
}

cmd_registry() {
  local auth="" user pass dir pid i
  while [ $# -gt 0 ]; do
    case $1 in
      --auth) auth=${2:?--auth USER:PASS}; shift 2 ;;
      *) die "usage: lab.sh registry [--auth USER:PASS]" ;;
    esac
  done
  require_root
  have_ns "$UL_NS" || die "no lab underlay: run lab.sh up first"
  command -v docker-registry >/dev/null || die "no docker-registry: apt-get install docker-registry"
  dir=$LAB_DATA/registry
  mkdir -p "$dir/data" "$LAB_RUN"
  if pid=$(pid_of "$LAB_RUN/registry.pid" docker-registry); then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  ip -n "$UL_NS" addr replace "$REGISTRY_IP/24" dev br0
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: \"$REGISTRY_ADDR\"}"
    if [ -n "$auth" ]; then
      command -v htpasswd >/dev/null || die "no htpasswd: apt-get install apache2-utils"
      user=${auth%%:*}; pass=${auth#*:}
      htpasswd -Bbn "$user" "$pass" >"$dir/htpasswd" 2>/dev/null
      echo "auth: {htpasswd: {realm: shoal-lab, path: $dir/htpasswd}}"
    fi
  } >"$dir/config.yml"
  log "registry at $REGISTRY_ADDR${auth:+ (basic auth as ${auth%%:*})}"
  LAB_PIDFILE="$LAB_RUN/registry.pid" setsid ip netns exec "$UL_NS" \
    sh -c 'echo $$ >"$LAB_PIDFILE"; exec docker-registry serve "$1"' registry "$dir/config.yml" \
    >>"$dir/registry.log" 2>&1 </dev/null &
  for i in $(seq 1 100); do
    if ip netns exec "$UL_NS" curl -s -o /dev/null --max-time 1 "http://$REGISTRY_ADDR/v2/"; then
      echo "$REGISTRY_ADDR"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$dir/registry.log" >&2
  die "the registry did not answer at $REGISTRY_ADDR"
}

usage() { sed -n '/^# Usage/,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; }

main() {
  local cmd=${1:-help}; [ $# -eq 0 ] || shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    shoal) local k; k=$(host_num "${1:?usage: lab.sh shoal nK ARGS...}"); shift; require_bins
           exec "$BIN_DIR/shoal" -H "unix://$(shoald_sock "$k")" "$@" ;;
    docker) local k; k=$(host_num "${1:?usage: lab.sh docker nK ARGS...}"); shift
            exec docker -H "unix://$(docker_sock "$k")" "$@" ;;
    docker-api) local k; k=$(host_num "${1:?usage: lab.sh docker-api nK}"); require_host "$k"
                echo "unix://$(docker_api_sock "$k")" ;;
    exec) [ $# -ge 2 ] || die "usage: lab.sh exec nK CMD [ARGS...]"; cmd_in_engine "$@" ;;
    ip) local k; k=$(host_num "${1:?usage: lab.sh ip nK}"); host_ip "$k" ;;
    stop) local k; k=$(host_num "${1:?usage: lab.sh stop nK}"); require_host "$k"; stop_shoald "$k" ;;
    start) local k; k=$(host_num "${1:?usage: lab.sh start nK}"); require_host "$k"
           docker_up "$k" || die "n$k: its dockerd is not answering"; start_shoald "$k" ;;
    link) cmd_link "$@" ;;
    log) local k; k=$(host_num "${1:?usage: lab.sh log nK [LINES]}")
         tail -n "${2:-40}" "$(host_dir "$k")/shoald.log" ;;
    add-worker) cmd_add_worker ;;
    registry) cmd_registry "$@" ;;
    remove) cmd_remove "$@" ;;
    __host) cmd_host "$@" ;;
    __engine) cmd_in_engine "$@" ;;
    __enter) cmd_enter "$@" ;;
    help | -h | --help) usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
