#!/usr/bin/env bash
# `docker service ls` and `docker service ps` with N tasks (default 1000), against Swarm's
# dockerd and against Shoal's Docker API, one after the other in the same run, the same
# client (Debian's docker 20.10) and commands (deploy/bench/docker_cli_poll.py). Each
# cluster is 1 manager + 2 workers in network namespaces; only one runs at a time.
#
# Usage (as root): deploy/bench/docker_cli_vs_swarm.sh [REPLICAS] [POLLS]
# Env: SHOAL_BIN_DIR (default $CARGO_TARGET_DIR/release: build with
#      cargo build --release -p shoal-agent -p shoal-cli --bins), PEERS (../shared/peers/swarm)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
replicas=${1:-1000} polls=${2:-20}
peers=${PEERS:-$root/../shared/peers/swarm}
export SHOAL_BIN_DIR=${SHOAL_BIN_DIR:-${CARGO_TARGET_DIR:-/var/tmp/shoal-target}/release}
poll=$root/deploy/bench/docker_cli_poll.py
lab=$root/deploy/bench/lab_private.sh

echo "== Swarm (../shared/peers/swarm), $replicas tasks"
(cd "$peers" && ./teardown.sh >/dev/null 2>&1 || true; ./setup.sh >/dev/null)
"$poll" --host unix:///run/swb/node1.sock --pid-file /run/swb/node1.pid \
  --image swb/busybox:a --replicas "$replicas" --polls "$polls" --label swarm || true
(cd "$peers" && ./teardown.sh >/dev/null 2>&1 || true)

echo "== Shoal ($SHOAL_BIN_DIR), $replicas tasks"
"$lab" down >/dev/null 2>&1 || true
"$lab" up --managers 1 --workers 2 >/dev/null
"$poll" --host "$("$lab" docker-api n1)" --pid-file /run/shoalbench-lab/n1/shoald.pid \
  --image shoal-test/busybox:a --replicas "$replicas" --polls "$polls" --label shoal || true
"$lab" down >/dev/null 2>&1 || true
