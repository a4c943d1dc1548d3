#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages amb's build and tests need; only the missing ones.
# Usage: tools/install-deps.sh [build|test|images|demo|bench] (default: test, which includes build)
set -euo pipefail

build_packages=(g++ make cmake python3 libasio-dev picojson-dev doctest-dev)
# Real servers the tests start themselves: etcd, redis, podman (with runc), a static busybox for
# test images, and debootstrap for the images test (the builder base image is made locally); openssl
# makes the TLS tests' certificates and libssl-dev builds them (-DAMB_TLS=ON).
test_packages=(etcd-server etcd-client redis-server redis-tools podman runc busybox-static iproute2 uidmap debootstrap systemd python3-yaml clang libclang-rt-14-dev haproxy curl openssl libssl-dev)
# `make images`: an engine, and debootstrap to make the builder's debian:bookworm when it cannot be pulled.
image_packages=(podman runc uidmap debootstrap)
# `make demo`: the images' tools, plus etcd and redis on the host (the redis image is made from
# redis-server), and iproute2 for the two-hosts demo's network namespace.
demo_packages=("${image_packages[@]}" etcd-server etcd-client redis-server redis-tools busybox-static python3 iproute2)
# `fuzz/run_fuzzers.sh`: clang and its libFuzzer/sanitizer runtimes (a separate package on Debian), plus the headers' deps.
fuzz_packages=(clang libclang-rt-14-dev cmake make picojson-dev)
# `make bench`: the load generators (redis-benchmark, iperf3), the servers behind the proxies, and the
# peer proxies measured side by side with amb (haproxy, socat, nginx with its stream module, rinetd).
bench_packages=("${build_packages[@]}" etcd-server etcd-client redis-server redis-tools iperf3 haproxy socat nginx-light libnginx-mod-stream rinetd)

case "${1:-test}" in
  build) wanted=("${build_packages[@]}") ;;
  test) wanted=("${build_packages[@]}" "${test_packages[@]}") ;;
  images) wanted=("${image_packages[@]}") ;;
  demo) wanted=("${demo_packages[@]}") ;;
  fuzz) wanted=("${fuzz_packages[@]}") ;;
  bench) wanted=("${bench_packages[@]}") ;;
  *) echo "install-deps: unknown set '$1' (build, test, images, demo or bench)" >&2; exit 2 ;;
esac

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
