#!/usr/bin/env bash
# One docker CLI session over swarm objects, run the same way against Docker Swarm and
# against Shoal's Docker API, each command's stdout, stderr and exit code kept in OUTDIR
# as NN-name.out / .err / .rc. tests/tests/docker_api.rs runs it against a lab manager
# and compares with swarm/, recorded by deploy/bench/swarm_cli_record.sh against a real
# Swarm (../shared/peers/swarm).
#
# Usage: DOCKER_HOST=unix:///... IMG_A=img:a IMG_B=img:b session.sh OUTDIR
# Env: DOCKER (the docker CLI; default Debian's /usr/bin/docker, 20.10).
set -uo pipefail
out=${1:?usage: session.sh OUTDIR}
: "${IMG_A:?}" "${IMG_B:?}" "${DOCKER_HOST:?}"
D=${DOCKER:-/usr/bin/docker}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$out"
n=0
step() {
  local name=$1; shift
  n=$((n + 1))
  local f; f=$(printf '%s/%02d-%s' "$out" "$n" "$name")
  "$@" >"$f.out" 2>"$f.err" </dev/null
  echo $? >"$f.rc"
}
# Waits until COMMAND's stdout holds TEXT, up to 60 s.
settle() {
  local text=$1; shift
  for _ in $(seq 1 300); do
    "$@" 2>/dev/null | grep -qF -- "$text" && return 0
    sleep 0.2
  done
}

step node-ls "$D" node ls
step service-create "$D" service create --no-resolve-image --name web --replicas 2 \
  "$IMG_A" sh -c 'echo started; exec sleep 100000'
step service-ls "$D" service ls
step service-ps "$D" service ps web
step service-scale "$D" service scale web=3
step service-ps-scaled "$D" service ps web
step service-update "$D" service update --no-resolve-image --image "$IMG_B" web
step service-ps-updated "$D" service ps web
step service-rollback "$D" service rollback web
step service-ls-rolled-back "$D" service ls
step service-logs "$D" service logs web
step network-create "$D" network create -d overlay front
step network-ls "$D" network ls --filter driver=overlay
step secret-create sh -c "echo s3cret | $D secret create dbpass -"
step secret-ls "$D" secret ls
step stack-deploy "$D" stack deploy --resolve-image never -c "$here/stack.yml" app
settle " 2/2 " "$D" stack services app
step stack-services "$D" stack services app
step stack-ps "$D" stack ps app
step stack-rm "$D" stack rm app
step service-rm "$D" service rm web
step service-inspect-missing "$D" service inspect nothere
