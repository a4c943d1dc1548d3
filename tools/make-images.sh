#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the three FROM scratch images from the Dockerfile, with podman or docker.
#
# The Dockerfile's builder starts FROM debian:bookworm. Where that image cannot be pulled
# (no registry reachable), it is made locally first: debootstrap a minimal bookworm into a
# temporary folder and import it under the same name; the real Dockerfile is then built with
# --pull=never. Images: amb/simple-amb, amb/docker-register, amb/dynamic-etcd-amb (tag latest).
#
# Usage: tools/make-images.sh [--programs DIR]
#   --programs DIR  take the static programs in DIR (e.g. build-static/examples from `make static`)
#                   instead of building them in the builder: seconds instead of minutes
set -euo pipefail
cd "$(dirname "$0")/.."

programs=""
if [ "${1:-}" = "--programs" ]; then
  programs="$(cd "${2:?make-images: --programs needs a folder}" && pwd)"
fi

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"

if command -v podman >/dev/null; then
  engine=podman
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
else
  echo "make-images: neither podman nor a running docker engine found (apt-get install podman runc)" >&2
  exit 1
fi

# The builder stage starts FROM debian:bookworm: pulled, or made locally.
build_from=(.)
if [ -n "$programs" ]; then
  for program in simple-amb docker-register dynamic-etcd-amb; do
    [ -x "$programs/$program" ] || { echo "make-images: $programs/$program is missing" >&2; exit 1; }
  done
  build_from=(--build-arg PROGRAMS=prebuilt -f "$PWD/Dockerfile" "$programs")
else
  tools/bookworm-image.sh "$engine"
fi

pull_never=(--pull=never)
[ "$engine" = docker ] && pull_never=()
# The build's output (apt, compiler warnings) goes to a log, shown only when the build fails.
log=$(mktemp /tmp/amb-make-images-XXXXXX.log)
for program in simple-amb docker-register dynamic-etcd-amb; do
  echo "make-images: building amb/$program"
  if ! $engine build "${pull_never[@]}" --target "$program" -t "amb/$program:latest" "${build_from[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "make-images: building amb/$program failed; the whole log: $log" >&2
    exit 1
  fi
done
rm -f "$log"
for program in simple-amb docker-register dynamic-etcd-amb; do
  size=$($engine image inspect --format '{{.Size}}' "amb/$program:latest")
  printf 'make-images: amb/%-17s %8d bytes\n' "$program" "$size"
done
