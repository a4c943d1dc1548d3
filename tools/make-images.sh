#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the three FROM scratch images from the Dockerfile, with podman or docker.
#
# The Dockerfile's builder starts FROM debian:bookworm. Where that image cannot be pulled
# (no registry reachable), it is made locally first: debootstrap a minimal bookworm into a
# temporary folder and import it under the same name; the real Dockerfile is then built with
# --pull=never. Images: amb/simple-amb, amb/docker-register, amb/dynamic-etcd-amb (tag latest).
#
# The builder stage (Debian with a compiler, about 750 MB) is built once under a temporary tag, the
# three images take its programs from podman's layer cache, and then it is removed with its cached
# layers, so no builder image is left behind; the next run builds it again (minutes).
#
# Usage: tools/make-images.sh [--programs DIR] [--keep-builder]
#   --programs DIR  take the static programs in DIR (e.g. build-static/examples from `make static`)
#                   instead of building them in the builder: seconds instead of minutes
#   --keep-builder  keep the builder image (tagged amb/builder) for quicker rebuilds; remove it with
#                   `podman rmi amb/builder`
set -euo pipefail
cd "$(dirname "$0")/.."

programs=""
keep_builder=false
while [ $# -gt 0 ]; do
  case "$1" in
    --programs) programs="$(cd "${2:?make-images: --programs needs a folder}" && pwd)"; shift 2 ;;
    --keep-builder) keep_builder=true; shift ;;
    *) echo "make-images: unknown argument '$1' (usage: tools/make-images.sh [--programs DIR] [--keep-builder])" >&2; exit 2 ;;
  esac
done

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"

if command -v podman >/dev/null; then
  engine=podman
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
else
  echo "make-images: neither podman nor a running docker engine found (apt-get install podman runc)" >&2
  exit 1
fi

# The builder stage starts FROM debian:bookworm: pulled, or made locally. PROGRAMS=builder is given
# although it is the Dockerfile's default: podman 4.3 does not see through the default of
# `FROM ${PROGRAMS}`, skips the builder stage as unused and fails ("builder: image not known").
build_from=(--build-arg PROGRAMS=builder .)
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
if [ -z "$programs" ]; then
  builder="amb/builder-$$:latest"
  $keep_builder && builder="amb/builder:latest"
  # Removing the tagged builder also removes the untagged layers cached under it (podman and the
  # classic docker builder; BuildKit keeps its own cache: `docker builder prune`).
  $keep_builder || trap '$engine rmi "$builder" >/dev/null 2>&1 || true' EXIT
  echo "make-images: building the builder stage (Debian with a compiler; it builds the static programs)"
  if ! $engine build "${pull_never[@]}" --target builder -t "$builder" "${build_from[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "make-images: building the builder stage failed; the whole log: $log" >&2
    exit 1
  fi
fi
for program in simple-amb docker-register dynamic-etcd-amb; do
  echo "make-images: building amb/$program"
  if ! $engine build "${pull_never[@]}" --target "$program" -t "amb/$program:latest" "${build_from[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "make-images: building amb/$program failed; the whole log: $log" >&2
    exit 1
  fi
done
rm -f "$log"
if [ -z "$programs" ]; then
  if $keep_builder; then
    size=$($engine image inspect --format '{{.Size}}' "$builder")
    echo "make-images: kept the builder image amb/builder ($size bytes; podman rmi amb/builder removes it)"
  elif $engine rmi "$builder" >/dev/null; then
    echo "make-images: removed the builder image and its cached layers (--keep-builder keeps them)"
  else
    echo "make-images: could not remove the builder image $builder: remove it with '$engine rmi $builder'" >&2
  fi
fi
# A rebuild leaves untagged ("<none>") the images it replaced, and the prebuilt stage's image: every
# run would add a few. They all carry the Dockerfile's label amb.image, so exactly those go (other
# untagged images on the machine are not ours); one still used by a container stays, and is named.
for stale in $($engine images -q --filter dangling=true --filter label=amb.image); do
  $engine rmi "$stale" >/dev/null 2>&1 ||
    echo "make-images: kept the untagged amb image $stale (a container still uses it)" >&2
done
for program in simple-amb docker-register dynamic-etcd-amb; do
  size=$($engine image inspect --format '{{.Size}}' "amb/$program:latest")
  printf 'make-images: amb/%-17s %8d bytes\n' "$program" "$size"
done
