#!/usr/bin/env bash
# Installs what the real node of test/node runs, and prints the directory
# holding kubelet and kube-scheduler:
#
#   - containerd, runc, the CNI plugins and iptables from Debian's packages
#     (apt-get, as root; seconds), when missing;
#   - kubelet and kube-scheduler $KUBE_VERSION, built from k8s.io/kubernetes like
#     kube-apiserver (lib/kube-build.sh) into their own directory of the
#     cache, so adding them leaves the cached kube-apiserver build alone.
#
# With --print-path it installs nothing: it fails, naming `make tools`, when
# anything is missing. Failing to install is an error, never a skip: the
# node test cannot run without these.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"
source "$(dirname "$0")/lib/kube-build.sh"
VEIL_PRINT_PATH=${1:-}

# The Debian packages and a command each installs.
packages=(containerd runc containernetworking-plugins iptables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Installed but without the bridge plugin (removed by hand): install again.
[[ -x /usr/lib/cni/bridge || " ${missing[*]} " == *" containernetworking-plugins "* ]] || missing+=(containernetworking-plugins)
if (( ${#missing[@]} > 0 )); then
  if [[ "$VEIL_PRINT_PATH" == --print-path ]]; then
    echo "the real node needs the Debian packages ${missing[*]}: run 'make tools' (it installs them with apt-get, as root)" >&2
    exit 3
  fi
  if [[ $(id -u) != 0 ]]; then
    echo "the real node needs the Debian packages ${missing[*]}, and installing them needs root: run 'sudo apt-get install -y ${missing[*]}', then make tools again" >&2
    exit 1
  fi
  command -v apt-get >/dev/null || { echo "the real node needs ${missing[*]}, and this machine has no apt-get: install them (containerd 1.6+, runc, the CNI plugins in /usr/lib/cni, iptables) by hand" >&2; exit 1; }
  veil::log "installing ${missing[*]} with apt-get"
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    # A fresh machine may have no package lists yet.
    DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      echo "could not install ${missing[*]} with apt-get (log above): the real node test cannot run" >&2
      exit 1
    fi
  fi
  rm -f "$log"
fi

veil::build_kube "kube-node-$KUBE_VERSION" "minutes on two cores once kube-apiserver is built, once" kubelet kube-scheduler
