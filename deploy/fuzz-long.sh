#!/usr/bin/env bash
# The long fuzz run (issue 11): every target under libFuzzer (cargo fuzz, nightly) for
# SECONDS each (default 600), one after another. Prints one line per target: inputs run,
# time, crashes. Crashing inputs stay in fuzz/artifacts/NAME/, the corpus in
# fuzz/corpus/NAME/ (both ignored by git). By hand only; the test command runs the short
# form (tests/examples/fuzz.rs).
#
#   deploy/fuzz-long.sh [SECONDS] [TARGET...]
#
# Needs: rustup's nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../fuzz"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(join_token certificate control_request store_batch raft_peer_message)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/shoal-fuzz-target}
cargo +nightly fuzz build --release >&2
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  if cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    verdict="0 crashes"
  else
    verdict="CRASHED: $(ls "artifacts/$t" | head -3 | tr '\n' ' ')"; failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  slow=$(grep -o 'Slowest unit: [0-9]* s' "$log" | tail -1 || true)
  printf '%s: %s inputs in %s s, peak RSS %s MB%s, %s\n' "$t" "$runs" "$seconds" "$peak" \
    "${slow:+, $slow}" "$verdict"
  [ "$verdict" = "0 crashes" ] || tail -40 "$log" >&2
  rm -f "$log"
done
exit $failed
