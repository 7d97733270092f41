#!/usr/bin/env bash
# Builds etcd from its Go module (no release tarballs are reachable here) and
# prints the path of the cached binary.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"

dest="$VEIL_CACHE_DIR/bin/etcd-$ETCD_VERSION"
if [[ -x "$dest/etcd" ]]; then echo "$dest/etcd"; exit 0; fi

work="$VEIL_CACHE_DIR/build/etcd-$ETCD_VERSION"
veil::log "building etcd $ETCD_VERSION (about a minute, once)"
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
  veil::quietly build.log go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  veil::quietly build.log go mod tidy
  mkdir -p out
  veil::quietly build.log go build -trimpath -ldflags="-s -w" -o out/etcd .
)
veil::install_atomically "$work/out" "$dest"
rm -rf "$work"
echo "$dest/etcd"
