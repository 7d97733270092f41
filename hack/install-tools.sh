#!/usr/bin/env bash
# Builds every real component the tests and `make run` need (etcd,
# kube-apiserver / kube-controller-manager / kubectl, Vault) into
# $VEIL_CACHE_DIR, once; then the real node's (install-node.sh: Debian's
# containerd, runc, CNI plugins and iptables, and kubelet and
# kube-scheduler, built after kube-apiserver so they reuse what it
# compiled). It also installs OpenLDAP's slapd and ldap-utils with apt-get
# when they are missing (the Vault LDAP auth tests run slapd). `make tools`
# runs it before any test, so no test ever builds inside its own timeout.
#
# The three builds run at once: each is mostly compiling, which go build
# already spreads over the cores, but their module downloads and link steps
# overlap with the others' compiles.
set -euo pipefail
cd "$(dirname "$0")"
source lib/cache.sh

# Quick when they are there; a failure to install them fails the tools.
bash install-slapd.sh

pending=()
for tool in etcd kube vault; do
  if ! bash "install-$tool.sh" --print-path >/dev/null 2>&1; then pending+=("$tool"); fi
done
if (( ${#pending[@]} == 0 )); then
  veil::log "etcd, Kubernetes and Vault are built (in $VEIL_CACHE_DIR)"
  bash install-node.sh >/dev/null
  exit 0
fi
veil::log "building ${pending[*]} into $VEIL_CACHE_DIR: 25 to 30 minutes on two cores the first time (measured 24m41s and 27m21s from empty caches, alongside verification), then never again for these versions"
started=$SECONDS
pids=()
for tool in "${pending[@]}"; do
  bash "install-$tool.sh" >/dev/null & pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { veil::log "building ${pending[$i]} failed (its log is above)"; failed=1; }
done
(( failed == 0 )) || exit 1
veil::log "all built in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
bash install-node.sh >/dev/null
