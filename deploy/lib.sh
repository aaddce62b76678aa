# Shared by quickstart.sh and test.sh (sourced): prepare the host and a staged
# tree for an unprivileged user, then run commands as that user.
# Expects: $user, $stage. Sets: $uid, $home, $crictl. Provides: as_user CMD...

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "$1 prepares the host and an unprivileged user: run it as root (sudo)" >&2
    exit 1
  fi
}

prepare_user_and_tree() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  "$here/setup-host.sh" "$user"
  "$here/stage.sh" "$user" "$stage"
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  crictl=$(find_crictl "$here/..")
}

# crictl for the CRI tests (tests/support/crictl.py): $RUNTIMED_CRICTL, crictl on PATH,
# or ../shared/bin/crictl beside the checkout $1 (or beside a worktree's parent).
find_crictl() {
  local root="$1" candidate
  for candidate in "${RUNTIMED_CRICTL:-}" "$(command -v crictl || true)" \
      "$root/../shared/bin/crictl" "$root/../../shared/bin/crictl"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then
      realpath "$candidate"
      return
    fi
  done
}

# Run a command as $user from the staged tree with a clean, minimal environment.
as_user() {
  (cd "$stage/src" && runuser -u "$user" -- env -i \
    HOME="$home" USER="$user" LOGNAME="$user" \
    PATH="$stage/venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
    XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 STAGE="$stage" \
    RUNTIMED_CRICTL="${crictl:-}" RUNTIMED_TEST_BLOCK="${RUNTIMED_TEST_BLOCK:-}" "$@")
}
