#!/usr/bin/env bash
# Shoal's test command: prepares the machine (Docker Engine, protoc, test images), builds
# the binaries the end-to-end tests drive, then runs every test of the workspace and
# the compose loader's fuzz target for a few seconds.
# Run as root on Debian 12. Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/shoal-target}
./deploy/ensure-host.sh
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
# The compose loader's fuzz target, briefly: no panic, no hang, every refusal placed.
corpus=../shared/compose-corpus
[ -d "$corpus" ] || corpus=
cargo run -q -p shoal-compose --example fuzz_load -- --seconds "${SHOAL_FUZZ_SECONDS:-20}" $corpus
