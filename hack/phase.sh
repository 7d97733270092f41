#!/usr/bin/env bash
# hack/phase.sh NAME CMD...: runs one phase of `make test` (or another
# target) and says when it started, how long it took and how it ended, so a
# CI log gives the wall time of each phase.
set -uo pipefail
name=$1; shift
start=$SECONDS
echo "[$(date +%H:%M:%S)] ==> $name" >&2
"$@"
rc=$?
took=$(( SECONDS - start ))
status=ok; (( rc == 0 )) || status="FAILED (exit $rc)"
echo "[$(date +%H:%M:%S)] <== $name: $status in $(( took / 60 ))m$(( took % 60 ))s" >&2
exit "$rc"
