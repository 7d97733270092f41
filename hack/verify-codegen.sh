#!/usr/bin/env bash
# Fails if generated code or CRDs differ from what hack/update-codegen.sh
# produces. It regenerates in a temporary copy, so the checkout is untouched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cp -a "$root/go.mod" "$root/go.sum" "$root/hack" "$root/pkg" "$root/artifacts" "$root/charts" "$tmp/"
(cd "$tmp" && bash hack/update-codegen.sh >/dev/null)

status=0
for d in pkg artifacts/base/crds charts/veil/crds hack/openapi-violations.list; do
  if ! diff -r -q "$root/$d" "$tmp/$d" >/dev/null; then
    diff -r -u "$root/$d" "$tmp/$d" | head -n 40 >&2 || true
    status=1
  fi
done
if (( status )); then
  echo "generated code is stale: run 'make update' and commit the result" >&2
fi
exit $status
