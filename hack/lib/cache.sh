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

# veil::cached NAME PATH [--print-path]: the start of every installer. When
# PATH (a file or directory of the finished build) exists it is printed and
# the installer stops. With --print-path a missing build is an error naming
# the command that builds it: tests and `make run` look binaries up this way
# and never start a build of their own, which could outlast their timeouts.
veil::cached() {
  local name=$1 path=$2 mode=${3:-}
  if [[ -e "$path" ]]; then echo "$path"; exit 0; fi
  veil::missing "$name" "$mode"
}

# veil::missing NAME [--print-path]: with --print-path, fails at once naming
# the command that builds NAME; otherwise returns, and the build goes on.
veil::missing() {
  if [[ "${2:-}" == --print-path ]]; then
    echo "$1 is not built in $VEIL_CACHE_DIR (VEIL_CACHE_DIR): run 'make tools' first (it builds etcd, Kubernetes and Vault once; see the README for how long)" >&2
    exit 3
  fi
}

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

# veil::quietly WHAT LOG CMD...: runs a long, chatty step with its output in
# LOG, shown only if it fails. Every minute it says it is still working, so a
# first build of ten minutes never looks hung. The time counts from the
# installer's $started, so the steps of one build (download, then compile)
# read as one.
veil::quietly() {
  local what=$1 log=$2; shift 2
  local start=${started:-$SECONDS}
  ( while sleep 60; do veil::log "$what: still working, $(( (SECONDS - start) / 60 ))m so far"; done ) &
  local ticker=$!
  local rc=0
  "$@" >>"$log" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if (( rc != 0 )); then
    echo "failed: $*" >&2
    tail -n 50 "$log" >&2
    return "$rc"
  fi
}
