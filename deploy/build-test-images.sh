#!/usr/bin/env bash
# Build the test images shoal-test/busybox:a and shoal-test/busybox:b with `docker import`
# from Debian's static busybox (every applet linked: sh, sleep, httpd, nc, wget, true, false).
# No registry is needed. Idempotent: images already present are kept.
set -euo pipefail
DOCKER=${DOCKER:-docker}
have() { $DOCKER image inspect "$1" >/dev/null 2>&1; }
if have shoal-test/busybox:a && have shoal-test/busybox:b; then exit 0; fi
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "no $BUSYBOX: apt-get install busybox-static" >&2; exit 1; }
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,var/www,root}
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo 'shoal test image' > "$root/var/www/index.html"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | $DOCKER import \
  --change 'ENV PATH=/bin:/sbin' --change 'CMD ["sh"]' - shoal-test/busybox:a >/dev/null
# :b differs from :a by one file, so an update from a to b changes the image id.
echo b > "$root/etc/shoal-test-version"
tar -C "$root" -c . | $DOCKER import \
  --change 'ENV PATH=/bin:/sbin' --change 'CMD ["sh"]' - shoal-test/busybox:b >/dev/null
echo "built shoal-test/busybox:a and :b" >&2
