#!/usr/bin/env bash
# The peer for Raft benchmarks: a 3-member etcd (Debian's etcd-server) on loopback, default
# flags, data under /var/tmp/etcd-bench. Clients on 127.0.0.1:{1,2,3}2379, peers on
# :{1,2,3}2380. BENCH_ETCD_SNAPSHOT_COUNT=N sets --snapshot-count (etcd 3.4's default is
# 100,000 entries; Shoal's managers snapshot every 5,000), to compare snapshots under load.
#   deploy/bench/etcd3.sh up      # start (fresh data), wait for a leader, print its URL
#   deploy/bench/etcd3.sh down    # stop, remove the data
set -euo pipefail
DATA=/var/tmp/etcd-bench
cluster="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
endpoints="127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379"

down() {
    pkill -f "etcd --name e[123] " 2>/dev/null || true
    for _ in $(seq 50); do pgrep -f "etcd --name e[123] " >/dev/null || break; sleep 0.1; done
    rm -rf "$DATA"
}

up() {
    command -v etcd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >/dev/null
    down
    mkdir -p "$DATA"
    for i in 1 2 3; do
        etcd --name "e$i" --data-dir "$DATA/e$i" \
            --listen-client-urls "http://127.0.0.1:${i}2379" \
            --advertise-client-urls "http://127.0.0.1:${i}2379" \
            --listen-peer-urls "http://127.0.0.1:${i}2380" \
            --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            ${BENCH_ETCD_SNAPSHOT_COUNT:+--snapshot-count "$BENCH_ETCD_SNAPSHOT_COUNT"} \
            >"$DATA/e$i.log" 2>&1 &
    done
    for _ in $(seq 100); do
        leader=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status 2>/dev/null \
            | awk -F', ' '$5 == "true" {print $1}' | head -1)
        if [ -n "$leader" ]; then
            echo "http://$leader"
            return 0
        fi
        sleep 0.2
    done
    echo "etcd3.sh: no leader after 20 s (logs in $DATA)" >&2
    return 1
}

case "${1:-}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
