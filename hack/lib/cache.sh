#!/usr/bin/env bash
# Shared by the installers: where the test binaries live, outside the repo,
# keyed by version so a version bump never reuses a stale build.

VEIL_CACHE_DIR="${VEIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}"

# Versions of the real components the tests and `make run` use. Kubernetes
# matches the k8s.io/* libraries in go.mod; bump them together.
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
VAULT_VERSION="${VAULT_VERSION:-v1.21.0}"

veil::log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# veil::fresh_module DIR MODULE: an empty throwaway module, so nothing these
# builds need ever lands in the project's go.mod.
veil::fresh_module() {
  local dir=$1 mod=$2
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && GOFLAGS=-mod=mod go mod init "$mod" >/dev/null 2>&1)
}

# veil::install_atomically SRC_DIR DEST_DIR: builds land in a temporary
# directory first so an interrupted build never leaves a half-written binary
# that a later run would trust.
veil::install_atomically() {
  local src=$1 dest=$2
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.tmp" && mv "$src" "$dest.tmp" && rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

# veil::quietly LOG CMD...: runs a long, chatty step with its output in LOG,
# shown only if it fails.
veil::quietly() {
  local log=$1; shift
  if ! "$@" >>"$log" 2>&1; then
    echo "failed: $*" >&2
    tail -n 50 "$log" >&2
    return 1
  fi
}
