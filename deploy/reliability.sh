#!/usr/bin/env bash
# The reliability suite at full size (issue 11; docs/RELIABILITY.md has its figures): on
# lab clusters, 100 kill -9 of the leader and 20 partitions (link down, one-way nftables
# drops) under a recorded register load whose history must be linearizable; kill -9 of
# workers' shoald during 50 starts, an update and a drain; a whole-cluster restart; a full
# disk. Prints the RESULT lines each test gives. The test command runs the same tests
# short (3 kills, 3 partitions). By hand, as root:
#
#   deploy/reliability.sh            # SHOAL_SUITE_KILLS / SHOAL_SUITE_PARTITIONS change the counts
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/shoal-target}
export SHOAL_E2E_REQUIRED=1
export SHOAL_SUITE_KILLS=${SHOAL_SUITE_KILLS:-100}
export SHOAL_SUITE_PARTITIONS=${SHOAL_SUITE_PARTITIONS:-20}
./deploy/ensure-host.sh >&2
cargo build -q --workspace --bins
out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$(date +%s)
status=0
cargo nextest run --profile reliability -p shoal-tests --test reliability --test worker_kills \
  --no-fail-fast --no-capture >"$out" 2>&1 || status=$?
echo "# reliability suite, $(date -u '+%F %H:%M UTC'), $SHOAL_SUITE_KILLS leader kills, $SHOAL_SUITE_PARTITIONS partitions, $(( $(date +%s) - started )) s"
grep -E '^RESULT|^ *(PASS|FAIL) ' "$out" || true
if [ "$status" -ne 0 ]; then
  grep -E 'panicked|^ *(left|right):' -A3 "$out" | head -60 >&2
fi
exit "$status"
