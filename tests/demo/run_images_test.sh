#!/usr/bin/env bash
# Images test: builds the three FROM scratch images (podman's layer cache makes a rebuild quick),
# runs each program's --version inside its own image, checks each image holds one file, and
# checks which user each image runs as, and prints each image's size. Fails, never skips, when podman (or what the build needs) is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"

fail() { echo "images test: FAILED: $*" >&2; exit 1; }
command -v podman >/dev/null || fail "podman is missing: apt-get install podman runc (or run 'make setup')"
command -v runc >/dev/null || fail "runc is missing: apt-get install runc (or run 'make setup')"

# Usage: run_images_test.sh [--programs DIR]: with the static programs of the static build test
# (ctest passes them), the images are made from those; without, the Dockerfile builds them.
tools/make-images.sh "$@" || fail "tools/make-images.sh $* failed"
# A rebuild leaves no untagged image of its own behind (the ones it replaced, the prebuilt stage's).
left=$(podman images -q --filter dangling=true --filter label=amb.image)
[ -z "$left" ] || fail "untagged amb images left behind: $(echo $left)"

version=$(sed -n 's/^#define AMB_VERSION_STRING "\(.*\)"/\1/p' include/amb/version.hpp)
[ -n "$version" ] || fail "no AMB_VERSION_STRING in include/amb/version.hpp"
# 1.5 MB as docker and podman print sizes (decimal), the size each image is held to.
limit=1500000
over=()
for program in simple-amb docker-register dynamic-etcd-amb; do
  image="localhost/amb/$program:latest"
  out=$(podman run --rm "$image" --version 2>&1) || fail "podman run $image --version failed: $out"
  [ "$out" = "$program $version" ] || fail "$image --version printed '$out', expected '$program $version'"
  # Only the program: one layer, whose single file is the binary (FROM scratch, nothing else).
  files=$(podman image save "$image" | tar -xO --wildcards '*.tar' 2>/dev/null | tar -ti 2>/dev/null | sort -u | grep -v '/$' || true)
  [ "$files" = "$program" ] || fail "$image holds more than its binary: $(echo $files)"
  # The forwarders run as nobody; docker-register as root only because the engine's socket is root's
  # (README, "Security").
  user=$(podman image inspect --format '{{.Config.User}}' "$image")
  want_user=65534:65534
  [ "$program" = docker-register ] && want_user=""
  [ "$user" = "$want_user" ] || fail "$image runs as user '$user', expected '$want_user'"
  size=$(podman image inspect --format '{{.Size}}' "$image")
  printf 'images test: %-30s %s, %8d bytes (%s MB)\n' "$image" "$out" "$size" \
    "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1000000 }')"
  [ "$size" -lt "$limit" ] || over+=("$program")
done
[ ${#over[@]} -eq 0 ] || fail "over 1.5 MB: ${over[*]}"
echo "images test: passed"
