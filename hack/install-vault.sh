#!/usr/bin/env bash
# Builds a Vault server from its Go module for the end-to-end tests and
# `make run`, and prints the path of the cached binary. Vault is licensed
# under the BUSL; it is a test fixture here and never shipped with Veil.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"

dest="$VEIL_CACHE_DIR/bin/vault-$VAULT_VERSION"
veil::cached "vault $VAULT_VERSION" "$dest/vault" "$@"

work="$VEIL_CACHE_DIR/build/vault-$VAULT_VERSION"
veil::log "building vault $VAULT_VERSION (about 10 minutes on two cores, once)"
started=$SECONDS
veil::fresh_module "$work" veil.local/vault-build
(
  cd "$work"
  export GOFLAGS=-mod=mod
  veil::quietly "building vault" build.log go get "github.com/hashicorp/vault@$VAULT_VERSION"
  mkdir -p out
  veil::quietly "building vault" build.log go build -trimpath -ldflags="-s -w" -o out/vault github.com/hashicorp/vault
)
veil::install_atomically "$work/out" "$dest"
rm -rf "$work"
veil::log "built vault $VAULT_VERSION in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
echo "$dest/vault"
