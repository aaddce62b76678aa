#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (run as root):
# installs what the tests need, creates the unprivileged test user, stages the
# tree and a venv for it, and runs lint, the stub check, unit and integration
# tests as that user. Extra arguments go to pytest.
set -euo pipefail
user="${RUNTIMED_TEST_USER:-runtimed-test}"
stage="${RUNTIMED_TEST_DIR:-/var/tmp/runtimed-test}"
source "$(dirname "$0")/lib.sh"
require_root deploy/test.sh
prepare_user_and_tree

# A block device the blkio tests may throttle (--device-write-bps): a loop device on a
# file with an ext4 mounted for the test user (only root may make one).
block_img="$stage/block.img"
block_mnt="$stage/block"
release_block() {
  if mountpoint -q "$block_mnt"; then umount "$block_mnt" || true; fi
  losetup -j "$block_img" -O NAME -n 2>/dev/null | xargs -r -n1 losetup -d || true
  rm -f "$block_img"
}
release_block
truncate -s 64M "$block_img"
block_dev=$(losetup --find --show "$block_img")
mkfs.ext4 -q -F "$block_dev"
mkdir -p "$block_mnt"
mount "$block_dev" "$block_mnt"
chown "$user:" "$block_mnt"
export RUNTIMED_TEST_BLOCK="$block_dev:$block_mnt"

# A small filesystem the test user owns, for the disk-full tests (STAGE/smallfs,
# tests/integration/test_disk_full.py): mounting one takes root here, and a daemon
# started inside a namespace of the test's own could not map its subordinate ids.
smallfs="$stage/smallfs"
mkdir -p "$smallfs"
umount "$smallfs" 2>/dev/null || true
mount -t tmpfs -o "size=64m,mode=0700,uid=$uid,gid=$(id -g "$user")" runtimed-smallfs "$smallfs"

cleanup() {
  # Only the test user's processes: everything it runs was started by this script.
  pkill -TERM -u "$user" 2>/dev/null || true
  sleep 1
  pkill -KILL -u "$user" 2>/dev/null || true
  # The delegated cgroups go too (containers' first): they sit in this job's cgroup.
  "$(dirname "$0")/cgroups.sh" release "$user"
  release_block
  umount "$smallfs" 2>/dev/null || umount -l "$smallfs" 2>/dev/null || true
}
trap cleanup EXIT

status=0
as_user ruff check . || status=1
as_user python proto/generate.py --check || status=1
# Paths among the arguments pick tests; without any, pytest runs testpaths (tests/).
as_user python -m pytest -p no:cacheprovider "$@" || status=1
exit $status
