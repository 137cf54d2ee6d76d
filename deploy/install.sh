#!/usr/bin/env bash
# Installs Shoal on a plain Debian host: shoald and shoal, a systemd unit for shoald
# (restarted on failure, started after docker.service), shell completions and man pages
# (made from the binaries' own flag definitions). Run it on each machine, then
# `shoal swarm init` on the first and `shoal swarm join` on the others (README.md,
# "Three real machines").
#
# Usage (as root): deploy/install.sh [--bin-dir DIR] [--prefix /usr/local] [--destdir DIR]
#                                    [--no-deps] [--no-start]
#   --bin-dir DIR  take shoald and shoal from DIR (default: build them, cargo --release)
#   --prefix P     where binaries and man pages go (default /usr/local)
#   --destdir D    stage everything under D instead of / (packaging, tests): no apt, no
#                  systemctl
#   --no-deps      do not install Debian's docker.io
#   --no-start     install and enable the unit, but do not start shoald
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir="" prefix=/usr/local destdir="" deps=1 start=1
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --destdir) destdir=${2:?--destdir needs a directory}; deps=0; start=0; shift 2 ;;
    --no-deps) deps=0; shift ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
log() { echo "[install] $*"; }

if [ "$deps" = 1 ] && ! command -v dockerd >/dev/null; then
  log "installing Debian's docker.io"
  apt-get update -qq && apt-get install -y -qq docker.io
fi

if [ -z "$bin_dir" ]; then
  log "building shoald and shoal (cargo build --release)"
  (cd "$root" && cargo build --release -p shoal-agent -p shoal-cli --bins)
  bin_dir=${CARGO_TARGET_DIR:-$root/target}/release
fi
for b in shoald shoal; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: no $b in $bin_dir" >&2; exit 1; }
done

bin=$destdir$prefix/bin
man1=$destdir$prefix/share/man/man1
man8=$destdir$prefix/share/man/man8
unit_dir=$destdir/etc/systemd/system
install -d "$bin" "$man1" "$man8" "$unit_dir" \
  "$destdir/usr/share/bash-completion/completions" \
  "$destdir/usr/share/zsh/vendor-completions" \
  "$destdir/usr/share/fish/vendor_completions.d"
install -m 0755 "$bin_dir/shoald" "$bin_dir/shoal" "$bin/"
log "installed $bin/shoald and $bin/shoal"

"$bin/shoal" completion bash >"$destdir/usr/share/bash-completion/completions/shoal"
"$bin/shoal" completion zsh >"$destdir/usr/share/zsh/vendor-completions/_shoal"
"$bin/shoal" completion fish >"$destdir/usr/share/fish/vendor_completions.d/shoal.fish"
"$bin/shoal" man "$man1" >/dev/null
"$bin/shoald" --man >"$man8/shoald.8"
log "installed completions (bash, zsh, fish) and man pages (shoal(1), shoald(8))"

cat >"$unit_dir/shoald.service" <<UNIT
[Unit]
Description=Shoal node daemon
Documentation=man:shoald(8)
After=network-online.target docker.service
Wants=network-online.target
Requires=docker.service

[Service]
Type=simple
ExecStart=$prefix/bin/shoald
Restart=on-failure
RestartSec=2
# Stopping shoald leaves the node's containers running, as stopping dockerd's swarm
# agent does not stop containers either.
KillMode=process
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
UNIT
log "installed $unit_dir/shoald.service"

if [ -z "$destdir" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable shoald.service >/dev/null
  if [ "$start" = 1 ]; then
    systemctl start docker.service shoald.service
    log "shoald is running: shoal info"
  fi
fi
