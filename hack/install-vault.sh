#!/usr/bin/env bash
# Builds a Vault server from its Go module for the end-to-end tests and
# `make run`, and prints the path of the cached binary. Vault is licensed
# under the BUSL; it is a test fixture here and never shipped with Veil.
#
# Vault's own `minimal` build tag leaves out the storage backends, cloud auth
# methods and secrets engines the tests never use (it compiles less than half
# the source of a full build). Of what the tests need, only the Kubernetes
# auth method is outside it; it is built from the version Vault itself pins
# and registered as an external plugin, which is how Vault runs any plugin
# it does not link. The binary lands in plugins/ next to vault, the
# directory the server's plugin_directory names.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"

dest="$VEIL_CACHE_DIR/bin/vault-$VAULT_VERSION"
plugin=vault-plugin-auth-kubernetes
if [[ -x "$dest/vault" && -x "$dest/plugins/$plugin" ]]; then echo "$dest/vault"; exit 0; fi
veil::missing "vault $VAULT_VERSION" "${1:-}"

work="$VEIL_CACHE_DIR/build/vault-$VAULT_VERSION"
veil::log "building vault $VAULT_VERSION and its Kubernetes auth plugin (15 to 45 minutes on two cores, once, depending on what builds beside it)"
started=$SECONDS
veil::fresh_module "$work" veil.local/vault-build
(
  cd "$work"
  export GOFLAGS=-mod=mod
  veil::quietly "building vault" build.log go get "github.com/hashicorp/vault@$VAULT_VERSION"
  mkdir -p out/plugins
  # One invocation: the plugin shares Vault's SDK and API packages.
  veil::quietly "building vault" build.log go build -tags minimal -trimpath -ldflags="-s -w" -o out/ \
    github.com/hashicorp/vault "github.com/hashicorp/$plugin/cmd/$plugin"
  mv "out/$plugin" out/plugins/
)
veil::install_atomically "$work/out" "$dest"
rm -rf "$work"
veil::log "built vault $VAULT_VERSION in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
echo "$dest/vault"
