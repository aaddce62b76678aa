#!/usr/bin/env bash
# Stage this checkout for an unprivileged user and give it a venv with runtimed installed.
# Usage (as root): deploy/stage.sh USER DIR   -> DIR/src (the tree), DIR/venv
set -euo pipefail
user="$1"
dir="$2"
src_root="$(cd "$(dirname "$0")/.." && pwd)"

mkdir -p "$dir"
# -R: a directory staged earlier for another user (the bench had the test user's) is reused.
chown -R "$user:" "$dir"
chmod 0755 "$dir"
# A copy the user owns: the checkout may live where the user cannot read (/root).
runuser -u "$user" -- mkdir -p "$dir/src"
tar -C "$src_root" --exclude=.venv --exclude=.git --exclude='__pycache__' --exclude='*.egg-info' \
    --exclude=.pytest_cache --exclude=.ruff_cache -cf - . \
  | runuser -u "$user" -- tar -C "$dir/src" --no-same-owner -xf -

if [[ ! -x "$dir/venv/bin/python" ]]; then
  runuser -u "$user" -- /usr/bin/python3 -m venv "$dir/venv"
fi
# A regular install, not an editable one: the editable finder adds ~6 ms to the
# start of every runtimectl command (the tests run against src/ from their cwd).
# pip reinstalls a local directory even at the same version, so a re-stage replaces it.
pip=(runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)"
     "$dir/venv/bin/pip" --quiet --disable-pip-version-check)
"${pip[@]}" install "$dir/src[test]"
# setuptools builds inside the tree; the tests and ruff see the tree, not a second copy.
rm -rf "$dir/src/build" "$dir/src/runtimed.egg-info"
