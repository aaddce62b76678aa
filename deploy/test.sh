#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (run as root):
# installs what the tests need, creates the unprivileged test user, stages the
# tree and a venv for it, and runs lint, the stub check, unit and integration
# tests as that user. Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
user="${RUNTIMED_TEST_USER:-runtimed-test}"
stage="${RUNTIMED_TEST_DIR:-/var/tmp/runtimed-test}"

if [[ $(id -u) -ne 0 ]]; then
  echo "deploy/test.sh sets up the host and a test user: run it as root (sudo)" >&2
  exit 1
fi

"$here/setup-host.sh" "$user"
"$here/stage.sh" "$user" "$stage"
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)

as_user() {
  (cd "$stage/src" && runuser -u "$user" -- env -i \
    HOME="$home" USER="$user" LOGNAME="$user" \
    PATH="$stage/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 "$@")
}

cleanup() {
  # Only the test user's processes: everything it runs was started by this script.
  pkill -TERM -u "$user" 2>/dev/null || true
  sleep 1
  pkill -KILL -u "$user" 2>/dev/null || true
}
trap cleanup EXIT

status=0
as_user ruff check . || status=1
as_user python proto/generate.py --check || status=1
as_user python -m pytest -p no:cacheprovider "$@" tests || status=1
exit $status
