#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# amb's test phases, one after the other, then the time each took. `make test` runs all three.
#
#   gcc       GCC 12, warnings as errors: the programs, every ctest test (unit, integration, fault,
#             TLS, the headers alone, the single header, the consumers, the static programs, the
#             images and the demo, the fuzzers, a bench slice, the set-up check)
#   sanitize  Clang 14 against the single header, with AddressSanitizer + UndefinedBehaviorSanitizer:
#             the unit, integration and TLS tests and the three programs they start; any report from
#             a test or from a program it started fails the phase
#   tsan      ThreadSanitizer builds of both forwarders, under the tests that run them with --threads 2
#
# Usage: tools/test.sh [PHASE ...] (default: all three). Env: BUILD (default build), JOBS.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build}"
jobs="${JOBS:-$(nproc)}"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(gcc sanitize tsan)

# Debug: the tests are compile-bound, and every compile at -O0 costs half of one at -O2. The
# optimised programs are built and tested too: the static build test compiles them at -O2 with
# warnings as errors (GCC 12 warns at -O2 only), and the images, the demo and the bench slice run them.
gcc_phase() {
  cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DAMB_TLS=ON -DAMB_WERROR=ON -DAMB_BUILD_TESTS=ON &&
    cmake --build "$build" -j "$jobs" &&
    ctest --test-dir "$build" --output-on-failure -j "$jobs"
}

# Every report, from a test or from a program it started, goes to a file: a sanitized child that a
# test stops at its end (its exit code unseen) still fails the phase.
check_reports() {
  local dir=$1 what=$2
  if compgen -G "$dir/*" >/dev/null; then
    for f in "$dir"/*; do
      echo "== $what report $f" >&2
      cat "$f" >&2
    done
    echo "$what: reports found (above, and in $dir)" >&2
    return 1
  fi
}

# Clang and the single header: what a user who copies single_include/amb/amb.hpp and builds with Clang
# gets is what runs here (AMB_SINGLE_HEADER: every amb/X.hpp the tests include is the single header).
# -fno-sanitize=vptr: UBSan's dynamic-type check probes memory through a fresh pipe, two file
# descriptors per check; simple-amb's EMFILE test sets the fd limit exactly at what ten relayed
# connections use, and the probe would break the program under test. Every other check stays on, and
# any finding aborts (-fno-sanitize-recover), so it cannot scroll by in a passing test.
sanitize_phase() {
  local dir="$root/build-sanitize"
  local flags="-fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  # The fault tests exercise the same code as the integration tests, for minutes of waiting each: they
  # run in the GCC phase; AMB_SANITIZE_FAULT=1 (make sanitize) runs them here too.
  local targets=(amb_unit_tests amb_integration_tests amb_tls_tests) labels='unit|integration|tls'
  [ -n "${AMB_SANITIZE_FAULT:-}" ] && targets+=(amb_fault_tests) && labels+='|fault'
  cmake -G Ninja -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DAMB_SINGLE_HEADER=ON \
    -DAMB_TLS=ON -DAMB_WERROR=ON -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" &&
    cmake --build "$dir" -j "$jobs" --target "${targets[@]}" || return 1
  local reports="$dir/sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$reports/asan" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan" \
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L "^($labels)\$" || return 1
  check_reports "$reports" "ASan/UBSan" || return 1
  echo "sanitize: the $labels tests pass with $(clang++ --version | head -1), against the single header, under ASan+UBSan, no reports"
}

# The GCC phase's test executables, pointed at ThreadSanitizer builds of the two forwarders
# (AMB_PROGRAM_DIR: tests/support/process.hpp); -O1 -g, as ThreadSanitizer's documentation advises.
tsan_phase() {
  local dir="$root/build-tsan"
  cmake -G Ninja -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DAMB_BUILD_TESTS=OFF -DAMB_WERROR=ON -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" &&
    cmake --build "$dir" -j "$jobs" --target simple-amb dynamic-etcd-amb || return 1
  local reports="$dir/reports"
  rm -rf "$reports" && mkdir -p "$reports"
  AMB_PROGRAM_DIR="$dir/examples" TSAN_OPTIONS="halt_on_error=0:log_path=$reports/tsan" \
    ctest --test-dir "$build" --output-on-failure -R '^integration\.(threads_test|dynamic_threads_test)$' || return 1
  check_reports "$reports" ThreadSanitizer || return 1
  echo "tsan: the --threads tests pass against ThreadSanitizer builds of both forwarders, no reports"
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
