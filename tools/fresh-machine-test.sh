#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Proves that a brand-new Debian 12 machine needs nothing but tools/install-deps.sh: in a clean
# debian:bookworm container (the minimal base, made locally with debootstrap where it cannot be
# pulled), with this checkout's files copied in, it runs tools/install-deps.sh build as the only
# set-up, then builds the unit tests and the three programs and runs the unit tests.
# Whatever this machine has installed by hand, the container does not have it.
#
# Usage: tools/fresh-machine-test.sh   (make test-fresh; root, podman; CI runs it after make test)
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"

fail() { echo "fresh-machine test: FAILED: $*" >&2; exit 1; }
command -v podman >/dev/null || fail "podman is missing: apt-get install podman runc (or run 'make setup')"
tools/bookworm-image.sh podman || fail "no debian:bookworm image"

# The files a clone has: tracked, plus new ones not ignored (so uncommitted work is tested too).
work=$(mktemp -d /tmp/amb-fresh-XXXXXX)
trap 'rm -rf "$work"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' |
  tar --null -T - -cf "$work/src.tar"

start=$(date +%s)
podman run --rm --pull=never -v "$work/src.tar:/src.tar:ro" docker.io/library/debian:bookworm bash -c '
  set -euo pipefail
  mkdir /src && tar -xf /src.tar -C /src && cd /src
  tools/install-deps.sh build
  cmake -G Ninja -S . -B /build -DCMAKE_BUILD_TYPE=Debug -DAMB_WERROR=ON -DAMB_CLANG_CHECKS=OFF >/dev/null
  cmake --build /build -j "$(nproc)" --target amb_unit_tests simple-amb docker-register dynamic-etcd-amb
  ctest --test-dir /build -L unit --output-on-failure
  /build/examples/simple-amb --version
' || fail "the build or the unit tests failed in a clean debian:bookworm container"
echo "fresh-machine test: passed in a clean debian:bookworm container in $(($(date +%s) - start)) s," \
  "with tools/install-deps.sh build as the only set-up"
