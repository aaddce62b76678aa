#!/usr/bin/env bash
# Delegate (or release) a cgroup v1 subtree to an unprivileged user, as root, once.
#
# runtimed runs rootless: without a cgroup it may write to, it cannot limit or
# measure containers. On cgroup v2 systemd delegates one to every user
# (user@UID.service); on cgroup v1, and without systemd, root has to. For each v1
# controller runtimed uses, this makes `<the cgroup this script runs in>/runtimed-USER`,
# gives it to USER (the directory and the files that move processes), starts its
# cpuset with its parent's CPUs and memory nodes, and lists the directories in
# /etc/runtimed/cgroups/USER, which the daemon reads. Only children of our own
# cgroups are made: nothing else is touched.
#
# Usage: deploy/cgroups.sh delegate|release USER
set -euo pipefail

action="${1:?usage: cgroups.sh delegate|release USER}"
user="${2:?usage: cgroups.sh delegate|release USER}"
controllers=(cpu cpuacct cpuset memory blkio pids freezer hugetlb)
conf_dir=/etc/runtimed/cgroups
conf="$conf_dir/$user"

# The mount point of the v1 hierarchy that holds controller $1 (none: empty).
mount_of() {
  awk -v c="$1" '{
    for (i = 1; $i != "-"; i++) {}
    if ($(i + 1) != "cgroup") next
    n = split($(i + 3), opts, ",")
    for (j = 1; j <= n; j++) if (opts[j] == c) { print $5; exit }
  }' /proc/self/mountinfo
}

# Our own cgroup in the hierarchy that holds controller $1.
own_cgroup() {
  awk -F: -v c="$1" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' \
    /proc/self/cgroup
}

# rmdir a delegated tree, deepest first; a cgroup with processes in it stays (EBUSY).
remove_tree() {
  local try
  for try in 1 2 3 4 5; do
    [[ -d "$1" ]] || return 0
    find "$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
    sleep 0.2  # processes just killed leave their cgroups a moment later
  done
}

delegate() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    echo "cgroups: unified (v2) hierarchy: runtimed uses the cgroup systemd delegates" \
      "to ${user} (user@UID.service with Delegate=yes) or a writable one it starts in"
    return 0
  fi
  local c mnt own dir lines=()
  for c in "${controllers[@]}"; do
    mnt=$(mount_of "$c")
    [[ -n "$mnt" ]] || continue
    own=$(own_cgroup "$c")
    dir="${mnt}${own%/}/runtimed-${user}"
    mkdir -p "$dir"
    if [[ "$c" == cpuset ]]; then
      # An empty cpuset takes no process: start with what the parent has.
      [[ -s "$dir/cpuset.cpus" ]] || cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
      [[ -s "$dir/cpuset.mems" ]] || cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
    fi
    # The directory (to make children) and what moves processes into it.
    chown "$user:" "$dir" "$dir/cgroup.procs" "$dir/tasks"
    lines+=("$c $dir")
  done
  mkdir -p "$conf_dir"
  local tmp
  tmp=$(mktemp "$conf_dir/.${user}.XXXXXX")
  printf '%s\n' "# cgroup v1 subtrees delegated to ${user} by deploy/cgroups.sh" "${lines[@]}" >"$tmp"
  chmod 0644 "$tmp"
  mv "$tmp" "$conf"
  echo "cgroups: delegated ${#lines[@]} v1 controllers to ${user} (listed in ${conf})"
}

release() {
  [[ -f "$conf" ]] || return 0
  local c dir
  while read -r c dir; do
    [[ -z "$c" || "$c" == \#* ]] && continue
    remove_tree "$dir"
  done <"$conf"
  rm -f "$conf"
}

case "$action" in
  delegate) delegate ;;
  release) release ;;
  *) echo "usage: cgroups.sh delegate|release USER" >&2; exit 2 ;;
esac
