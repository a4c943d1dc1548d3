#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets and runs each for a bounded time on a copy of its committed corpus.
# Usage: fuzz/run_fuzzers.sh [SECONDS_EACH] (default 60). Exits non-zero on any crash, leak,
# sanitizer report or timeout, and names the fuzzer and the saved input. Env: BUILD_DIR, JOBS,
# FUZZ_SEED (CI fixes it, so a run explores the same inputs each time; unset = a random seed),
# FUZZ_OPT (the optimisation flags, default "-O2 -g"; make test's short run builds with "-O1": it
# compiles in about half the time, and a run of seconds needs no top speed).
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
build="${BUILD_DIR:-$here/../build-fuzz}"
jobs="${JOBS:-$(nproc)}"

mkdir -p "$build"
cxx="$(command -v clang++ || command -v clang++-14 || true)"
if [ -z "$cxx" ]; then
  echo "run_fuzzers: clang++ not found: install the Debian packages clang and libclang-rt-14-dev (tools/install-deps.sh fuzz)" >&2
  exit 1
fi

cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Fuzz \
  -DCMAKE_CXX_FLAGS_FUZZ="${FUZZ_OPT:--O2 -g}" >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; echo "run_fuzzers: configuring the fuzzers failed" >&2; exit 1; }
cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1 \
  || { cat "$build/build.log" >&2; echo "run_fuzzers: building the fuzzers failed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for corpus in "$here"/corpus/*/; do
  name="$(basename "$corpus")"
  bin="$build/fuzz_$name"
  [ -x "$bin" ] || { echo "run_fuzzers: no fuzzer built for corpus $name" >&2; failed+=("$name"); continue; }
  # Never grow the committed corpus: the fuzzer writes new inputs into a scratch copy.
  mkdir -p "$work/$name" "$work/artifacts-$name"
  cp "$corpus"/* "$work/$name"/
  log="$work/$name.log"
  seed=()
  [ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
  if "$bin" "${seed[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=4096 -print_final_stats=1 \
       -artifact_prefix="$work/artifacts-$name/" "$work/$name" >"$log" 2>&1; then
    stats="$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr -s ' ' | cut -d: -f3- | tr '\n' ' ')"
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)"
    echo "run_fuzzers: $name ok: ${seconds}s, $cov, runs/execs-per-s/rss-mb: $stats"
  else
    echo "run_fuzzers: $name FAILED; last lines of its log:" >&2
    tail -n 60 "$log" >&2
    for a in "$work/artifacts-$name"/*; do
      [ -e "$a" ] || continue
      keep="$build/$(basename "$a")-$name"
      cp "$a" "$keep"
      echo "run_fuzzers: crashing input kept as $keep (base64: $(head -c 2048 "$a" | base64 -w0))" >&2
    done
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "run_fuzzers: failed: ${failed[*]}" >&2
  exit 1
fi
echo "run_fuzzers: all fuzzers ran ${seconds}s each without a finding"
