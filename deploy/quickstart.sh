#!/usr/bin/env bash
# Shoal on this machine in one command: installs what is missing, builds Shoal, brings up
# a 3-node lab cluster (deploy/lab.sh: n1 manager, n2 and n3 workers, each a network
# namespace with its own dockerd and shoald, joined over mTLS), deploys a web service
# spread over the three nodes on an overlay network with port 8000 published through the
# routing mesh, prints `shoal node ls` and `shoal service ps web`, and shows a task on n2
# reaching web by name over the overlay and n3 reaching it through n1's published port.
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
if ! shoal network inspect front >/dev/null 2>&1; then
  shoal network create -d overlay front >/dev/null
fi
if ! shoal service inspect web >/dev/null 2>&1; then
  shoal service create --name web --replicas 6 --network front \
    --publish published=8000,target=8080 \
    shoal-test/busybox:a httpd -f -p 8080 -h /var/www >/dev/null
fi
if ! shoal service inspect client >/dev/null 2>&1; then
  shoal service create --name client --network front --constraint node.hostname==n2 \
    shoal-test/busybox:a sleep 1000000 >/dev/null
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
client=""
for _ in $(seq 1 600); do
  client=$(./deploy/lab.sh docker n2 ps -q --filter label=shoal.service.name=client | head -n1)
  [ -n "$client" ] && break
  sleep 0.1
done
if [ -n "$client" ]; then
  log "from a task on n2, over the overlay: web's VIP, its tasks, and a page through the VIP"
  addrs() { ./deploy/lab.sh docker n2 exec "$client" nslookup "$1" | sed -n 's/^Address: //p' | grep -v ':53$' | tr '\n' ' '; }
  echo "web       -> $(addrs web)"
  echo "tasks.web -> $(addrs tasks.web)"
  echo "GET http://web:8080/ -> $(./deploy/lab.sh docker n2 exec "$client" wget -qO- http://web:8080/ || true)"
fi
log "from host n3, through the routing mesh on n1's address (any node answers)"
echo "GET http://10.78.0.11:8000/ -> $(./deploy/lab.sh exec n3 timeout 5 wget -qO- http://10.78.0.11:8000/ || true)"
echo
log "try: deploy/lab.sh shoal n1 service scale web=9 | deploy/lab.sh shoal n1 node update --availability drain n2 | deploy/lab.sh down"
