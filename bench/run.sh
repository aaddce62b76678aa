#!/usr/bin/env bash
# Run the benchmarks from a fresh Debian 12 machine (as root): installs what the
# daemon needs plus podman, stages the tree for the unprivileged test user and
# runs the benches as that user.
# Usage: bench/run.sh [pull|push|containers|volumes|logs|logmem|network|streaming|images|build|dockerapi|all] [ARGS...]
#   all (the default) runs every bench with its defaults; ARGS go to the bench
#   named (bench/pull_bench.py, bench/push_bench.py, bench/container_bench.py,
#   bench/volume_bench.py, bench/log_bench.py, bench/log_memory.py, bench/net_bench.py,
#   bench/stream_bench.py, bench/image_bench.py or bench/dockerapi_bench.py, see their --help).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$here/../deploy"
# A user of its own: deploy/test.sh ends by killing every process of its test user.
user="${RUNTIMED_BENCH_USER:-runtimed-bench}"
# Not deploy/test.sh's directory: a bench may run while the tests do.
stage="${RUNTIMED_BENCH_DIR:-/var/tmp/runtimed-bench}"

which=all
case "${1:-}" in
  pull | push | containers | volumes | logs | logmem | network | streaming | images | build | dockerapi | all) which="$1"; shift ;;
esac
if [[ $which == all && $# -gt 0 ]]; then
  echo "bench/run.sh: name the bench these arguments are for, e.g." \
    "bench/run.sh pull --rounds 5, bench/run.sh containers --log-mib 1024" >&2
  exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/run.sh sets up the host and a test user: run it as root (sudo)" >&2
  exit 1
fi

RUNTIMED_BENCH=1 "$deploy/setup-host.sh" "$user"
"$deploy/stage.sh" "$user" "$stage"
source "$deploy/lib.sh"  # find_crictl: the streaming bench drives crictl
crictl=$(find_crictl "$here/..")
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)

case "$which" in
  pull) modules=(bench.pull_bench) ;;
  push) modules=(bench.push_bench) ;;
  containers) modules=(bench.container_bench) ;;
  volumes) modules=(bench.volume_bench) ;;
  logs) modules=(bench.log_bench) ;;
  logmem) modules=(bench.log_memory) ;;
  network) modules=(bench.net_bench) ;;
  streaming) modules=(bench.stream_bench) ;;
  images) modules=(bench.image_bench) ;;
  build) modules=(bench.build_bench) ;;
  dockerapi) modules=(bench.dockerapi_bench) ;;
  all) modules=(bench.pull_bench bench.push_bench bench.container_bench bench.volume_bench
                bench.log_bench bench.log_memory bench.net_bench bench.stream_bench
                bench.image_bench bench.build_bench bench.dockerapi_bench) ;;
esac

# Each bench cleans up after itself (daemons, shims, registry, podman's containers
# and pause process); no blanket kill of the user's processes, so tests running
# meanwhile survive.
status=0
for module in "${modules[@]}"; do
  (cd "$stage/src" && runuser -u "$user" -- env -i \
    HOME="$home" USER="$user" LOGNAME="$user" \
    PATH="$stage/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 RUNTIMED_CRICTL="${crictl:-}" \
    python -m "$module" "$@") || status=1
done
exit $status
