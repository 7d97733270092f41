#!/usr/bin/env bash
# veil::build_kube NAME ESTIMATE BIN...: builds the Kubernetes commands BIN...
# (kube-apiserver, kubelet, ...: directories under k8s.io/kubernetes/cmd) of
# $KUBE_VERSION into $VEIL_CACHE_DIR/bin/NAME, unless every one is there
# already, and prints that directory. ESTIMATE is how long the log says a
# build takes. Sourced after lib/cache.sh; a second
# argument --print-path to the installer is passed as $VEIL_PRINT_PATH.
#
# k8s.io/kubernetes points its staging modules (k8s.io/api, ...) at
# ./staging/src through replace directives, which only apply inside its own
# repository. A throwaway module that replaces each of them with the published
# v0.x release of the same Kubernetes version makes the build reproducible
# from the module proxy alone.
#
# The build shares compiled packages with Veil's own builds, and the
# Kubernetes builds with each other, through the Go build cache:
# k8s.io/apiserver, client-go, grpc and the rest are compiled once for all.
# Three things make that possible: the throwaway module selects at least the
# versions Veil's go.mod selects (a package is reused only when every package
# below it is the same version); every build's module imports the same
# commands (veil::kube_commands), so they all select the same versions; and
# there is no -trimpath (which changes every compile's cache key; Veil's
# builds do not use it).

# Every command any installer builds: the module graph of each build.
veil::kube_commands() { echo kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler; }

veil::build_kube() {
  local name=$1 estimate=$2; shift 2
  local bins=("$@")
  local repo dest work b complete=1
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  dest="$VEIL_CACHE_DIR/bin/$name"
  work="$VEIL_CACHE_DIR/build/$name"
  # A binary added to bins makes the cached directory incomplete: rebuilt.
  for b in "${bins[@]}"; do [[ -x "$dest/$b" ]] || complete=0; done
  if (( complete )); then echo "$dest"; return 0; fi
  veil::missing "${bins[*]} $KUBE_VERSION" "${VEIL_PRINT_PATH:-}"

  local staging_version="v0.${KUBE_VERSION#v1.}"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  veil::log "building ${bins[*]} $KUBE_VERSION ($estimate)"
  local started=$SECONDS
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
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in $(veil::kube_commands); do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
      printf ')\n'
    } > tools.go
    veil::quietly "building ${bins[*]}" build.log go mod tidy -e
    mkdir -p out
    pkgs=()
    for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    veil::quietly "building ${bins[*]}" build.log go build -tags tools -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
      -o out/ "${pkgs[@]}"
  )
  veil::install_atomically "$work/out" "$dest"
  rm -rf "$work"
  veil::log "built ${bins[*]} $KUBE_VERSION in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
  echo "$dest"
}
