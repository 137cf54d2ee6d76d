#!/usr/bin/env bash
# Shoal on this machine in one command: installs what is missing, builds Shoal, brings up
# a 3-node lab cluster (deploy/lab.sh: n1 manager, n2 and n3 workers, each a network
# namespace with its own dockerd and shoald, joined over mTLS), builds the example app's
# images on every node, and deploys deploy/examples/guestbook/compose.yml as the stack
# `guestbook`: web (3 tasks, port 8000 on every node through the routing mesh) asks api by
# name over the stack's overlay network; api (2 tasks, a healthcheck) greets with a
# secret; web waits for api to be healthy; a one-shot job runs once. `stack deploy` waits
# until all of it has converged. Then it shows the stack and fetches the page from host n3
# through n1's address. Idempotent: re-running redeploys (nothing changes if nothing did).
# Run as root on Debian 12. Afterwards: deploy/lab.sh shoal n1 stack ps guestbook ...
# deploy/lab.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/shoal-target}
log() { printf '[quickstart] %s\n' "$*" >&2; }
app=$PWD/deploy/examples/guestbook

./deploy/ensure-host.sh
log "building shoal and shoald"
cargo build --bins
log "bringing up the lab cluster (1 manager, 2 workers)"
./deploy/lab.sh up --managers 1 --workers 2
shoal() { ./deploy/lab.sh shoal n1 "$@"; }
log "building the guestbook's images on every node (from the test image, no registry)"
for k in 1 2 3; do
  for image in api web; do
    if ! out=$(./deploy/lab.sh docker "n$k" build -q -t "shoal-example/$image:1" "$app/$image" 2>&1); then
      printf '%s\n' "$out" >&2
      exit 1
    fi
  done
done
log "shoal stack deploy -c deploy/examples/guestbook/compose.yml guestbook"
shoal stack deploy -c "$app/compose.yml" guestbook
echo
shoal stack services guestbook
echo
shoal stack ps guestbook
echo
log "from host n3, through the routing mesh on n1's address (any node answers)"
for _ in 1 2; do
  echo "GET http://10.78.0.11:8000/cgi-bin/index ->"
  ./deploy/lab.sh exec n3 timeout 5 wget -qO- http://10.78.0.11:8000/cgi-bin/index || true
done
echo
log "look at: deploy/lab.sh shoal n1 stack history guestbook | ... service logs guestbook_seed"
log "change:  edit $app/greeting.txt, then run this again (the secret's new version rolls api)"
log "stop:    deploy/lab.sh shoal n1 stack rm guestbook; deploy/lab.sh down"
