#!/usr/bin/env bash
# Runs every Go fuzz target of the module in turn (make fuzz), each for FUZZTIME.
# FUZZTIME is an execution count ("200000x") by default, not a duration: with a
# duration, Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" as the time runs out (golang/go#75804, fixed in Go 1.27), with no crasher.
# A real failure writes its input to the package's testdata/fuzz/<target>/: commit it
# with the fix, so that `go test` replays it from then on.
# Usage: scripts/fuzz.sh [PKG-PATTERN]   (env: FUZZTIME=200000x, PARALLEL=2)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-200000x}
PARALLEL=${PARALLEL:-2}
failed=()
for pkg in $(go list "${1:-./...}"); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    start=$SECONDS
    if out=$(go test "$pkg" -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL" 2>&1); then
      echo "ok   $pkg $target ($((SECONDS - start)) s)"
    else
      echo "FAIL $pkg $target"
      echo "$out" | grep -v '^fuzz: elapsed' | sed 's/^/     /'
      failed+=("$pkg $target")
    fi
  done
done
if ((${#failed[@]})); then
  printf 'fuzz: %d target(s) failed:\n' "${#failed[@]}"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
