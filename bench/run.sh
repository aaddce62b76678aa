#!/usr/bin/env bash
# Run the benchmarks from a fresh Debian 12 machine (as root): installs what the
# daemon needs plus podman, stages the tree for the unprivileged test user and
# runs the benches as that user.
# Usage: bench/run.sh [NAME|all] [ARGS...]
#   NAME is one of the benches in the table below (bench/MODULE.py; see its --help);
#   all (the default) runs every bench with its defaults; ARGS go to the bench named.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$here/../deploy"
# A user of its own: deploy/test.sh ends by killing every process of its test user.
user="${RUNTIMED_BENCH_USER:-runtimed-bench}"
# Not deploy/test.sh's directory: a bench may run while the tests do.
stage="${RUNTIMED_BENCH_DIR:-/var/tmp/runtimed-bench}"

# One line per bench: its name on the command line and its module in bench/.
declare -A benches=(
  [pull]=pull_bench [push]=push_bench [containers]=container_bench [volumes]=volume_bench
  [logs]=log_bench [logmem]=log_memory [network]=net_bench [streaming]=stream_bench
  [images]=image_bench [build]=build_bench [stats]=stats_bench [events]=events_bench
  [dockerapi]=dockerapi_bench
)
order=(pull push containers volumes logs logmem network streaming images build stats events
       dockerapi)

which=all
if [[ -n "${1:-}" && ( "$1" == all || -n "${benches[$1]:-}" ) ]]; then
  which="$1"
  shift
fi
if [[ $which == all && $# -gt 0 ]]; then
  echo "bench/run.sh: name the bench these arguments are for, e.g." \
    "bench/run.sh pull --rounds 5, bench/run.sh containers --log-mib 1024" >&2
  exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/run.sh sets up the host and a test user: run it as root (sudo)" >&2
  exit 1
fi

"$deploy/setup-host.sh" "$user"
"$deploy/stage.sh" "$user" "$stage"
source "$deploy/lib.sh"  # find_crictl: the streaming bench drives crictl
crictl=$(find_crictl "$here/..")
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)

modules=()
for name in "${order[@]}"; do
  if [[ $which == all || $which == "$name" ]] && [[ -f "$here/${benches[$name]}.py" ]]; then
    modules+=("bench.${benches[$name]}")
  fi
done

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
