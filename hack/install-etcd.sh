#!/usr/bin/env bash
# Builds etcd from its Go module (no release tarballs are reachable here) and
# prints the path of the cached binary.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"

dest="$VEIL_CACHE_DIR/bin/etcd-$ETCD_VERSION"
veil::cached "etcd $ETCD_VERSION" "$dest/etcd" "$@"

work="$VEIL_CACHE_DIR/build/etcd-$ETCD_VERSION"
veil::log "building etcd $ETCD_VERSION (about 8 minutes on two cores beside the other builds, once)"
started=$SECONDS
veil::fresh_module "$work" veil.local/etcd-build
cat > "$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
(
  cd "$work"
  export GOFLAGS=-mod=mod
  veil::quietly "building etcd" build.log go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  veil::quietly "building etcd" build.log go mod tidy
  mkdir -p out
  veil::quietly "building etcd" build.log go build -trimpath -ldflags="-s -w" -o out/etcd .
)
veil::install_atomically "$work/out" "$dest"
rm -rf "$work"
veil::log "built etcd $ETCD_VERSION in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
echo "$dest/etcd"
