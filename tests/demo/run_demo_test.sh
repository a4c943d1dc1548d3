#!/usr/bin/env bash
# Demo test: plays tools/demo.sh with the given arguments (none, or --two-hosts) on the images
# the images test built, and checks it exits 0 with PONG through the ambassador, both instances
# serving, the failover shown, and nothing left behind.
set -uo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "demo test: FAILED: $*" >&2; exit 1; }
command -v podman >/dev/null || fail "podman is missing: apt-get install podman runc (or run 'make setup')"

log=$(mktemp /tmp/amb-demo-test-XXXXXX.log)
trap 'rm -f "$log"' EXIT
timeout --signal=INT --kill-after=30 240 tools/demo.sh "$@" >"$log" 2>&1
status=$?
cat "$log"
[ "$status" -eq 0 ] || fail "tools/demo.sh exited $status"
grep -q '^      PONG$' "$log" || fail "no PONG through the ambassador in the demo's output"
grep -q 'served by redis-1' "$log" || fail "redis-1 never served a connection"
grep -q 'served by redis-2' "$log" || fail "redis-2 never served a connection"
grep -q '^demo: all steps passed$' "$log" || fail "the demo did not report success"
# Clean-up: nothing the demo named is left behind.
left=$(CONTAINERS_CONF="$PWD/tools/podman/containers.conf" podman ps -a --format '{{.Names}}' | grep '^amb-demo-' || true)
[ -z "$left" ] || fail "containers left behind: $left"
if [ "${1:-}" = --two-hosts ]; then
  grep -q '^    (host B) \$ redis-cli' "$log" || fail "the client did not run on host B"
  pid=$(sed -n 's/.*namespace amb-demo-\([0-9]*\)-B.*/\1/p' "$log" | head -n 1)
  [ -n "$pid" ] || fail "the demo named no host B namespace"
  ! ip netns list | grep -q "amb-demo-$pid-B" || fail "namespace amb-demo-$pid-B left behind"
  ! ip link show "ambA$pid" >/dev/null 2>&1 || fail "veth ambA$pid left behind"
fi
echo "demo test: passed"
