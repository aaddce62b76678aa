#!/usr/bin/env bash
# Prepare a Debian 12 host for runtimed (run as root, idempotent):
#  - system packages the daemon and its tests use,
#  - an unprivileged user with a large /etc/subuid and /etc/subgid range,
#  - /dev/net/tun and /dev/fuse usable by that user (pasta/slirp4netns, fuse-overlayfs),
#  - a runtime dir for the user (there is no systemd-logind here).
# Usage: deploy/setup-host.sh [USER]   (default user: runtimed-test)
set -euo pipefail

user="${1:-runtimed-test}"
subid_start=200000
subid_count=400000  # at least this many ids

packages=(
  python3 python3-venv python3-dev gcc
  crun runc uidmap passt slirp4netns fuse-overlayfs
  busybox-static docker-registry apache2-utils zstd util-linux e2fsprogs iproute2 procps
  nftables
  # Log driver tests: rsyslog (started by the tests themselves, as the test user, with
  # their own config; gtls for tcp+tls) and openssl for their test CA.
  rsyslog rsyslog-gnutls openssl
  # Image interchange tests: archives we save are read by skopeo and podman, and
  # archives skopeo writes are loaded by us (test peers only, never used by runtimed).
  skopeo podman
  # Docker API tests: docker-compose 1.29 (on Debian's docker-py) drives runtimed's docker.sock.
  docker-compose
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The docker CLI drives runtimed's Docker API in the tests. These machines have one on PATH;
# elsewhere Debian's docker.io brings it (its own daemon is not started: the tests use ours).
if ! command -v docker >/dev/null; then
  echo "setup-host: installing docker.io for its docker CLI"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  if command -v service >/dev/null; then
    service docker stop >/dev/null 2>&1 || true
  fi
fi
# Debian starts the packaged registry as a service; the tests run their own.
if command -v service >/dev/null && service docker-registry status >/dev/null 2>&1; then
  service docker-registry stop >/dev/null 2>&1 || true
fi

if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
fi
uid=$(id -u "$user")
# Kubernetes user-namespace pods map 65536 ids each on top of the runtime's
# own, so the range must be large; replace a smaller one useradd may have made.
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  have=$(awk -F: -v u="$user" '$1 == u { print $3; exit }' "$f")
  if [[ -z "$have" || "$have" -lt "$subid_count" ]]; then
    sed -i "/^${user}:/d" "$f"
    start=$(awk -F: -v s="$subid_start" '{ e = $2 + $3; if (e > s) s = e } END { print s }' "$f")
    echo "${user}:${start}:${subid_count}" >>"$f"
  fi
done

# Desktop distributions ship both world-usable; pasta/slirp4netns need tun,
# fuse-overlayfs needs fuse.
for dev in /dev/net/tun /dev/fuse; do
  if [[ -c "$dev" ]]; then
    chmod 0666 "$dev"
  fi
done

# crun refuses a hybrid cgroup layout whose v2 hierarchy holds controllers
# ("cgroups in hybrid mode not supported"); on these hosts that is hugetlb
# alone, so bind it to a v1 hierarchy of its own, as the other controllers are.
v2=/sys/fs/cgroup/unified
if [[ -f "$v2/cgroup.controllers" ]] && grep -qw hugetlb "$v2/cgroup.controllers" \
   && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi

# Resource limits: a cgroup subtree of ours for the user, in each v1 controller.
"$(dirname "$0")/cgroups.sh" delegate "$user"

run_dir="/run/user/${uid}"
mkdir -p "$run_dir"
chown "$user:" "$run_dir"
chmod 0700 "$run_dir"

echo "setup-host: user ${user} (uid ${uid}) ready, runtime dir ${run_dir}"
