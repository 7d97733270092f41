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
# CPU time of the phase's processes: unlike wall time, it does not grow
# when something else loads the machine.
times_file=$(mktemp); times >"$times_file"
cpu=$(tail -n1 "$times_file" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", u[1]*60 + u[2] + s[1]*60 + s[2] }'); rm -f "$times_file"
echo "[$(date +%H:%M:%S)] <== $name: $status in $(( took / 60 ))m$(( took % 60 ))s (CPU $(( cpu / 60 ))m$(( cpu % 60 ))s)" >&2
exit "$rc"
