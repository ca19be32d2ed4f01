#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) into build-fuzz/ with clang-14 (ASan + UBSan + libFuzzer),
# writes the seed corpora (fuzz/make_corpus.py) and runs each target for SECONDS (default 30).
# Fails on any crash, sanitizer report, timeout (-timeout=10 s per input), OOM (2 GiB RSS) or
# leak; crashing inputs are left in build-fuzz/artifacts/<target>/.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
targets=(fuzz_import fuzz_shapes fuzz_simulate fuzz_remat_json fuzz_snapshot)
cxx=${CXX_FUZZ:-clang++-14}
libfuzzer=/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a
if ! command -v "$cxx" >/dev/null || ! compgen -G "$libfuzzer" >/dev/null; then
  echo "fuzz: needs $cxx and libFuzzer (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DVRAMSIM_FUZZ=ON -DVRAMSIM_BENCH=OFF >/dev/null
start=$(date +%s)
cmake --build build-fuzz --target fuzz_all
echo "fuzz: build-fuzz built in $(($(date +%s) - start)) s"
python3 fuzz/make_corpus.py --out build-fuzz/corpus
# fuzz_snapshot's seeds: the snapshots written as PyTorch writes them.
mkdir -p build-fuzz/corpus/fuzz_snapshot
cp tests/data/snapshot/*.pickle build-fuzz/corpus/fuzz_snapshot/

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# FUZZ_PARALLEL=1 runs the four targets at once (long local runs: FUZZ_PARALLEL=1 bash
# scripts/fuzz.sh 1800); by default one after another.
run() {  # run TARGET: one fuzzing session, its log in build-fuzz/logs/TARGET.log
  local t=$1 dict max_len
  case $t in
    fuzz_remat_json) dict=fuzz/json.dict max_len=65536 ;;
    fuzz_snapshot) dict= max_len=65536 ;;
    *) dict=fuzz/onnx.dict max_len=1048585 ;;
  esac
  work=build-fuzz/corpus-work/$t
  artifacts=build-fuzz/artifacts/$t
  log=build-fuzz/logs/$t.log
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  # New inputs go to the work corpus (kept between runs); the seeds are read from corpus/.
  timeout $((seconds + 120)) "build-fuzz/fuzz/$t" -max_total_time="$seconds" -max_len="$max_len" \
    -rss_limit_mb=2048 -timeout=10 ${dict:+"-dict=$dict"} -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "build-fuzz/corpus/$t" >"$log" 2>&1
}
if [[ ${FUZZ_PARALLEL:-0} == 1 ]]; then
  pids=()
  for t in "${targets[@]}"; do
    run "$t" &
    pids+=($!)
  done
  rcs=()
  for p in "${pids[@]}"; do
    rc=0
    wait "$p" || rc=$?
    rcs+=("$rc")
  done
else
  rcs=()
  for t in "${targets[@]}"; do
    rc=0
    run "$t" || rc=$?
    rcs+=("$rc")
  done
fi
failed=()
for i in "${!targets[@]}"; do
  t=${targets[i]}
  rc=${rcs[i]}
  log=build-fuzz/logs/$t.log
  artifacts=build-fuzz/artifacts/$t
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) .*/cov: \1 ft: \2/p' <<<"$last")
  echo "fuzz: $t: rc $rc, ${runs:-?} runs, ${execs:-?} execs/s, ${cov:-no stats}"
  if ((rc != 0)) || grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error:)' "$log"; then
    failed+=("$t")
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|^ +#[0-9]+ ' "$log" | head -40 || true
    echo "fuzz: $t: full log in $log, reproducers in $artifacts/"
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each: no crash"
