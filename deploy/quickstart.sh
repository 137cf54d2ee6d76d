#!/usr/bin/env bash
# Shoal on this machine in one command: installs what is missing, builds Shoal, brings up
# a 3-node lab cluster (deploy/lab.sh: n1 manager, n2 and n3 workers, each a network
# namespace with its own dockerd and shoald, joined over mTLS), deploys a web service
# spread over the three nodes, and prints `shoal node ls` and `shoal service ps web`.
# Idempotent: re-running keeps what is there. Run as root on Debian 12.
# Afterwards: deploy/lab.sh shoal n1 service ls   ...   deploy/lab.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/shoal-target}
log() { printf '[quickstart] %s\n' "$*" >&2; }

./deploy/ensure-host.sh
log "building shoal and shoald"
cargo build --bins
log "bringing up the lab cluster (1 manager, 2 workers)"
./deploy/lab.sh up --managers 1 --workers 2
shoal() { ./deploy/lab.sh shoal n1 "$@"; }
if ! shoal service inspect web >/dev/null 2>&1; then
  shoal service create --name web --replicas 6 shoal-test/busybox:a httpd -f -p 8080 -h /var/www >/dev/null
fi
log "waiting for web to run 6/6"
for _ in $(seq 1 600); do
  shoal service ls --format json | grep -q '"Replicas":"6/6"' && break
  sleep 0.1
done
shoal node ls
echo
shoal service ps web
echo
log "try: deploy/lab.sh shoal n1 service scale web=9 | deploy/lab.sh shoal n1 node update --availability drain n2 | deploy/lab.sh down"
