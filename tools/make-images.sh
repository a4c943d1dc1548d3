#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the three FROM scratch images from the Dockerfile, with podman or docker.
#
# The Dockerfile's builder starts FROM debian:bookworm. Where that image cannot be pulled
# (no registry reachable), it is made locally first: debootstrap a minimal bookworm into a
# temporary folder and import it under the same name; the real Dockerfile is then built with
# --pull=never. Images: amb/simple-amb, amb/docker-register, amb/dynamic-etcd-amb (tag latest).
set -euo pipefail
cd "$(dirname "$0")/.."

base=docker.io/library/debian:bookworm
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"

if command -v podman >/dev/null; then
  engine=podman
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=docker
else
  echo "make-images: neither podman nor a running docker engine found (apt-get install podman runc)" >&2
  exit 1
fi

if ! $engine image inspect "$base" >/dev/null 2>&1; then
  if timeout 60 $engine pull -q "$base" >/dev/null 2>&1; then
    echo "make-images: pulled $base"
  else
    echo "make-images: cannot pull $base; making it locally with debootstrap (about a minute)"
    command -v debootstrap >/dev/null || {
      echo "make-images: debootstrap is missing (apt-get install debootstrap)" >&2
      exit 1
    }
    root=$(mktemp -d /tmp/amb-bookworm-XXXXXX)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 || {
      echo "make-images: debootstrap failed; its log: $root.log" >&2
      exit 1
    }
    rm -f "$root.log"
    quiet=(-q)
    [ "$engine" = docker ] && quiet=()  # docker import has no progress output to quiet
    tar -C "$root" -c . | $engine import "${quiet[@]}" --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    echo "make-images: imported a local $base"
  fi
fi

pull_never=(--pull=never)
[ "$engine" = docker ] && pull_never=()
# The build's output (apt, compiler warnings) goes to a log, shown only when the build fails.
log=$(mktemp /tmp/amb-make-images-XXXXXX.log)
for program in simple-amb docker-register dynamic-etcd-amb; do
  echo "make-images: building amb/$program"
  if ! $engine build "${pull_never[@]}" --target "$program" -t "amb/$program:latest" . >"$log" 2>&1; then
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
