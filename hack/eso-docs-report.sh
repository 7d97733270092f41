#!/usr/bin/env bash
# Runs `veil convert` over External Secrets Operator's documentation
# examples for the providers and features Veil has, and sums its
# summaries: how many ESO manifests Veil takes as they are. Usage:
#   hack/eso-docs-report.sh <ESO checkout> [veil binary]
# The examples are read from <ESO checkout>/docs/snippets; the mkdocs
# "{% raw %}" lines around some of them are removed first. Files that are
# not whole manifests (a part elided with "...", or not YAML) are counted
# and skipped.
set -euo pipefail
eso=${1:?usage: $0 <External Secrets Operator checkout> [veil binary]}
veil=${2:-bin/veil}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total=(0 0 0 0 0 0 0) skipped=0 files=0
for f in "$eso"/docs/snippets/*.yaml; do
  case $(basename "$f") in
    vault*|aws*|fake*|full-*|pushsecret*|template*) ;;
    *) continue ;;
  esac
  files=$((files + 1))
  grep -v '^{%.*%}$' "$f" >"$work/in.yaml"
  # An example with a part left out ("# ..." for the store, "..." for a
  # value) is not a manifest anyone applies as it is.
  if grep -Eq '^[[:space:]]*(#[[:space:]]*)?\.\.\.[[:space:]]*$|: *"\.\.\."[[:space:]]*$' "$work/in.yaml" ||
    ! "$veil" convert -f "$work/in.yaml" >/dev/null 2>"$work/err"; then
    skipped=$((skipped + 1))
    continue
  fi
  # "N ESO objects converted: A taken as they are, R refused, D with
  # dropped fields, B with behaviour differences; X ESO objects not
  # converted; O other objects passed through"
  read -r -a n < <(grep -o '[0-9][0-9]* [A-Za-z]' "$work/err" | awk '{printf "%s ", $1} END {print ""}')
  for i in 0 1 2 3 4 5 6; do total[$i]=$((total[i] + n[i])); done
done
echo "ESO documentation examples: $files files ($skipped not whole manifests, skipped)"
echo "${total[0]} ESO objects converted: ${total[1]} taken as they are, ${total[2]} refused, ${total[3]} with dropped fields, ${total[4]} with behaviour differences; ${total[5]} ESO objects not converted"
