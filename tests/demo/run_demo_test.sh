#!/usr/bin/env bash
# Demo test: plays tools/demo.sh with the given arguments (none, or --two-hosts) on the images
# the images test built, and checks it exits 0 with PONG through the ambassador, both instances
# serving, the failover shown, the programs' own log lines (added, removed, ejected) and the
# explanations in its output, no "seed" in it, and nothing left behind. (--keep: run_keep_test.sh.)
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
# The mechanism, not only its effect: the programs' own log lines, next to the narration.
grep -q '^      \[register-1 log\] docker-register: registered /services/redis-A/amb-demo-[0-9]*-redis-1 = ' "$log" ||
  fail "docker-register's 'registered' line is not in the demo's output"
for what in "redis-1 added" "redis-2 added" "redis-1 removed" "by-hand-dead added" "by-hand-dead removed"; do
  grep -q "^      \[redis-amb log\] dynamic-etcd-amb: instance /services/redis-A/\(amb-demo-[0-9]*-\)\{0,1\}$what" "$log" ||
    fail "the ambassador's 'instance ... $what' line is not in the demo's output"
done
grep -q '\[redis-amb log\] dynamic-etcd-amb: warning: instance /services/redis-A/by-hand-dead .* ejected' "$log" ||
  fail "the ambassador's 'ejected' line is not in the demo's output"
grep -q 'not replicas: each holds its own data' "$log" || fail "no note that the two redis servers hold different data"
grep -q 'the name says 10000; the values say where that simple-amb' "$log" || fail "ETCD_PORT_10000_TCP_* not explained"
! grep -qi seed "$log" || fail "the demo's output says 'seed': $(grep -i seed "$log" | head -n 1)"
! tools/demo.sh --help | grep -qi seed || fail "tools/demo.sh --help says 'seed'"
# Clean-up: nothing the demo named is left behind (only this run's: other demos may run alongside).
tag=$(sed -n 's/.*--name \(amb-demo-[0-9]*\)-redis-1 .*/\1/p' "$log" | head -n 1)
[ -n "$tag" ] || fail "no container amb-demo-<pid>-redis-1 in the demo's output"
left=$(CONTAINERS_CONF="$PWD/tools/podman/containers.conf" podman ps -a --format '{{.Names}}' | grep "^$tag-" || true)
[ -z "$left" ] || fail "containers left behind: $left"
if [ "${1:-}" = --two-hosts ]; then
  grep -q '^    \$ ip netns exec amb-demo-[0-9]*-B redis-cli .*   # on host B' "$log" || fail "the client did not run on host B"
  pid=$(sed -n 's/.*namespace amb-demo-\([0-9]*\)-B.*/\1/p' "$log" | head -n 1)
  [ -n "$pid" ] || fail "the demo named no host B namespace"
  ! ip netns list | grep -q "amb-demo-$pid-B" || fail "namespace amb-demo-$pid-B left behind"
  ! ip link show "ambA$pid" >/dev/null 2>&1 || fail "veth ambA$pid left behind"
fi
echo "demo test: passed"
