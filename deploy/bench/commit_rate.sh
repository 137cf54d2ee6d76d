#!/usr/bin/env bash
# Commit rate of Shoal's control plane beside etcd's, same load generator, same run
# (issue 12; docs/BENCHMARKS.md): a 3-member etcd on loopback, then a 3-manager Shoal lab,
# each driven by tests/src/bin/raft_bench for SECONDS at each client count, RUNS times.
#   deploy/bench/commit_rate.sh [SECONDS] [RUNS] [CLIENTS...]     (default: 10 2 1 1000)
# Needs release builds of raft_bench, shoald and shoal:
#   cargo build --release -p shoal-tests --bin raft_bench
#   cargo build --release --bins -p shoal-agent -p shoal-cli
# Prints one line per run: "<system> clients=N commits/s=... p50=... p99=...".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECONDS_EACH=${1:-10}
RUNS=${2:-2}
shift $(($# < 2 ? $# : 2))
CLIENTS=("${@:-1}")
[ $# -gt 0 ] || CLIENTS=(1 1000)
BIN=${SHOAL_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
for b in raft_bench shoald shoal; do
    [ -x "$BIN/$b" ] || { echo "commit_rate: $BIN/$b is missing: build it with cargo build --release (see the header)" >&2; exit 1; }
done
date -u +"commit_rate: started %Y-%m-%dT%H:%M:%SZ, commit $(git -C "$ROOT" rev-parse --short HEAD)"

leader=$("$HERE/etcd3.sh" up)
trap '"$HERE/etcd3.sh" down >/dev/null 2>&1 || true' EXIT
for clients in "${CLIENTS[@]}"; do
    for _ in $(seq "$RUNS"); do
        echo -n "etcd  clients=$clients "
        "$BIN/raft_bench" etcd "$leader" "$clients" "$SECONDS_EACH"
    done
done
"$HERE/etcd3.sh" down >/dev/null

lab() { SHOAL_BIN_DIR=$BIN "$HERE/lab_private.sh" "$@"; }
lab down >/dev/null 2>&1 || true
trap 'lab down >/dev/null 2>&1 || true' EXIT
lab up --managers 3 --workers 0 >/dev/null
for clients in "${CLIENTS[@]}"; do
    for _ in $(seq "$RUNS"); do
        echo -n "shoal clients=$clients "
        lab exec n1 "$BIN/raft_bench" shoal 10.79.0.11:4242 /var/lib/shoalbench-lab/n1/shoald \
            "$clients" "$SECONDS_EACH"
    done
done
