#!/usr/bin/env bash
# hack/fuzz.sh DURATION: runs every Fuzz* target of the repository for
# DURATION each (go test runs one fuzz target per invocation). `make test`
# runs each briefly, after their committed seeds have run as ordinary tests;
# `make fuzz` runs them for longer. New inputs that fail are written under
# the package's testdata/fuzz, to be committed with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
found=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for fn in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
    found=$((found + 1))
    echo "[$(date +%H:%M:%S)] fuzz $pkg $fn for $fuzztime" >&2
    corpus="$(dirname "$file")/testdata/fuzz/$fn"
    log=$(mktemp)
    if ! go test "$pkg" -run '^$' -fuzz "^$fn\$" -fuzztime "$fuzztime" 2>&1 | tee "$log"; then
      # Go's fuzzer sometimes reports its own -fuzztime deadline, reached
      # while a worker was busy, as a failure: "context deadline exceeded"
      # and no failing input written. That run is tried once more; a real
      # failure always writes its input under testdata/fuzz.
      if grep -q 'context deadline exceeded' "$log" && [[ -z "$(git status --porcelain -- "$corpus")" ]]; then
        echo "[$(date +%H:%M:%S)] $fn: the fuzzer reported its own deadline with no failing input; running it again" >&2
        go test "$pkg" -run '^$' -fuzz "^$fn\$" -fuzztime "$fuzztime" || { rm -f "$log"; exit 1; }
      else
        rm -f "$log"; exit 1
      fi
    fi
    rm -f "$log"
  done
done < <(git ls-files -co --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort)
if (( found == 0 )); then echo "no fuzz targets found" >&2; exit 1; fi
echo "$found fuzz targets ran for $fuzztime each" >&2
