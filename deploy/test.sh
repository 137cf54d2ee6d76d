#!/usr/bin/env bash
# Shoal's test command: prepares the machine (Docker Engine, protoc, test images), builds
# the binaries the end-to-end tests drive, then runs every test of the workspace and
# the fuzz targets for a few seconds each.
# Run as root on Debian 12. Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/shoal-target}
# Incremental caches grow with every build until the disk is full (it happened here:
# 47 GB): dropped when the target dir's disk has under 20 GB free. Only speed is lost.
mkdir -p "$CARGO_TARGET_DIR"
free_kb=$(df --output=avail -k "$CARGO_TARGET_DIR" | tail -1)
if [ "${free_kb:-0}" -lt $((20 * 1024 * 1024)) ]; then
    echo "[test] under 20 GB free: removing $CARGO_TARGET_DIR/*/incremental" >&2
    rm -rf "$CARGO_TARGET_DIR"/*/incremental
fi
./deploy/ensure-host.sh
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
# The compose loader's fuzz target, briefly: no panic, no hang, every refusal placed.
corpus=../shared/compose-corpus
[ -d "$corpus" ] || corpus=
cargo run -q -p shoal-compose --example fuzz_load -- --seconds "${SHOAL_FUZZ_SECONDS:-20}" $corpus
# The network-facing parsers (tokens, certificates, Control requests, store batches, Raft
# peer messages), a few seconds each: no panic, no hang.
cargo run -q -p shoal-tests --example fuzz -- --seconds "${SHOAL_FUZZ_SECONDS_EACH:-4}"
