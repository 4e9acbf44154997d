#!/usr/bin/env bash
# Run the whole test suite: install what is missing (scripts/setup.sh --deps),
# build, run ctest; then the same suite under AddressSanitizer +
# UndefinedBehaviorSanitizer; then the engine's thread pool and the daemon's
# step-loop scheduler under ThreadSanitizer; then each libFuzzer target for a
# short time. After the release suite, the cluster stage (tests/cluster, as
# root): the MPI pipeline across network-namespace test hosts, with faults.
#
#   bash scripts/test.sh             # everything (CI runs this)
#   LS_FUZZ_SECONDS=300 bash scripts/test.sh   # fuzz longer (default 20 s per target)
#   LS_SKIP_ASAN=1 / LS_SKIP_TSAN=1 / LS_SKIP_FUZZ=1 / LS_SKIP_CLUSTER=1  # skip a stage while iterating
#   LS_CLUSTER_SOAK_MINUTES=10 bash scripts/test.sh  # also the 10-minute soak over 3 test hosts
#   LS_LLAMACPP_MODELS=1 bash scripts/test.sh  # also the default model's K-quant files against
#       llama.cpp's goldens: builds llama.cpp's quantizer from the llama-cpp-python sdist (PyPI)
#       and makes models/bench/*.gguf first (scripts/llamacpp_tools.sh --models; ~10 min once)
#
# The last line is "N passed, M failed" over all stages.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --deps || exit 1

passed=0; failed=0
count_ctest() { # parse "xx% tests passed, F tests failed out of T"
  local log=$1 line t f
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
  t=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/')
  passed=$((passed + t - f)); failed=$((failed + f))
}

run_suite() { # name build-dir "ctest-args" cmake-args...
  local name=$1 dir=$2 ctest_args=$3; shift 3
  echo "== [$name] configure + build ($dir)"
  mkdir -p "$dir"
  # the configure finds every tool the build and the tests run (cmake/LsTools.cmake)
  # and stops naming the package of a missing one: a failed configure fails the run
  if ! cmake -S . -B "$dir" -G Ninja "$@" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"; echo "== [$name] CONFIGURE FAILED"; failed=$((failed + 1)); return
  fi
  sed -n '/Tools (cmake\/LsTools.cmake)/,/Configuring done/p' "$dir/configure.log" | grep -v 'Configuring done'
  if ! cmake --build "$dir"; then
    echo "== [$name] BUILD FAILED"; failed=$((failed + 1)); return
  fi
  echo "== [$name] ctest $ctest_args"
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure -j2 $ctest_args 2>&1 | tee "$dir/ctest.log"
  count_ctest "$dir/ctest.log"
}

release_args=(-DCMAKE_BUILD_TYPE=Release -DLS_LLAMACPP_MODELS=OFF)
if [ -n "${LS_LLAMACPP_MODELS:-}" ]; then
  if bash scripts/llamacpp_tools.sh --models >/dev/null; then
    release_args=(-DCMAKE_BUILD_TYPE=Release -DLS_LLAMACPP_MODELS=ON)
  else
    echo "== llamacpp_tools.sh --models FAILED"; failed=$((failed + 1))
  fi
fi
run_suite release build "" "${release_args[@]}"
# the pipeline across test hosts (network namespaces, MPI over TCP): needs root
not_run=""
if [ -z "${LS_SKIP_CLUSTER:-}" ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ] && sudo -n true 2>/dev/null; then as_root=(sudo -n); fi
  if [ "$(id -u)" -eq 0 ] || [ ${#as_root[@]} -gt 0 ]; then
    echo "== [cluster] tests/cluster/test_cluster.py"
    soak=()
    [ -n "${LS_CLUSTER_SOAK_MINUTES:-}" ] && soak=(--soak-minutes "$LS_CLUSTER_SOAK_MINUTES")
    "${as_root[@]}" /usr/bin/python3 -W ignore tests/cluster/test_cluster.py --build build "${soak[@]}" \
      2>&1 | tee build/cluster.log
    ran=$(grep -E '^Ran [0-9]+ tests?' build/cluster.log | tail -1 | awk '{print $2}')
    if [ -z "$ran" ]; then
      failed=$((failed + 1)); echo "== [cluster] did not finish"
    else
      bad=0; skipped=0
      for k in failures errors; do
        n=$(grep -E '^(FAILED|OK) \(' build/cluster.log | tail -1 | grep -oE "$k=[0-9]+" | cut -d= -f2)
        bad=$((bad + ${n:-0}))
      done
      n=$(grep -E '^(FAILED|OK) \(' build/cluster.log | tail -1 | grep -oE "skipped=[0-9]+" | cut -d= -f2)
      skipped=${n:-0}
      passed=$((passed + ran - bad - skipped)); failed=$((failed + bad))
      [ "$skipped" -gt 0 ] && not_run=" ($skipped cluster test(s) not run: the soak, LS_CLUSTER_SOAK_MINUTES=M)"
    fi
  else
    not_run=" (cluster stage not run: it needs root for network namespaces)"
    echo "== [cluster] NOT RUN: needs root (or passwordless sudo) for network namespaces"
  fi
fi
if [ -z "${LS_SKIP_ASAN:-}" ]; then
  # the Python/Go/Node/grpcurl example tests check the examples, not our C:
  # once (release) is enough; the daemon runs sanitized in integration_daemon.
  # Kernel variants: the portable model and AVX2 only, to compile faster (the
  # release suite builds and checks all of them).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite asan+ubsan build-asan "-LE clients" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLS_SANITIZE=ON \
      "-DLS_KERNEL_VARIANTS=portable;avx2"
fi

if [ -z "${LS_SKIP_TSAN:-}" ]; then
  # Data races: binaries that do not link gRPC (TSan does not work with
  # Debian's libgrpc): the forward pass over many sequences and the step
  # loop on the engine's thread pool, and the scheduler's concurrent cases.
  echo "== [tsan] configure + build (build-tsan)"
  tsan_tests=(test_forward_multi test_gen_step test_daemon_sched)
  mkdir -p build-tsan
  if cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLS_TSAN=ON \
       "-DLS_KERNEL_VARIANTS=portable;avx2" >build-tsan/configure.log 2>&1 \
     && cmake --build build-tsan --target "${tsan_tests[@]}"; then
    for t in "${tsan_tests[@]}"; do
      only=""
      # the scheduler's cases with threads racing (queue, cancel, budget, stops);
      # the long single-stream ones run in the other stages
      [ "$t" = test_daemon_sched ] && only=test_queue_and_cancel,test_cancel_mid_prompt,test_kv_budget,test_stops
      echo "== [tsan] $t${only:+ ($only)}"
      if LS_MODELS_DIR=$PWD/models LS_TESTDATA_DIR=$PWD/tests/data LS_TEST_ONLY=$only \
           TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 "build-tsan/tests/$t" >"build-tsan/$t.log" 2>&1; then
        passed=$((passed + 1)); tail -1 "build-tsan/$t.log"
      else
        failed=$((failed + 1)); echo "== [tsan] $t FAILED:"; tail -60 "build-tsan/$t.log"
      fi
    done
  else
    cat build-tsan/configure.log; echo "== [tsan] BUILD FAILED"; failed=$((failed + 1))
  fi
fi

if [ -z "${LS_SKIP_FUZZ:-}" ]; then
  secs=${LS_FUZZ_SECONDS:-20}
  echo "== [fuzz] build (clang, libFuzzer + ASan/UBSan)"
  fuzz_targets=()
  for f in tests/fuzz/fuzz_*.c; do fuzz_targets+=("$(basename "$f" .c)_fuzzer"); done
  if CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLS_FUZZ=ON -DLS_SANITIZE=ON "-DLS_KERNEL_VARIANTS=portable;avx2" >/dev/null \
     && cmake --build build-fuzz --target "${fuzz_targets[@]}"; then
    for fz in build-fuzz/tests/fuzz_*_fuzzer; do
      name=$(basename "$fz" _fuzzer)
      corpus=$(mktemp -d)
      cp tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
      echo "== [fuzz] $name for ${secs}s"
      if LS_MODELS_DIR=$PWD/models "$fz" -max_total_time="$secs" -rss_limit_mb=4096 -timeout=10 \
           "$corpus" > "build-fuzz/$name.log" 2>&1; then
        passed=$((passed + 1)); tail -1 "build-fuzz/$name.log"
      else
        failed=$((failed + 1)); echo "== [fuzz] $name FAILED:"; tail -40 "build-fuzz/$name.log"
      fi
      rm -rf "$corpus"
    done
  else
    echo "== [fuzz] BUILD FAILED"; failed=$((failed + 1))
  fi
fi

echo "$passed passed, $failed failed$not_run"
[ "$failed" -eq 0 ]
