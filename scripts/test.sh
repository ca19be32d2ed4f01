#!/usr/bin/env bash
# Builds and runs every test: the release build, then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j2
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DVRAMSIM_SANITIZE=ON \
  -DVRAMSIM_BENCH=OFF >/dev/null
cmake --build build-asan
# The unit tests; the end-to-end runs (real-PyTorch validation over 36 models, the planners'
# searches, the browser test) already ran above and would take long under the sanitizers, and
# the remat planner's runs on generated graphs against its time limit (deadline-bound: the
# sanitizers' tenfold slowdown leaves their passes unfinished), and the two slowest whole-model
# searches (the layout enumeration on a small device, the eviction heuristic on n2000: 83 s and
# 58 s under the sanitizers, which put CI at 29.5 of its 30 minutes), and the two brute-force
# comparisons over many small remat graphs (53 and 46 s under the sanitizers; CI was at 28.5).
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 \
  -E '^(validation_against_pytorch|report\.browser|planner\..*|remat\.RematEvict\.(FeasibleAndReplayedOnGeneratedGraphs|SolveRematOnTwoThousandNodesKeepsItsDeadline|TwoThousandNodesAtSevenTenths|NeverBelowTheOptimumOnSmallGraphs)|remat\.RematBound\.NeverAboveTheOptimumOnSmallGraphs|layout\.Layout\.ASmallDeviceShardsOrOffloadsAndTheAnswerStillFitsByEstimate)$'
# Fuzzing (fuzz/, scripts/fuzz.sh): the clang-14 ASan + UBSan + libFuzzer build of the fuzz
# targets into build-fuzz/ (about 3.5 minutes from scratch on 2 cores), then 5 targets x 16 s
# = 80 s of fuzzing (CI stays under its 30 minutes: it took 27.8 with 24 s each); fails on any crash, sanitizer report, timeout or OOM.
bash scripts/fuzz.sh 16
