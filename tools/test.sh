#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# amb's test phases, then the time each took. `make test` runs all three.
#
#   gcc       GCC 12, warnings as errors: the programs, the unit and fault tests, and every other
#             ctest test (the headers alone, the single header, the embedding examples, the
#             consumers, the static programs, the images and the demo, the fuzzers, a bench slice,
#             the set-up check, the format)
#   sanitize  Clang 14 against the single header, with AddressSanitizer + UndefinedBehaviorSanitizer:
#             the unit, integration and TLS tests, the three programs they start and the embedding
#             examples; any report from a test or from a program it started fails the phase
#   tsan      ThreadSanitizer builds of both forwarders, under the tests that run them with --threads 2
#
# Where the time goes (2 cores): compiling Asio's coroutines, and tests that wait on servers and
# processes. So no test family is compiled twice in one run (AMB_TEST_FAMILIES), and with all three
# phases the sanitize and tsan phases run beside the gcc phase's tests: their builds at the lowest CPU
# priority (they take the CPU the waiting tests leave idle), their tests at normal priority.
#
# Usage: tools/test.sh [PHASE ...] (default: all three, overlapped as above; named phases run one
# after the other). Env: BUILD (default build), JOBS, AMB_SANITIZE_FAULT=1 (the sanitize phase runs
# the fault tests too).
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build}"
sanitize_dir="$root/build-sanitize"
tsan_dir="$root/build-tsan"
jobs="${JOBS:-$(nproc)}"
times="$(mktemp)"
trap 'rm -f "$times"' EXIT

# Runs "$@" and appends "<what> <seconds> <status>" to the times file.
timed() {
  local what=$1 start status=0
  shift
  start=$(date +%s)
  "$@" || status=$?
  echo "$what $(($(date +%s) - start)) $status" >>"$times"
  return "$status"
}

# The kernel shares CPU between sessions (autogroups) first and by nice inside one, so a priority is
# set for both: the calling shell's, inherited by what it starts next. Raising it back needs root;
# elsewhere the tests simply run at the lower priority.
priority() {
  renice -n "$1" -p "$BASHPID" >/dev/null 2>&1
  echo "$1" >/proc/self/autogroup 2>/dev/null
  return 0
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

# Debug: the tests are compile-bound, and a compile at -O0 costs half of one at -O2. The optimised
# programs are built and tested too: the static build test compiles them (-Os, warnings as errors),
# and the images, the demo and the bench slice run them.
gcc_build() {
  cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DAMB_TLS=ON -DAMB_WERROR=ON -DAMB_BUILD_TESTS=ON \
    -DAMB_TEST_FAMILIES="unit;fault" && cmake --build "$build" -j "$jobs"
}
gcc_tests() {
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
# scroll by in a passing test. The fault tests exercise the same code as the integration tests, for
# minutes of waiting each: they run in the GCC phase; AMB_SANITIZE_FAULT=1 (make sanitize) adds them.
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
sanitize_tests() {
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
tsan_tests() {
  [ -x "$sanitize_dir/tests/amb_integration_tests" ] || timed "sanitize-build" sanitize_build || return 1
  local reports="$tsan_dir/reports"
  rm -rf "$reports" && mkdir -p "$reports"
  AMB_PROGRAM_DIR="$tsan_dir/examples" TSAN_OPTIONS="halt_on_error=0:log_path=$reports/tsan" \
    ctest --test-dir "$sanitize_dir" --output-on-failure -R '^integration\.(threads_test|dynamic_threads_test)$' || return 1
  check_reports "$reports" ThreadSanitizer || return 1
  echo "tsan: the --threads tests pass against ThreadSanitizer builds of both forwarders, no reports"
}

# The sanitize and tsan phases, one after the other, builds at the lowest priority.
sanitize_and_tsan() {
  priority 19
  timed sanitize-build sanitize_build || return 1
  priority 0
  timed sanitize-tests sanitize_tests || return 1
  priority 19
  timed tsan-build tsan_build || return 1
  priority 0
  timed tsan-tests tsan_tests
}

print_times() {
  echo "== make test: time per phase (seconds of wall time; builds marked * ran beside the gcc phase's tests)"
  local what seconds result mark
  while read -r what seconds result; do
    mark=" "
    [ -n "${overlapped:-}" ] && [[ $what == sanitize-* || $what == tsan-* ]] && mark="*"
    printf '  %-15s %3dm%02ds%s %s\n' "$what" $((seconds / 60)) $((seconds % 60)) "$mark" \
      "$([ "$result" -eq 0 ] && echo passed || echo FAILED)"
  done <"$times"
  [ -n "${started:-}" ] && printf '  %-15s %3dm%02ds\n' "whole run" $((($(date +%s) - started) / 60)) $((($(date +%s) - started) % 60))
}

started=$(date +%s)
status=0
if [ $# -eq 0 ]; then
  # All three: the gcc phase's build first (both cores), then its tests here while the sanitize and
  # tsan phases run in a session of their own (its output in build-sanitize.log, shown at the end).
  overlapped=1
  echo "== make test: gcc phase: build"
  if ! timed gcc-build gcc_build; then
    print_times
    echo "make test: the gcc phase's build failed" >&2
    exit 1
  fi
  log="$root/build-sanitize.log"
  export root build sanitize_dir tsan_dir jobs sanitize_families times
  export -f timed priority check_reports sanitize_build sanitize_tests tsan_build tsan_tests sanitize_and_tsan
  echo "== make test: sanitize and tsan phases started beside the gcc phase's tests (output: $log)"
  setsid -w bash -c sanitize_and_tsan >"$log" 2>&1 &
  side=$!
  trap 'kill -- -"$side" 2>/dev/null; rm -f "$times"' EXIT
  echo "== make test: gcc phase: tests"
  timed gcc-tests gcc_tests || status=1
  echo "== make test: waiting for the sanitize and tsan phases"
  side_status=0
  wait "$side" || side_status=$?
  if [ "$side_status" -ne 0 ]; then
    status=1
    echo "== make test: the sanitize or tsan phase failed; its output:" >&2
    cat "$log" >&2
  else
    echo "== make test: sanitize and tsan phases (the end of $log):"
    grep -E '^(sanitize|tsan): |tests passed|Total Test time' "$log" | sed 's/^/  /'
  fi
else
  for phase in "$@"; do
    case "$phase" in
      gcc) timed gcc-build gcc_build && timed gcc-tests gcc_tests ;;
      sanitize) timed sanitize-build sanitize_build && timed sanitize-tests sanitize_tests ;;
      tsan) timed tsan-build tsan_build && timed tsan-tests tsan_tests ;;
      *) echo "tools/test.sh: unknown phase \"$phase\" (gcc, sanitize, tsan)" >&2; false ;;
    esac || { status=1; break; }
  done
fi
print_times
if [ "$status" -ne 0 ]; then
  echo "make test: FAILED (above)" >&2
  exit 1
fi
echo "make test: every phase passed"
