#!/usr/bin/env bash
# Checks that VERSION is a semantic version and that every Veil image the
# manifests in artifacts/ deploy is tagged v$(cat VERSION), the tag
# `make images` gives them: one version for images, --version and the
# chart (README "Versioning"), whose Chart.yaml carries it too.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(<VERSION)
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "VERSION is '$version', not a semantic version like 0.1.0"
  exit 1
fi
failed=0
found=0
while IFS= read -r line; do
  found=1
  file=${line%%:*}
  ref=$(sed -E 's/.*(ghcr\.io\/veil-dev\/[^[:space:]"]+).*/\1/' <<<"${line#*:}")
  if [[ $ref != *":v$version" ]]; then
    echo "$file deploys $ref; VERSION says v$version"
    failed=1
  fi
done < <(grep -rHE 'ghcr\.io/veil-dev/veil-' artifacts)
if (( ! found )); then echo "no ghcr.io/veil-dev image in artifacts/"; exit 1; fi
# The chart carries VERSION as its version and appVersion; its images
# default to v + appVersion.
for field in version appVersion; do
  got=$(sed -nE "s/^$field: *\"?([^\"]*)\"?\$/\1/p" charts/veil/Chart.yaml)
  if [[ $got != "$version" ]]; then
    echo "charts/veil/Chart.yaml has $field $got; VERSION says $version"
    failed=1
  fi
done
exit "$failed"
