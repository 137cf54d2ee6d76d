#!/usr/bin/env bash
# Shoal on this machine in one command: installs what is missing, builds Shoal, starts
# shoald, makes this node a swarm manager and deploys a 3-replica web service of the test
# image, then prints `shoal service ps web`. Idempotent: re-running keeps what is there.
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/shoal-target}
log() { printf '[quickstart] %s\n' "$*" >&2; }

./deploy/ensure-host.sh
log "building shoal and shoald"
cargo build --release --bins
for bin in shoal shoald; do ln -sf "$CARGO_TARGET_DIR/release/$bin" "/usr/local/bin/$bin"; done

if ! shoal info >/dev/null 2>&1; then
  log "starting shoald (log: /var/log/shoald.log)"
  mkdir -p /var/lib/shoal /run/shoal
  setsid shoald >>/var/log/shoald.log 2>&1 </dev/null &
  for _ in $(seq 1 100); do shoal info >/dev/null 2>&1 && break; sleep 0.1; done
  shoal info >/dev/null || { tail -n 20 /var/log/shoald.log >&2; exit 1; }
fi
if shoal info | grep -q 'Swarm: inactive'; then
  shoal swarm init
fi
if ! shoal service inspect web >/dev/null 2>&1; then
  shoal service create --name web --replicas 3 shoal-test/busybox:a httpd -f -p 8080 -h /var/www
fi
log "waiting for web to run 3/3"
for _ in $(seq 1 300); do
  shoal service ls --format json | grep -q '"Name":"web".*"Replicas":"3/3"' && break
  sleep 0.1
done
shoal service ls
echo
shoal service ps web
