#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running rootless runtimed (run as root):
# prepares the host, installs runtimed for an unprivileged user, starts the
# daemon as that user, imports a busybox image built locally (offline) and
# lists it and runs a container, then builds an image from it with a Dockerfile and runs that. The daemon is stopped at the end; the last line says how to use it.
set -euo pipefail
user="${RUNTIMED_USER:-runtimed-test}"
stage="${RUNTIMED_DIR:-/var/tmp/runtimed-demo}"
source "$(dirname "$0")/lib.sh"
require_root deploy/quickstart.sh
prepare_user_and_tree

as_user bash -euo pipefail -c '
  log="$STAGE/runtimed.log"
  echo "+ runtimed &   (as $(id -un), log in $log)"
  runtimed >"$log" 2>&1 &
  daemon=$!
  trap "kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true" EXIT
  for _ in $(seq 100); do runtimectl version >/dev/null 2>&1 && break; sleep 0.1; done
  set -x
  runtimectl info
  deploy/make-busybox-rootfs.sh "$STAGE/busybox-rootfs.tar"
  runtimectl import -c "CMD [\"/bin/sh\"]" "$STAGE/busybox-rootfs.tar" busybox:local
  runtimectl images
  runtimectl image inspect --format "{{.Id}} {{json .Config.Cmd}}" busybox:local
  runtimectl run --rm busybox:local sh -c "echo hello from \$(hostname) as \$(id -un)"
  printf "FROM busybox:local\nRUN echo built by runtimectl build > /built.txt\nCMD [\"cat\", \"/built.txt\"]\n" \
    | runtimectl build -t hello:built -
  runtimectl run --rm hello:built
'
echo
echo "Done. To use it yourself:  su - $user;  export PATH=$stage/venv/bin:\$PATH;  runtimed &"
