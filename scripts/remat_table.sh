#!/bin/sh
# The README's remat table (section "Recomputation on benchmark graphs"): every graph in
# ../shared/remat-graphs/ and the generated n500/n1000/n2000 at 0.9, 0.8 and 0.7 of the baseline
# peak; each plan --json replayed by validation/remat_check.py, wall time and max RSS from
# /usr/bin/time -v.
#
# usage: scripts/remat_table.sh [VRAMSIM [TIME_LIMIT [JOBS [OUTDIR]]]]
#   defaults: build/cli/vramsim, 60 s, 1 run at a time, /tmp/remat_table
#   REMAT_ONLY=REGEX runs only the rows whose "GRAPH-FILE FRACTION" matches (grep -E), e.g.
#   REMAT_ONLY='n2000.json 0.7|n500' for the rows a change moved.
# Prints the markdown table on stdout (rows in the order below).
set -eu
VRAMSIM=${1:-build/cli/vramsim}
LIMIT=${2:-60}
JOBS=${3:-1}
OUT=${4:-/tmp/remat_table}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${REMAT_GRAPHS:-$ROOT/../shared/remat-graphs}
mkdir -p "$OUT"
GRAPHS=$(ls "$SHARED"/*.json; ls "$ROOT"/tests/data/remat/random_layered_n*.json)
i=0
for g in $GRAPHS; do
  for f in 0.9 0.8 0.7; do
    i=$((i + 1))
    echo "$i $g $f"
  done
done | { if [ -n "${REMAT_ONLY:-}" ]; then grep -E -- "$REMAT_ONLY" || true; else cat; fi; } \
  > "$OUT/runs.txt"
# Each run: plan --json under /usr/bin/time -v, then the checker when a plan fits.
export VRAMSIM LIMIT OUT ROOT
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 sh -c '
  n=$0 g=$1 f=$2; base="$OUT/run$n"
  /usr/bin/time -v -o "$base.time" "$VRAMSIM" plan "$g" --budget-fraction "$f" \
    --time-limit "$LIMIT" --json > "$base.json" 2> "$base.err"
  echo $? > "$base.rc"
  if [ "$(cat "$base.rc")" = 0 ]; then
    python3 "$ROOT/validation/remat_check.py" "$g" "$base.json" > "$base.check" 2>&1
    echo $? > "$base.checkrc"
  fi' < "$OUT/runs.txt"
python3 "$ROOT/scripts/remat_table.py" "$OUT"
