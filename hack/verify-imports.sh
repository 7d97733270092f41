#!/usr/bin/env bash
# Checks the import rules of docs/architecture.md that matter most, so the
# page cannot silently stop being true:
#   - veil-syncer never links a provider, the resolver, the store package,
#     the value cache, the credential reader or the throttle: it holds no provider
#     credentials and reaches providers only through veil-apiserver's API;
#   - the API packages import no other Veil package;
#   - providers depend on no layer above them (resolve, push, stores,
#     registry, server wiring, syncer);
#   - pkg/stores owns the store: it depends on neither of its users
#     (resolve, push) nor on the registry, and they reach the store, its
#     clients and the credential reader only through it;
#   - the provider conformance suite (test/conformance) is the same for
#     every provider: it imports none of them, nor the harness that starts
#     their servers (each provider's tests bring their own fixture);
#   - no test code (harness, conformance suite) links into the binaries.
#   - each single-provider binary (cmd/veil-provider-vault, -aws) links
#     its backend alone: no other provider, none of its SDKs, no API server.
#   - pkg/version imports no other Veil package, so anything may import it.
#   - the registry (REST semantics and typed API errors) links neither the
#     resolver, the pusher nor the store package: it is given them.
#   - the providers of providers/ are written as a third party would write
#     one: of Veil they import only the generated protocol package; and
#     nothing of Veil's links them.
# The rules are checked on the packages' full import graphs (go list -deps),
# so an indirect import breaks them too, except those marked direct: there
# the forbidden package is reached legitimately through another.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=github.com/veil-dev/veil
failed=0

# forbid PACKAGE-PATTERN IMPORT-REGEX WHY
forbid() {
  local pkgs=$1 re=$2 why=$3
  for p in $(go list "./$pkgs"); do
    local bad
    bad=$(go list -deps "$p" | grep -E "^$mod/($re)" | grep -v "^$p\$" | sed "s#^$mod/##" | paste -sd, - || true)
    if [[ -n "$bad" ]]; then
      echo "${p#$mod/} must not import $bad — $why (docs/architecture.md)"
      failed=1
    fi
  done
}

forbid "pkg/syncer/..." "pkg/(providers|resolve|stores|cache|credentials|throttle|push|registry|cmd/server)(/|$)" \
  "veil-syncer holds no provider credentials and reaches providers only through veil-apiserver"
forbid "cmd/syncer" "pkg/(providers|resolve|stores|cache|credentials|throttle|push|registry|cmd/server)(/|$)" \
  "veil-syncer holds no provider credentials and reaches providers only through veil-apiserver"
forbid "pkg/apis/..." "pkg/[^a]|pkg/a[^p]" "API types depend on no other Veil package"
forbid "pkg/providers/..." "pkg/(resolve|push|stores|registry|cmd|syncer|apiserver)(/|$)" \
  "providers depend on no layer above them"
forbid "test/conformance" "pkg/providers/[^/]+(/|$)|test/harness(/|$)" \
  "the conformance suite builds clients through the provider registry and is run from each provider's own tests, with its own fixture"
forbid "cmd/..." "test/" "test code never links into veil-apiserver or veil-syncer"
forbid "pkg/providers/remote/..." "pkg/providers/(vault|aws|fake)(/|$)" \
  "veil-apiserver's side of the provider protocol links no backend: a provider out of process is reached only over the protocol"
forbid "cmd/veil-provider" "pkg/(resolve|push|stores|registry|cache|credentials|throttle|changes|apiserver|syncer|cmd/server)(/|$)" \
  "veil-provider serves the stores of its own configuration with its own credentials; it has none of veil-apiserver's layers"
for kind in vault aws; do
  others=$(sed -E "s/(^|\|)$kind(\||$)/\1/; s/^\||\|$//; s/\|\|/|/" <<<"vault|aws|fake")
  forbid "cmd/veil-provider-$kind" "pkg/(providers/($others)|resolve|push|stores|registry|cache|credentials|throttle|changes|apiserver|syncer|cmd/server)(/|$)" \
    "veil-provider-$kind, whose image runs the $kind provider, links that backend alone and none of veil-apiserver's layers (threat model 002 T5)"
done
forbid "pkg/version" "." "every package and binary may say its version: pkg/version depends on no other Veil package"

# A third party's provider sees only the published protocol package.
proto=pkg/providers/remote/proto/veil/provider/v1
for p in $(go list ./providers/...); do
  bad=$(go list -deps "$p" | grep "^$mod/" | grep -v -E "^$mod/(providers/|$proto\$)" | sed "s#^$mod/##" | paste -sd, - || true)
  if [[ -n "$bad" ]]; then
    echo "${p#$mod/} must not import $bad — a provider of providers/ is written against the protocol package $proto alone, as a third party's would be (docs/veil-provider.md)"
    failed=1
  fi
done
forbid "pkg/..." "providers/" "veil-apiserver reaches the providers of providers/ only over the protocol"
forbid "cmd/..." "providers/" "veil-apiserver reaches the providers of providers/ only over the protocol"

# forbid_direct PACKAGE-PATTERN IMPORT-REGEX WHY: only the packages'
# own imports (not their tests') are checked.
forbid_direct() {
  local pkgs=$1 re=$2 why=$3
  for p in $(go list "./$pkgs"); do
    local bad
    bad=$(go list -f '{{join .Imports "\n"}}' "$p" | grep -E "^$mod/($re)" | sed "s#^$mod/##" | paste -sd, - || true)
    if [[ -n "$bad" ]]; then
      echo "${p#$mod/} must not import $bad — $why (docs/architecture.md)"
      failed=1
    fi
  done
}

# forbid_external PACKAGE IMPORT-REGEX WHY: as forbid, for packages of
# other modules.
forbid_external() {
  local p=$1 re=$2 why=$3
  local bad
  bad=$(go list -deps "./$p" | grep -E "^($re)" | cut -d/ -f1-3 | sort -u | paste -sd, - || true)
  if [[ -n "$bad" ]]; then
    echo "$p must not link $bad — $why"
    failed=1
  fi
}

forbid_external "cmd/veil-provider-vault" "github.com/aws/|k8s.io/apiserver/" \
  "the Vault provider's image carries no other backend's SDK and no API server (threat model 002 T5)"
forbid_external "cmd/veil-provider-aws" "github.com/hashicorp/vault/|k8s.io/apiserver/" \
  "the AWS provider's image carries no other backend's SDK and no API server (threat model 002 T5)"

forbid "pkg/stores/..." "pkg/(resolve|push|registry|cmd|syncer|apiserver)(/|$)" \
  "the store package serves reads and pushes and depends on neither"
forbid "pkg/registry/..." "pkg/(resolve|push|stores|credentials|cache)(/|$)" \
  "the registry serves requests through the Resolver and Pusher it is given, and owns the API errors"
forbid_direct "pkg/resolve/..." "pkg/(credentials|throttle|push|registry)(/|$)" \
  "a read reaches stores, their clients and credentials through pkg/stores"
forbid_direct "pkg/push/..." "pkg/(resolve|cache|credentials|throttle|registry)(/|$)" \
  "a push reaches stores and their clients through pkg/stores, never the read path"

if (( failed )); then exit 1; fi
