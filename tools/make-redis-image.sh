#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Makes the demo's redis image, amb/redis, from this machine's Debian redis-server: the binary,
# the shared libraries ldd names, and nothing else, imported with `podman import` (no pulls).
# Usage: tools/make-redis-image.sh [--force]   (does nothing when the image exists, unless --force)
set -euo pipefail
cd "$(dirname "$0")/.."

image=localhost/amb/redis:latest
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"

command -v podman >/dev/null || { echo "make-redis-image: podman is missing (apt-get install podman runc)" >&2; exit 1; }
server=$(command -v redis-server) || { echo "make-redis-image: redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
if [ "${1:-}" != --force ] && podman image exists "$image"; then
  exit 0
fi

root=$(mktemp -d /tmp/amb-redis-image-XXXXXX)
trap 'rm -rf "$root"' EXIT
# redis-server is a symlink whose target picks its mode from argv[0]: copy the file under the name.
mkdir -p "$root/usr/bin" "$root/data" "$root/tmp" "$root/etc"
cp -L "$server" "$root/usr/bin/redis-server"
# Every library ldd resolves (absolute paths), plus the dynamic loader, at the same paths.
for lib in $(ldd "$server" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo 'redis:x:999:999::/data:/nonexistent' >"$root/etc/passwd"
chmod 1777 "$root/tmp"
chown 999:999 "$root/data"
tar -C "$root" -c . | podman import -q \
  --change 'USER 999:999' --change 'WORKDIR /data' --change 'EXPOSE 6379' \
  --change 'ENTRYPOINT ["/usr/bin/redis-server"]' \
  --change 'CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]' \
  - "$image" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "make-redis-image: made $image from $server ($size bytes)"
