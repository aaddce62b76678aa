#!/usr/bin/env bash
# Build a small root filesystem tarball from Debian's static busybox, offline.
# Usage: deploy/make-busybox-rootfs.sh OUT.tar
set -euo pipefail
out="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev,home/app}
cp /bin/busybox "$root/bin/busybox"
# Hard links, not symlinks: busybox then runs each applet as its own executable.
for applet in $("$root/bin/busybox" --list); do
  [[ -e "$root/bin/$applet" ]] || ln "$root/bin/busybox" "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat >"$root/etc/group" <<'GR'
root:x:0:
app:x:1000:
nogroup:x:65534:
GR
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out" .
