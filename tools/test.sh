#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# amb's test phases, one after the other, then the time each took. `make test` runs all three.
#
#   gcc       GCC 12, warnings as errors: the programs, the unit and fault tests, and every other
#             ctest test (the headers alone, the single header, the consumers, the static programs,
#             the images and the demo, the fuzzers, a bench slice, the set-up check, the format)
#   sanitize  Clang 14 against the single header, with AddressSanitizer + UndefinedBehaviorSanitizer:
#             the unit, integration and TLS tests and the three programs they start; any report from
#             a test or from a program it started fails the phase
#   tsan      ThreadSanitizer builds of both forwarders, under the tests that run them with --threads 2
#
# No test family is compiled twice in one run (AMB_TEST_FAMILIES), and the next phase's build runs
# while this phase's tests run, at the lowest CPU priority: most tests wait on servers and processes,
# so the build takes the CPU they leave idle (2 cores), and the tests keep theirs.
#
# Usage: tools/test.sh [PHASE ...] (default: all three). Env: BUILD (default build), JOBS,
# AMB_SANITIZE_FAULT=1 (the sanitize phase runs the fault tests too).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build}"
sanitize_dir="$root/build-sanitize"
tsan_dir="$root/build-tsan"
jobs="${JOBS:-$(nproc)}"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(gcc sanitize tsan)

wants() { [[ " ${phases[*]} " == *" $1 "* ]]; }

# A phase's build in the background, at the lowest priority, in a session of its own (stopped with
# the script), started by the phase before it; or in the foreground when that phase did not run.
declare -A bg_pid bg_log
start_background_build() {
  local name=$1
  bg_log[$name]="$root/build-$name.log"
  export root build sanitize_dir tsan_dir jobs sanitize_families
  export -f "${name}_build"
  # The kernel shares CPU between sessions (autogroups) first, so the new session's own priority is set
  # too, not only the processes' nice.
  setsid -w nice -n 19 bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null; start=$(date +%s); '"${name}"'_build; status=$?
    echo "built in $(($(date +%s) - start))s"; exit $status' >"${bg_log[$name]}" 2>&1 &
  bg_pid[$name]=$!
}
stop_background_builds() {
  for pid in "${bg_pid[@]}"; do kill -- -"$pid" 2>/dev/null; done
}
trap stop_background_builds EXIT
finish_build() {
  local name=$1
  if [ -n "${bg_pid[$name]:-}" ]; then
    local status=0
    wait "${bg_pid[$name]}" || status=$?
    unset "bg_pid[$name]"
    if [ "$status" -ne 0 ]; then
      cat "${bg_log[$name]}" >&2
      echo "$name build failed (above)" >&2
      return 1
    fi
    echo "$name build: $(tail -1 "${bg_log[$name]}"), in the background during the previous phase's tests (log: ${bg_log[$name]})"
    built_meanwhile[$name]="$(tail -1 "${bg_log[$name]}")"
  else
    "${name}_build"
  fi
}
declare -A built_meanwhile

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

# Debug: the tests are compile-bound, and a compile at -O0 costs half of one at -O2. The optimised
# programs are built and tested too: the static build test compiles them (-Os, warnings as errors),
# and the images, the demo and the bench slice run them.
gcc_build() {
  cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DAMB_TLS=ON -DAMB_WERROR=ON -DAMB_BUILD_TESTS=ON \
    -DAMB_TEST_FAMILIES="unit;fault" && cmake --build "$build" -j "$jobs"
}
gcc_phase() {
  gcc_build || return 1
  wants sanitize && start_background_build sanitize
  ctest --test-dir "$build" --output-on-failure -j "$jobs"
}

# Clang and the single header: what a user who copies single_include/amb/amb.hpp and builds with Clang
# gets is what runs here (AMB_SINGLE_HEADER: every amb/X.hpp the tests include is the single header).
# -fno-sanitize=vptr: UBSan's dynamic-type check probes memory through a fresh pipe, two file
# descriptors per check; simple-amb's EMFILE test sets the fd limit exactly at what ten relayed
# connections use, and the probe would break the program under test. -fno-sanitize=function: Clang 14
# cannot emit that check's prologue data for coroutines split across sections ("Cannot represent a
# difference across sections"); it guards calls through mistyped function pointers, which amb never
# makes. Every other check stays on, and any finding aborts (-fno-sanitize-recover), so it cannot
# scroll by in a passing test.
# The fault tests exercise the same code as the integration tests, for minutes of waiting each: they
# run in the GCC phase; AMB_SANITIZE_FAULT=1 (make sanitize) runs them here too.
sanitize_families="unit;integration;tls"
[ -n "${AMB_SANITIZE_FAULT:-}" ] && sanitize_families+=";fault"
sanitize_build() {
  local flags="-fsanitize=address,undefined -fno-sanitize=vptr,function -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  local targets=(amb_unit_tests amb_integration_tests amb_tls_tests)
  [ -n "${AMB_SANITIZE_FAULT:-}" ] && targets+=(amb_fault_tests)
  cmake -G Ninja -S "$root" -B "$sanitize_dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DAMB_SINGLE_HEADER=ON -DAMB_TLS=ON -DAMB_WERROR=ON -DAMB_TEST_FAMILIES="$sanitize_families" \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" &&
    cmake --build "$sanitize_dir" -j "$jobs" --target "${targets[@]}"
}
sanitize_phase() {
  finish_build sanitize || return 1
  wants tsan && start_background_build tsan
  local reports="$sanitize_dir/sanitizer-reports" labels="${sanitize_families//;/|}"
  rm -rf "$reports" && mkdir -p "$reports"
  ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$reports/asan" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan" \
    ctest --test-dir "$sanitize_dir" --output-on-failure -j "$jobs" -L "^($labels)\$" || return 1
  check_reports "$reports" "ASan/UBSan" || return 1
  echo "sanitize: the ${labels//|/, } tests pass with $(clang++ --version | head -1), against the single header, under ASan+UBSan, no reports"
}

# The sanitize phase's test executable, pointed at ThreadSanitizer builds of the two forwarders
# (AMB_PROGRAM_DIR: tests/support/process.hpp); -O1 -g, as ThreadSanitizer's documentation advises.
tsan_build() {
  cmake -G Ninja -S "$root" -B "$tsan_dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DAMB_BUILD_TESTS=OFF -DAMB_WERROR=ON -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" &&
    cmake --build "$tsan_dir" -j "$jobs" --target simple-amb dynamic-etcd-amb
}
tsan_phase() {
  finish_build tsan || return 1
  [ -x "$sanitize_dir/tests/amb_integration_tests" ] || sanitize_build || return 1
  local reports="$tsan_dir/reports"
  rm -rf "$reports" && mkdir -p "$reports"
  AMB_PROGRAM_DIR="$tsan_dir/examples" TSAN_OPTIONS="halt_on_error=0:log_path=$reports/tsan" \
    ASAN_OPTIONS="detect_leaks=1" \
    ctest --test-dir "$sanitize_dir" --output-on-failure -R '^integration\.(threads_test|dynamic_threads_test)$' || return 1
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
for p in "${!built_meanwhile[@]}"; do
  echo "  ($p's build ${built_meanwhile[$p]} in the background, at the lowest priority, while the phase before it ran its tests)"
done
if [ -n "$failed" ]; then
  echo "make test: the $failed phase failed" >&2
  exit 1
fi
echo "make test: every phase passed"
