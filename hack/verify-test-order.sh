#!/usr/bin/env bash
# Checks that `make test` builds the real components (make tools) before it
# runs any test. A test that needs etcd, Kubernetes or Vault only looks them
# up (test/harness.CachedBinary); if a test phase ran first on a fresh
# machine it would fail. This reads make's own plan, so a reordered or
# rewritten Makefile is caught in CI on any machine, cache warm or not.
set -euo pipefail
cd "$(dirname "$0")/.."
plan=$(make --dry-run --always-make test 2>/dev/null)
first_test=$(grep -n 'go test' <<<"$plan" | head -n1 | cut -d: -f1 || true)
tools=$(grep -n 'hack/install-tools.sh' <<<"$plan" | head -n1 | cut -d: -f1 || true)
if [[ -z "$first_test" ]]; then echo "make test runs no 'go test'"; exit 1; fi
if [[ -z "$tools" || "$tools" -gt "$first_test" ]]; then
  echo "make test must run hack/install-tools.sh (make tools) before its first 'go test'; its plan is:"
  echo "$plan"
  exit 1
fi
# The real node test (test/node) runs the images of `make images`: they
# must be built before it.
node_test=$(grep -n 'go test.*\./test/node' <<<"$plan" | head -n1 | cut -d: -f1 || true)
images=$(grep -n 'hack/image -arch' <<<"$plan" | head -n1 | cut -d: -f1 || true)
if [[ -z "$node_test" ]]; then echo "make test does not run the real node test (./test/node)"; exit 1; fi
if [[ -z "$images" || "$images" -gt "$node_test" ]]; then
  echo "make test must build the images (make images) before the real node test; its plan is:"
  echo "$plan"
  exit 1
fi
