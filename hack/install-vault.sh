#!/usr/bin/env bash
# Builds a Vault server from its Go module for the end-to-end tests and
# `make run`, and prints the path of the cached binary. Vault is licensed
# under the BUSL; it is a test fixture here and never shipped with Veil.
#
# Vault's own `minimal` build tag leaves out the storage backends, cloud auth
# methods and secrets engines the tests never use (it compiles less than half
# the source of a full build). Of what the tests need, the Kubernetes, AWS
# and LDAP auth methods are outside it; each is built from the version Vault
# itself pins and registered as an external plugin, which is how Vault runs
# any plugin it does not link. The binaries land in plugins/ next to vault,
# the directory the server's plugin_directory names. A cache built before a
# plugin was added here gets just the missing plugins, not a new Vault.
set -euo pipefail
source "$(dirname "$0")/lib/cache.sh"

dest="$VEIL_CACHE_DIR/bin/vault-$VAULT_VERSION"
# plugin binary name -> Go package (the AWS and LDAP methods live in Vault's
# own module, built from its builtin/credential/*/cmd).
declare -A plugins=(
  [vault-plugin-auth-kubernetes]=github.com/hashicorp/vault-plugin-auth-kubernetes/cmd/vault-plugin-auth-kubernetes
  [vault-plugin-auth-aws]=github.com/hashicorp/vault/builtin/credential/aws/cmd/aws
  [vault-plugin-auth-ldap]=github.com/hashicorp/vault/builtin/credential/ldap/cmd/ldap
)
missing=()
for p in "${!plugins[@]}"; do [[ -x "$dest/plugins/$p" ]] || missing+=("$p"); done
if [[ -x "$dest/vault" ]] && (( ${#missing[@]} == 0 )); then echo "$dest/vault"; exit 0; fi
veil::missing "vault $VAULT_VERSION and its auth plugins" "${1:-}"

work="$VEIL_CACHE_DIR/build/vault-$VAULT_VERSION"
started=$SECONDS
veil::fresh_module "$work" veil.local/vault-build
# build OUT PLUGIN...: builds the plugins into OUT/plugins, each under its
# binary name (go build names a package's binary after its directory).
build_plugins() {
  local out=$1; shift
  mkdir -p "$out/plugins"
  for p in "$@"; do
    veil::quietly "building $p" build.log go build -tags minimal -trimpath -ldflags="-s -w" -o "$out/plugins/$p" "${plugins[$p]}"
  done
}
if [[ -x "$dest/vault" ]]; then
  veil::log "building the Vault auth plugins ${missing[*]} (a few minutes, once)"
  (
    cd "$work"
    export GOFLAGS=-mod=mod
    veil::quietly "building vault plugins" build.log go get "github.com/hashicorp/vault@$VAULT_VERSION"
    build_plugins out "${missing[@]}"
  )
  mkdir -p "$dest/plugins"
  for p in "${missing[@]}"; do
    mv "$work/out/plugins/$p" "$dest/plugins/.$p.tmp" && mv "$dest/plugins/.$p.tmp" "$dest/plugins/$p"
  done
  rm -rf "$work"
  veil::log "built ${missing[*]} in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
  echo "$dest/vault"
  exit 0
fi
veil::log "building vault $VAULT_VERSION and its auth plugins (15 to 45 minutes on two cores, once, depending on what builds beside it)"
(
  cd "$work"
  export GOFLAGS=-mod=mod
  veil::quietly "building vault" build.log go get "github.com/hashicorp/vault@$VAULT_VERSION"
  mkdir -p out/plugins
  # One invocation for Vault and the Kubernetes plugin: it shares Vault's
  # SDK and API packages. The other plugins reuse what it compiled.
  veil::quietly "building vault" build.log go build -tags minimal -trimpath -ldflags="-s -w" -o out/ \
    github.com/hashicorp/vault "${plugins[vault-plugin-auth-kubernetes]}"
  mv out/vault-plugin-auth-kubernetes out/plugins/
  build_plugins out vault-plugin-auth-aws vault-plugin-auth-ldap
)
veil::install_atomically "$work/out" "$dest"
rm -rf "$work"
veil::log "built vault $VAULT_VERSION in $(( (SECONDS - started) / 60 ))m$(( (SECONDS - started) % 60 ))s"
echo "$dest/vault"
