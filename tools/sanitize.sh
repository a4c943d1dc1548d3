#!/usr/bin/env bash
# Builds amb, its programs and its tests with AddressSanitizer + UndefinedBehaviorSanitizer (GCC) in
# build-sanitize/ and runs the unit and integration tests there. The programs the integration tests
# start are the sanitized ones too, so a report in a child fails the test that started it.
# Usage: tools/sanitize.sh [extra ctest args]. Env: BUILD (default build-sanitize), JOBS.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build-sanitize}"
jobs="${JOBS:-$(nproc)}"

# Any UBSan finding aborts (-fno-sanitize-recover), so it cannot scroll by in a passing test.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# Only what the unit and integration tests run (the programs and the test executables): the
# header-alone and single-header checks add nothing under sanitizers and double the build time.
targets=(simple-amb docker-register dynamic-etcd-amb)
while read -r t; do targets+=("$t"); done < <(cmake --build "$build" --target help | sed -n 's/^\.\.\. \(\(unit\|integration\)_[a-z0-9_]*_test\)$/\1/p')
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# Reports name the failing line; abort_on_error stays off so a sanitized child exits non-zero
# (caught by the test) instead of dumping core.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build" -L 'unit|integration' --output-on-failure -j "$jobs" "$@"
