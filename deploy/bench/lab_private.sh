#!/usr/bin/env bash
# deploy/lab.sh under other names, so a benchmark lab and the test lab can be up at once
# without touching each other: netns shk-* (not shl-*), /var/lib/shoalbench-lab and
# /run/shoalbench-lab (not shoal-lab), cgroups /shoalbench-lab-nK, underlay 10.79.0.0/24.
# Everything else is lab.sh as it is in the tree now (regenerated on each call).
#   deploy/bench/lab_private.sh up --managers 1 --workers 2     (any lab.sh command)
#   then: deploy/bench/cluster.py --lab-run /run/shoalbench-lab
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${LAB_PRIVATE_COPY:-/var/tmp/shoal-bench/lab-private.sh}
mkdir -p "$(dirname "$OUT")"
# Each host's docker bridge is a /22 (lab.sh's /24 holds 253 containers: too few for
# 1000 tasks on 3 hosts).
sed -e 's/shl-/shk-/g' -e 's#shoal-lab#shoalbench-lab#g' -e 's/^SUBNET=10\.78\.0$/SUBNET=10.79.0/' \
    -e 's#\.0\.1/24" --default-address-pool#.0.1/22" --default-address-pool#' \
    -e "s#\"\$HERE/build-test-images.sh\"#\"$HERE/../build-test-images.sh\"#" \
    "$HERE/../lab.sh" >"$OUT.tmp"
chmod +x "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
exec "$OUT" "$@"
