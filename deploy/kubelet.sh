#!/usr/bin/env bash
# Start kubelet in standalone mode (static pods from a directory, no API server) against
# a rootless runtimed, inside runtimed's user, mount and network namespaces
# (`runtimectl unshare --rootless-netns`). Run it as the user who runs runtimed:
#
#   deploy/kubelet.sh [STATIC_POD_DIR] [-- KUBELET_FLAG...]
#
# STATIC_POD_DIR defaults to $KUBELET_DIR/manifests. Environment:
#   KUBELET      the kubelet binary (default: kubelet on PATH)
#   KUBELET_DIR  kubelet's state: root dir, certificates, pod logs, config
#                (default: ${XDG_DATA_HOME:-~/.local/share}/runtimed-kubelet)
#   RUNTIMED_HOST unix://SOCKET of runtimed (default: its usual socket)
# kubelet's directories are made here, as the user: inside the namespace they belong
# to its root, so the pod directories kubelet makes are the runtime's to bind.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [[ $(id -u) -eq 0 ]]; then
  echo "kubelet.sh: run this as the user who runs runtimed, not as root" >&2
  exit 1
fi
kubelet="${KUBELET:-$(command -v kubelet || true)}"
if [[ -z "$kubelet" || ! -x "$kubelet" ]]; then
  echo "kubelet.sh: no kubelet binary: put kubelet (1.36) on PATH or set KUBELET" >&2
  exit 1
fi
kubelet="$(realpath "$kubelet")"
runtimectl="${RUNTIMECTL:-$(command -v runtimectl || true)}"
if [[ -z "$runtimectl" ]]; then
  echo "kubelet.sh: runtimectl not found on PATH" >&2
  exit 1
fi

socket="${RUNTIMED_HOST:-unix://${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/runtimed/runtimed.sock}"
socket="${socket#unix://}"
dir="${KUBELET_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/runtimed-kubelet}"
manifests="$dir/manifests"
if [[ $# -gt 0 && "$1" != "--" ]]; then
  manifests="$1"
  shift
fi
[[ "${1:-}" == "--" ]] && shift

mkdir -p "$dir/root" "$dir/pki" "$dir/pod-logs" "$dir/volume-plugins" "$manifests"
dir="$(realpath "$dir")"
manifests="$(realpath "$manifests")"
config="$dir/kubelet-config.yaml"
sed -e "s|@RUNTIMED_SOCKET@|$socket|g" \
    -e "s|@STATIC_POD_PATH@|$manifests|g" \
    -e "s|@POD_LOGS_DIR@|$dir/pod-logs|g" \
    -e "s|@VOLUME_PLUGIN_DIR@|$dir/volume-plugins|g" \
    "$here/kubelet-config.yaml" > "$config.tmp"
mv "$config.tmp" "$config"

exec "$runtimectl" -H "unix://$socket" unshare --rootless-netns "$kubelet" \
  --config="$config" \
  --root-dir="$dir/root" \
  --cert-dir="$dir/pki" \
  --hostname-override="$(hostname)" \
  "$@"
