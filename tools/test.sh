#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# amb's test phases, then the time each took. `make test` runs all three.
#
#   gcc       GCC 12, warnings as errors: the programs and the integration, fault and TLS test
#             executables, all without Asio's internals (AMB_NO_ASIO_INTERNALS); runs the fault
#             tests, the relay's tests, the data path's integration tests, and every ctest test
#             that is not of a family (the headers alone, the single header, the embedding examples,
#             the consumers, the static programs, the images and the demo, the fuzzers, a bench
#             slice, the set-up check, the format)
#   sanitize  Clang 14 against the single header, with AddressSanitizer + UndefinedBehaviorSanitizer:
#             the three programs and the unit tests; the integration and TLS tests run against those
#             programs; any report from a test or from a program it started fails the phase
#   tsan      ThreadSanitizer builds of both forwarders, under the tests that run them with --threads 2
#
# Where the time goes (2 cores): compiling Asio's coroutines, and tests that wait on servers and
# processes. So every test executable is compiled once (the unit tests by Clang, against the single
# header; `make test-fresh` builds and runs them with GCC), the sanitizers build only what runs under
# them (the programs, and the unit tests, which test the library in-process), the gcc phase builds without debug information, and after the builds the gcc phase's
# tests run beside the sanitize and tsan phases' tests, which the gcc phase's fault tests follow (most
# tests wait on servers, so the two streams share the cores well and end at about the same time).
#
# Usage: tools/test.sh [PHASE ...] (default: all three, tests side by side as above; named phases run
# one after the other). Env: BUILD (default build), JOBS, AMB_SANITIZE_FAULT=1 (the fault tests run
# against the sanitized programs too).
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

# Debug without debug information: the tests are compile-bound, a compile at -O0 costs half of one
# at -O2, and -g adds another 40 % (a program: 13.5 s of CPU at -O0, 19.4 s at -O0 -g). The optimised
# programs are built and tested too: the static build test compiles them (-Os, warnings as errors),
# and the images, the demo and the bench slice run them. The sanitized builds keep line tables
# (-gline-tables-only), which is what a sanitizer's report needs for file:line.
# This build also runs the relay without the reactor wait (amb/detail/reactor_wait.hpp): its programs
# and its relay tests are built with AMB_NO_ASIO_INTERNALS, and the proxy's integration tests run
# against them here as well as against the sanitize phase's programs (which have the reactor wait,
# as have the unit tests, the static programs, the images, the demo and the bench slice).
gcc_build() {
  cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG= -DAMB_TLS=ON -DAMB_WERROR=ON \
    -DCMAKE_CXX_FLAGS=-DAMB_NO_ASIO_INTERNALS -DAMB_RELAY_TESTS=ON \
    -DAMB_BUILD_TESTS=ON -DAMB_TEST_FAMILIES="integration;fault;tls" &&
    cmake --build "$build" -j "$jobs"
}
# Of the integration tests, those of the data path (the proxy, the relay, the forwarders) run here too.
not_data_path='^integration\.(docker_|etcd_|http_client|engine_socket_proxy|support|hostile_servers|dynamic_hostile_registry)'
gcc_tests() {
  ctest --test-dir "$build" --output-on-failure -j "$jobs" -LE "^(tls${1:+|$1})\$" -E "$not_data_path"
}
# The fault tests alone (with all three phases they run after the sanitize and tsan phases' tests, so
# that the two streams of tests take about as long as each other).
fault_tests() {
  ctest --test-dir "$build" --output-on-failure -j "$jobs" -L '^fault$'
}

# Clang and the single header: what a user who copies single_include/amb/amb.hpp and builds with Clang
# gets is what runs here (AMB_SINGLE_HEADER: every amb/X.hpp the unit tests and the programs include
# is the single header). -fno-sanitize=vptr: UBSan's dynamic-type check probes memory through a fresh
# pipe, two file descriptors per check; simple-amb's EMFILE test sets the fd limit exactly at what ten
# relayed connections use, and the probe would break the program under test. -fno-sanitize=function:
# Clang 14 cannot emit that check's prologue data for coroutines split across sections ("Cannot
# represent a difference across sections"); it guards calls through mistyped function pointers, which
# amb never makes. Every other check stays on, and any finding aborts (-fno-sanitize-recover), so it
# cannot scroll by in a passing test.
sanitize_build() {
  local flags="-fsanitize=address,undefined -fno-sanitize=vptr,function -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  cmake -G Ninja -S "$root" -B "$sanitize_dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only \
    -DCMAKE_CXX_COMPILER=clang++ \
    -DAMB_SINGLE_HEADER=ON -DAMB_TLS=ON -DAMB_WERROR=ON -DAMB_TEST_FAMILIES=unit \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" &&
    cmake --build "$sanitize_dir" -j "$jobs" --target amb_unit_tests simple-amb docker-register dynamic-etcd-amb
}
# The fault tests exercise the same code as the integration tests, for minutes of waiting each: they
# run against the GCC programs; AMB_SANITIZE_FAULT=1 (make sanitize) runs them against these too.
sanitize_tests() {
  [ -x "$build/tests/amb_integration_tests" ] || timed gcc-build gcc_build || return 1
  local reports="$sanitize_dir/sanitizer-reports" labels='integration|tls'
  [ -n "${AMB_SANITIZE_FAULT:-}" ] && labels+='|fault'
  rm -rf "$reports" && mkdir -p "$reports"
  local asan="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$reports/asan"
  local ubsan="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
  ASAN_OPTIONS="$asan" UBSAN_OPTIONS="$ubsan" \
    ctest --test-dir "$sanitize_dir" --output-on-failure -j "$jobs" -L '^unit$' || return 1
  # The GCC build's test executables, pointed at the sanitized programs (tests/support/process.hpp).
  ASAN_OPTIONS="$asan" UBSAN_OPTIONS="$ubsan" AMB_PROGRAM_DIR="$sanitize_dir/examples" \
    ctest --test-dir "$build" --output-on-failure -j "$jobs" -L "^($labels)\$" || return 1
  check_reports "$reports" "ASan/UBSan" || return 1
  echo "sanitize: the unit tests (against the single header) and the ${labels//|/, } tests (against the three programs) pass with $(clang++ --version | head -1) under ASan+UBSan, no reports"
}

# The GCC build's test executable, pointed at ThreadSanitizer builds of the two forwarders; -O1 -g, as
# ThreadSanitizer's documentation advises (line tables only: enough for its reports).
tsan_build() {
  cmake -G Ninja -S "$root" -B "$tsan_dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only \
    -DCMAKE_CXX_COMPILER=clang++ \
    -DAMB_BUILD_TESTS=OFF -DAMB_WERROR=ON -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" &&
    cmake --build "$tsan_dir" -j "$jobs" --target simple-amb dynamic-etcd-amb
}
tsan_tests() {
  [ -x "$build/tests/amb_integration_tests" ] || timed gcc-build gcc_build || return 1
  local reports="$tsan_dir/reports"
  rm -rf "$reports" && mkdir -p "$reports"
  AMB_PROGRAM_DIR="$tsan_dir/examples" TSAN_OPTIONS="halt_on_error=0:log_path=$reports/tsan" \
    ctest --test-dir "$build" --output-on-failure -R '^integration\.(threads_test|dynamic_threads_test)$' || return 1
  check_reports "$reports" ThreadSanitizer || return 1
  echo "tsan: the --threads tests pass against ThreadSanitizer builds of both forwarders, no reports"
}

# The sanitize and tsan phases' tests, then the gcc phase's fault tests, one after the other.
sanitize_and_tsan_tests() {
  timed sanitize-tests sanitize_tests || return 1
  timed tsan-tests tsan_tests || return 1
  timed gcc-fault-tests fault_tests
}

print_times() {
  echo "== make test: time per phase (wall time; tests marked * ran beside the gcc phase's tests)"
  local what seconds result mark
  while read -r what seconds result; do
    mark=" "
    [ -n "${overlapped:-}" ] && [[ $what == sanitize-tests || $what == tsan-tests || $what == gcc-fault-tests ]] && mark="*"
    printf '  %-15s %3dm%02ds%s %s\n' "$what" $((seconds / 60)) $((seconds % 60)) "$mark" \
      "$([ "$result" -eq 0 ] && echo passed || echo FAILED)"
  done <"$times"
  [ -n "${started:-}" ] && printf '  %-15s %3dm%02ds\n' "whole run" $((($(date +%s) - started) / 60)) $((($(date +%s) - started) % 60))
}

started=$(date +%s)
status=0
if [ $# -eq 0 ]; then
  # All three: the builds one after the other (each takes both cores), then the gcc phase's tests here
  # while the sanitize and tsan phases' tests run in a session of their own (output in
  # build-sanitize.log, shown at the end).
  overlapped=1
  for phase in gcc sanitize tsan; do
    echo "== make test: $phase phase: build"
    if ! timed "$phase-build" "${phase}_build"; then
      print_times
      echo "make test: the $phase phase's build failed" >&2
      exit 1
    fi
  done
  log="$root/build-sanitize.log"
  export root build sanitize_dir tsan_dir jobs times
  export -f timed check_reports gcc_build sanitize_tests tsan_tests fault_tests sanitize_and_tsan_tests
  echo "== make test: sanitize and tsan phases: tests, beside the gcc phase's (output: $log)"
  setsid -w bash -c sanitize_and_tsan_tests >"$log" 2>&1 &
  side=$!
  trap 'kill -- -"$side" 2>/dev/null; rm -f "$times"' EXIT
  echo "== make test: gcc phase: tests (its fault tests run in the other stream, after the sanitize and tsan phases')"
  timed gcc-tests gcc_tests fault || status=1
  echo "== make test: waiting for the sanitize and tsan phases' tests"
  side_status=0
  wait "$side" || side_status=$?
  if [ "$side_status" -ne 0 ]; then
    status=1
    echo "== make test: the sanitize or tsan phase failed; its output:" >&2
    cat "$log" >&2
  else
    echo "== make test: sanitize and tsan phases (from $log):"
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
