#!/usr/bin/env bash
# Run the benchmarks from a fresh Debian 12 machine (as root): installs what the
# daemon needs plus podman, stages the tree for the unprivileged test user and
# runs the pull bench as that user. Extra arguments go to bench/pull_bench.py
# (e.g. --rounds 5 --size-mb 200).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$here/../deploy"
user="${RUNTIMED_TEST_USER:-runtimed-test}"
# Not deploy/test.sh's directory: a bench may run while the tests do.
stage="${RUNTIMED_BENCH_DIR:-/var/tmp/runtimed-bench}"

if [[ $(id -u) -ne 0 ]]; then
  echo "bench/run.sh sets up the host and a test user: run it as root (sudo)" >&2
  exit 1
fi

RUNTIMED_BENCH=1 "$deploy/setup-host.sh" "$user"
"$deploy/stage.sh" "$user" "$stage"
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)

# The bench cleans up after itself (daemon, registry, podman's pause process);
# no blanket kill of the user's processes, so tests running meanwhile survive.
cd "$stage/src"
exec runuser -u "$user" -- env -i \
  HOME="$home" USER="$user" LOGNAME="$user" \
  PATH="$stage/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 \
  python -m bench.pull_bench "$@"
