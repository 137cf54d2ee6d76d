#!/usr/bin/env bash
# Records what the docker CLI prints against a real Docker Swarm for
# tests/data/docker-cli/session.sh, into tests/data/docker-cli/swarm/: what
# tests/tests/docker_api.rs compares Shoal's Docker API with. Starts the peer harness's
# Swarm (../shared/peers/swarm: 1 manager, 2 workers in network namespaces) and tears it
# down after.
#
# Usage (as root): deploy/bench/swarm_cli_record.sh [PEERS_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers=${1:-$root/../shared/peers/swarm}
out=$root/tests/data/docker-cli/swarm
[ -x "$peers/setup.sh" ] || { echo "no Swarm harness at $peers" >&2; exit 1; }
(cd "$peers" && ./teardown.sh >/dev/null 2>&1 || true; ./setup.sh)
trap '(cd "$peers" && ./teardown.sh >/dev/null 2>&1 || true)' EXIT
rm -rf "$out"
DOCKER_HOST=unix:///run/swb/node1.sock IMG_A=swb/busybox:a IMG_B=swb/busybox:b \
  "$root/tests/data/docker-cli/session.sh" "$out"
echo "recorded $(ls "$out" | wc -l) files in $out"
