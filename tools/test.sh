#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# amb's test phases, one after the other, then the time each took (`make test`: gcc; `make test-all`: all).
#
#   gcc       GCC 12, warnings as errors: the programs (-O2), every test through ctest (unit,
#             integration, fault, TLS, the headers alone, the single header, the consumers, the
#             static programs, the images and the demo, the fuzzers, a bench slice, the set-up check)
#   sanitize  ASan+UBSan: the unit, integration and TLS tests, with sanitized programs (tools/sanitize.sh)
#   tsan      ThreadSanitizer: the tests that run --threads 2, against TSan builds of both forwarders
#   clang     Clang 14 against the single header: the unit tests, the three programs, and the
#             integration tests of the forwarders run against those Clang programs
#
# Usage: tools/test.sh [PHASE ...] (default: gcc, what `make test` runs; `make test-all` runs all four).
# Env: BUILD (default build), JOBS.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build}"
jobs="${JOBS:-$(nproc)}"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(gcc)

gcc_phase() {
  cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMB_TLS=ON -DAMB_WERROR=ON -DAMB_BUILD_TESTS=ON &&
    cmake --build "$build" -j "$jobs" &&
    ctest --test-dir "$build" --output-on-failure -j "$jobs"
}

sanitize_phase() {
  "$root/tools/sanitize.sh"
}

# Reports go to files, so that one from a program the test stops with SIGTERM is not lost.
check_reports() {
  local dir=$1 what=$2
  if compgen -G "$dir/*" >/dev/null; then
    for f in "$dir"/*; do
      echo "== $what report $f" >&2
      cat "$f" >&2
    done
    echo "$what: reports found (above)" >&2
    return 1
  fi
}

tsan_phase() {
  local tsan="$root/build-tsan"
  cmake -G Ninja -S "$root" -B "$tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMB_BUILD_TESTS=OFF -DAMB_WERROR=ON \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" &&
    cmake --build "$tsan" -j "$jobs" --target simple-amb dynamic-etcd-amb || return 1
  local reports="$tsan/reports"
  rm -rf "$reports" && mkdir -p "$reports"
  # The GCC phase's test executables, pointed at the TSan programs (tests/support/process.hpp).
  AMB_PROGRAM_DIR="$tsan/examples" TSAN_OPTIONS="halt_on_error=0:log_path=$reports/tsan" \
    ctest --test-dir "$build" --output-on-failure -R '^integration\.(threads_test|dynamic_threads_test)$' || return 1
  check_reports "$reports" ThreadSanitizer || return 1
  echo "tsan: the --threads tests pass against ThreadSanitizer builds, no reports"
}

clang_phase() {
  local clang="$root/build-clang"
  cmake -G Ninja -S "$root" -B "$clang" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DAMB_SINGLE_HEADER=ON -DAMB_WERROR=ON &&
    cmake --build "$clang" -j "$jobs" --target amb_unit_tests simple-amb docker-register dynamic-etcd-amb &&
    ctest --test-dir "$clang" --output-on-failure -j "$jobs" -L unit || return 1
  AMB_PROGRAM_DIR="$clang/examples" ctest --test-dir "$build" --output-on-failure -j "$jobs" \
    -R '^integration\.(simple_amb_test|dynamic_routing_test|docker_register_seed_test)$' || return 1
  echo "clang: the unit tests (against the single header) and the programs pass with $(clang++ --version | head -1)"
}

declare -A took
failed=""
for p in "${phases[@]}"; do
  start=$(date +%s)
  echo "== make test: $p phase"
  if ! "${p}_phase"; then
    failed="$p"
  fi
  took[$p]=$(($(date +%s) - start))
  [ -n "$failed" ] && break
done

echo "== make test: time per phase"
total=0
for p in "${phases[@]}"; do
  [ -n "${took[$p]:-}" ] || continue
  printf '  %-9s %3dm%02ds\n' "$p" $((took[$p] / 60)) $((took[$p] % 60))
  total=$((total + took[$p]))
done
printf '  %-9s %3dm%02ds\n' total $((total / 60)) $((total % 60))
if [ -n "$failed" ]; then
  echo "make test: the $failed phase failed" >&2
  exit 1
fi
echo "make test: every phase passed"
