#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kubectl from the Go module
# k8s.io/kubernetes and prints the directory holding them.
#
# k8s.io/kubernetes points its staging modules (k8s.io/api, ...) at
# ./staging/src through replace directives, which only apply inside its own
# repository. A throwaway module that replaces each of them with the published
# v0.x release of the same Kubernetes version makes the build reproducible
# from the module proxy alone.
#
# The build shares compiled packages with Veil's own builds through the Go
# build cache: k8s.io/apiserver, client-go, grpc and the rest are compiled
# once for both. Two things make that possible: the throwaway module selects
# at least the versions Veil's go.mod selects (a package is reused only when
# every package below it is the same version), and there is no -trimpath
# (which changes every compile's cache key; Veil's builds do not use it).
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)

dest="$VEIL_CACHE_DIR/bin/kube-$KUBE_VERSION"
bins=(kube-apiserver kube-controller-manager kubectl)
# A binary added to bins makes the cached directory incomplete: rebuilt.
complete=1
for b in "${bins[@]}"; do [[ -x "$dest/$b" ]] || complete=0; done
if (( complete )); then echo "$dest"; exit 0; fi
veil::missing "${bins[*]} $KUBE_VERSION" "${1:-}"

staging_version="v0.${KUBE_VERSION#v1.}"
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
work="$VEIL_CACHE_DIR/build/kube-$KUBE_VERSION"
veil::log "building kube-apiserver, kube-controller-manager, kubectl $KUBE_VERSION (30 to 45 minutes on two cores, once, depending on what builds beside it)"
started=$SECONDS
veil::fresh_module "$work" veil.local/kube-build
(
  cd "$work"
  export GOFLAGS=-mod=mod
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # Every "k8s.io/x => ./staging/src/k8s.io/x" becomes "k8s.io/x => k8s.io/x v0.N.M".
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$modfile")
  [[ -n "$staging" ]] || { echo "no staging modules found in $modfile" >&2; exit 1; }
  args=(-require="k8s.io/kubernetes@$KUBE_VERSION")
  for m in $staging; do args+=(-replace="$m=$m@$staging_version"); done
  # Veil's selected versions as minimums (MVS keeps the higher of the two).
  # They are read from a copy of go.mod and go.sum: `go list -m all`
  # records a go.sum line for every go.mod it reads, and the repository's
  # go.sum must stay as `go mod tidy` leaves it (make test verifies it
  # while this builds; on a fresh machine that check failed).
  graph="$work/veil-graph"
  mkdir -p "$graph"
  cp "$repo/go.mod" "$graph/go.mod"
  cp "$repo/go.sum" "$graph/go.sum"
  while read -r path version _; do
    [[ -n "$version" && "$path" != k8s.io/kubernetes ]] || continue
    grep -qx "$path" <<<"$staging" && continue
    args+=(-require="$path@$version")
  done < <(cd "$repo" && GOFLAGS=-mod=mod go list -modfile="$graph/go.mod" -m all | tail -n +2)
  go mod edit "${args[@]}"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  veil::quietly "building Kubernetes" build.log go mod tidy -e
  mkdir -p out
  veil::quietly "building Kubernetes" build.log go build -tags tools -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o out/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
)
veil::install_atomically "$work/out" "$dest"
rm -rf "$work"
veil::log "built Kubernetes $KUBE_VERSION in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
echo "$dest"
