#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages amb's build and tests need; only the missing ones.
# Usage: tools/install-deps.sh [--list] [build|test|images|demo|fuzz|bench] (default: test, which holds every other set)
# --list prints the set's packages, one a line, and installs nothing.
set -euo pipefail

# The sets. Each names every Debian package that its command calls or builds against, beyond a minimal
# Debian 12 (the base system with git and make); tools/check_deps.py (run by `make test`) fails when a
# program, header or Python module that the files of a set use comes from a package not named here.
build_packages=(g++ make cmake ninja-build python3 libasio-dev picojson-dev doctest-dev)
# `make images`: an engine, and debootstrap to make the builder's debian:bookworm when it cannot be pulled.
image_packages=(podman runc uidmap debootstrap)
# `make demo`: the images' tools, plus etcd and redis on the host (the redis image is made from
# redis-server), and iproute2 for the two-hosts demo's network namespace.
demo_packages=("${image_packages[@]}" etcd-server etcd-client redis-server redis-tools busybox-static python3 iproute2)
# `fuzz/run_fuzzers.sh`: clang and its libFuzzer/sanitizer runtimes (a separate package on Debian), plus the headers' deps.
fuzz_packages=(clang libclang-rt-14-dev cmake make libasio-dev picojson-dev)
# `make bench`: the load generators (redis-benchmark, iperf3), the servers behind the proxies, and the
# peer proxies measured side by side with amb (haproxy, socat, nginx with its stream module, rinetd),
# the registration row's engine and test image (podman, runc, busybox-static), strace (the syscall
# counts), taskset (util-linux, base system; the pinned mode) and readelf (binutils: the shared
# libraries each Release program needs).
bench_packages=("${build_packages[@]}" "${image_packages[@]}" busybox-static etcd-server etcd-client redis-server redis-tools iperf3 haproxy socat nginx-light libnginx-mod-stream rinetd procps strace util-linux binutils)
# `make test` runs everything above inside ctest (the images and the demo, the fuzzers, a slice of the
# bench), so its set is all of them, plus what only the tests use: podman's rootless helpers, systemd
# (systemd-analyze checks the units), python3-yaml (the compose file), curl, openssl and libssl-dev
# (the TLS tests), clang (the sanitize and tsan phases, the fuzzers), clang-format (the format check) and binutils (nm, readelf).
test_packages=("${build_packages[@]}" "${image_packages[@]}" "${demo_packages[@]}" "${fuzz_packages[@]}" "${bench_packages[@]}"
  systemd python3-yaml curl openssl libssl-dev clang libclang-rt-14-dev clang-format binutils util-linux)

list=0
if [ "${1:-}" = "--list" ]; then list=1; shift; fi
case "${1:-test}" in
  build) wanted=("${build_packages[@]}") ;;
  test) wanted=("${test_packages[@]}") ;;
  images) wanted=("${image_packages[@]}") ;;
  demo) wanted=("${demo_packages[@]}") ;;
  fuzz) wanted=("${fuzz_packages[@]}") ;;
  bench) wanted=("${bench_packages[@]}") ;;
  *) echo "install-deps: unknown set '$1' (build, test, images, demo, fuzz or bench)" >&2; exit 2 ;;
esac
if [ "$list" = 1 ]; then
  printf '%s\n' "${wanted[@]}" | sort -u
  exit 0
fi

missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
