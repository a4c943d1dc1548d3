#!/usr/bin/env bash
# Builds amb, its programs and its tests with AddressSanitizer + UndefinedBehaviorSanitizer (GCC) in
# build-sanitize/ and runs the unit, integration and fault tests there. The programs the integration tests
# start are the sanitized ones too; any report, in a test or in a child, fails the run.
# Usage: tools/sanitize.sh [extra ctest args]. Env: BUILD (default build-sanitize), JOBS.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build-sanitize}"
jobs="${JOBS:-$(nproc)}"
# The fault tests (servers killed, partitions, wipes) exercise the same code paths as the integration
# tests, for minutes of waiting each; `make test` runs them once, in its GCC phase, and leaves them
# out here (AMB_SANITIZE_FAULT=1 puts them back, as `make sanitize` does).
fault="${AMB_SANITIZE_FAULT:-}"
labels='unit|integration|tls'
[ -n "$fault" ] && labels='unit|integration|fault|tls'


# Any UBSan finding aborts (-fno-sanitize-recover), so it cannot scroll by in a passing test.
# -fno-sanitize=vptr: UBSan's dynamic-type check probes memory by writing it to a fresh pipe, two
# file descriptors per check (seen with strace: a pipe2() storm per connection). simple-amb's EMFILE
# test sets the fd limit exactly at what ten relayed connections use, so the probe fails there and
# breaks the program under test; every other UBSan check stays on.
cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DAMB_TLS=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# Only what the unit and integration tests run (the programs and the test executables): the
# header-alone and single-header checks add nothing under sanitizers and double the build time.
targets=(simple-amb docker-register dynamic-etcd-amb amb_unit_tests amb_integration_tests)
[ -n "$fault" ] && targets+=(amb_fault_tests)
grep -q '^AMB_TLS:BOOL=ON' "$build/CMakeCache.txt" && targets+=(amb_tls_tests)
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# Every report, from a test or from a program it started, goes to a file under $reports: a
# sanitized child whose exit code the test does not look at (killed at the end) still fails the run.
reports="$build/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}:log_path=$reports/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}:log_path=$reports/ubsan"
status=0
ctest --test-dir "$build" -L "$labels" --output-on-failure -j "$jobs" "$@" || status=$?
if compgen -G "$reports/*" >/dev/null; then
  for f in "$reports"/*; do
    echo "== sanitizer report $f" >&2
    cat "$f" >&2
  done
  echo "sanitize: sanitizer reports found (above, and in $reports)" >&2
  exit 1
fi
[ "$status" -eq 0 ] && echo "sanitize: all $labels tests pass under ASan+UBSan, no reports"
exit "$status"
