#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kubectl from the Go module
# k8s.io/kubernetes and prints the directory holding them (lib/kube-build.sh
# says how).
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"
source "$(dirname "$0")/lib/kube-build.sh"
VEIL_PRINT_PATH=${1:-}
veil::build_kube "kube-$KUBE_VERSION" "30 to 45 minutes on two cores, once, depending on what builds beside it" \
  kube-apiserver kube-controller-manager kubectl
