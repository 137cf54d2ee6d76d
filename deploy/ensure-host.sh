#!/usr/bin/env bash
# Make this Debian machine ready to build and run Shoal: installs what is missing
# (docker.io, protobuf-compiler, busybox-static, nftables, iproute2, procps, tcpdump for
# the encrypted overlay's capture test, docker-registry and apache2-utils for the lab's
# registry, prometheus and chromium for the metrics and web view tests), starts dockerd when
# /_ping does not answer and waits for it, then builds the test images.
# Idempotent; run as root. Used by .ci/run and deploy/quickstart.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
log() { printf '[ensure-host] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "run as root (Shoal needs dockerd and network namespaces)" >&2; exit 1; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx httpd || need+=(busybox-static)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v tcpdump >/dev/null || need+=(tcpdump)
# sysctl (overlay namespaces' bridge settings) and pkill (the capture test).
command -v pkill >/dev/null || need+=(procps)
# The lab's image registry and its basic-auth file (the registry tests).
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
# The metrics test scrapes with Prometheus; the web view's test drives headless Chromium.
# Without their recommends (chromium's would pull a desktop in).
lean=()
command -v prometheus >/dev/null || lean+=(prometheus)
command -v chromium >/dev/null || lean+=(chromium fonts-liberation)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ${#lean[@]} -gt 0 ]; then
  log "installing ${lean[*]}"
  [ ${#need[@]} -gt 0 ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi

ping_docker() { curl -sf --max-time 2 --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1; }
if ! ping_docker; then
  log "starting dockerd"
  mkdir -p /var/log
  setsid dockerd >>/var/log/shoal-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 150); do ping_docker && break; sleep 0.2; done
  ping_docker || { tail -n 30 /var/log/shoal-dockerd.log >&2; echo "dockerd did not come up" >&2; exit 1; }
fi
log "dockerd answers"

"$HERE/build-test-images.sh"
