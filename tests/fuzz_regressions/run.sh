#!/usr/bin/env bash
# Replays the fuzzers' reproducers (tests/fuzz_regressions/<target>/<name>) through the vramsim
# binary: `inspect` and `estimate` must exit 0 or 2, and on 2 print exactly one line on stderr.
#   bash tests/fuzz_regressions/run.sh VRAMSIM_BIN
# Inputs of fuzz_shapes and fuzz_simulate start with the fuzzers' prefix (8 bytes of dims; one
# more of options for fuzz_simulate, see fuzz/fuzz_common.h), which is cut off here; the flags it
# stands for are in <name>.args (printed by VRAMSIM_FUZZ_ARGS=1 build-fuzz/fuzz/<target> <name>).
set -uo pipefail
bin=${1:?usage: run.sh VRAMSIM_BIN}
dir=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
count=0

check() {  # check NAME CMD...
  local name=$1
  shift
  local rc=0
  timeout 60 "$@" >/dev/null 2>"$tmp/err" || rc=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  count=$((count + 1))
  if ((rc == 0)); then
    return
  elif ((rc == 2)) && ((lines == 1)) && [[ $(tail -c 1 "$tmp/err" | od -An -c) == *'\n'* ]] &&
    ! LC_ALL=C grep -q '[^[:print:]]' "$tmp/err"; then
    return
  fi
  failed=$((failed + 1))
  echo "FAIL $name: exit $rc, $lines stderr lines: $*"
  head -c 2000 "$tmp/err"
}

for target in fuzz_import fuzz_shapes fuzz_simulate; do
  case $target in
    fuzz_import) skip=0 ;;
    fuzz_shapes) skip=8 ;;
    fuzz_simulate) skip=9 ;;
  esac
  [[ -d $dir/$target ]] || continue
  for f in "$dir/$target"/*; do
    [[ -f $f && $f != *.args && $f != *.md ]] || continue
    model=$tmp/model.onnx
    tail -c +$((skip + 1)) "$f" >"$model"
    args=()
    [[ -f $f.args ]] && read -r -a args <"$f.args"
    dims=()
    for ((i = 0; i < ${#args[@]}; i++)); do
      [[ ${args[i]} == --dim ]] && dims+=(--dim "${args[i + 1]}")
    done
    check "$target/$(basename "$f") inspect" "$bin" inspect "$model" "${dims[@]}"
    check "$target/$(basename "$f") estimate" "$bin" estimate "$model" "${args[@]}"
  done
done
echo "fuzz_regressions: $count runs, $failed failed"
((failed == 0))
