#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Makes sure the engine has docker.io/library/debian:bookworm: pulled where a registry answers, else
# made locally (debootstrap a minimal bookworm into a temporary folder and import it under that name).
# Used by tools/make-images.sh (the images' builder) and tools/fresh-machine-test.sh.
# Usage: tools/bookworm-image.sh ENGINE (podman or docker)
set -euo pipefail
engine="$1"
base=docker.io/library/debian:bookworm

$engine image inspect "$base" >/dev/null 2>&1 && exit 0
if timeout 60 $engine pull -q "$base" >/dev/null 2>&1; then
  echo "bookworm-image: pulled $base"
  exit 0
fi
echo "bookworm-image: cannot pull $base; making it locally with debootstrap (about a minute)"
command -v debootstrap >/dev/null || {
  echo "bookworm-image: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
}
root=$(mktemp -d /tmp/amb-bookworm-XXXXXX)
trap 'rm -rf "$root" "$root.log"' EXIT
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 || {
  tail -n 20 "$root.log" >&2
  echo "bookworm-image: debootstrap failed" >&2
  exit 1
}
quiet=(-q)
[ "$engine" = docker ] && quiet=()  # docker import has no progress output to quiet
tar -C "$root" -c . | $engine import "${quiet[@]}" --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
echo "bookworm-image: imported a local $base"
