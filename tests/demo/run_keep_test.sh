#!/usr/bin/env bash
# Demo --keep test: plays `tools/demo.sh --keep` (with --two-hosts when given) on the images the
# images test built, checks the programs' own log lines and the explanations are in its output, then
# does what a learner would: runs the commands it printed, as printed (the explore block, and with
# --two-hosts every command it printed for host B), checking what each does to the running demo,
# and last the printed clean-up command, after which no container, process, namespace, veth or
# temp folder of the demo may be left. Whatever happens, the trap runs that clean-up.
set -uo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="$PWD/tools/podman/containers.conf"

log=$(mktemp /tmp/amb-demo-keep-test-XXXXXX.log)
clean_up=""
on_exit() {
  # The demo's own clean-up script stops its processes by PID and removes its containers by name.
  if [ -n "$clean_up" ] && [ -x "$clean_up" ]; then "$clean_up" >/dev/null 2>&1 || true; fi
  rm -f "$log"
}
trap on_exit EXIT
fail() {
  echo "demo keep test: FAILED: $*" >&2
  exit 1
}
command -v podman >/dev/null || fail "podman is missing: apt-get install podman runc (or run 'make setup')"

timeout --signal=INT --kill-after=30 240 tools/demo.sh --keep "$@" >"$log" 2>&1
status=$?
cat "$log"
clean_up=$(sed -n 's/.*clean up with \(\/tmp\/amb-demo-[A-Za-z0-9]*\/clean-up\.sh\).*/\1/p' "$log" | tail -n 1)
[ "$status" -eq 0 ] || fail "tools/demo.sh --keep $* exited $status"
[ -n "$clean_up" ] && [ -x "$clean_up" ] || fail "the demo printed no clean-up command (or it is not there): '$clean_up'"
tag=$(sed -n 's/.*--name \(amb-demo-[0-9]*\)-redis-1 .*/\1/p' "$log" | head -n 1)
[ -n "$tag" ] || fail "no container amb-demo-<pid>-redis-1 in the demo's output"
etcd_url=$(sed -n 's/.*etcd is healthy, listening on \(http:[^,]*\).*/\1/p' "$log" | head -n 1)
read -r etcd_pid podman_pid < <(sed -n "s/.*etcd (PID \([0-9]*\)), podman's API service (PID \([0-9]*\)).*/\1 \2/p" "$log")
[ -n "${podman_pid:-}" ] || fail "the demo did not name the PIDs it left running"

# What the demo must have taught on the way: the programs' own log lines next to the narration,
# the link variables, and that two balanced redis servers are not replicas.
expect_in_log() { grep -q -- "$1" "$log" || fail "not in the demo's output: $2 ('$1')"; }
expect_in_log "\[register-1 log\] docker-register: registered /services/redis-A/$tag-redis-1 = " "docker-register's log line"
expect_in_log "\[redis-amb log\] dynamic-etcd-amb: instance /services/redis-A/$tag-redis-1 added" "the ambassador's 'added'"
expect_in_log "\[redis-amb log\] dynamic-etcd-amb: instance /services/redis-A/$tag-redis-1 removed" "the ambassador's 'removed'"
expect_in_log "\[redis-amb log\] dynamic-etcd-amb: warning: instance /services/redis-A/by-hand-dead .* ejected" "the ambassador's 'ejected'"
expect_in_log "not replicas: each holds its own data" "the note that the two redis servers hold different data"
expect_in_log "the name says 10000; the values say where that simple-amb" "what ETCD_PORT_10000_TCP_* mean"
! grep -qi seed "$log" || fail "the demo's output says 'seed': $(grep -i seed "$log" | head -n 1)"

# Everything still runs: both host processes, and every container but the stopped redis-1.
# Whether PID runs NAME (a zombie has stopped: it only waits for whoever adopted it to reap it).
runs() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
runs "$etcd_pid" etcd || fail "etcd (PID $etcd_pid) is not running after --keep"
runs "$podman_pid" podman || fail "podman's API service (PID $podman_pid) is not running after --keep"
running=$(podman ps --format '{{.Names}}' | grep -c "^$tag-")
want=5
[ "${1:-}" = --two-hosts ] && want=6
[ "$running" -eq "$want" ] || fail "$running containers of the demo run after --keep, expected $want"

# Runs one printed line as printed (a fresh bash, with what the printed exports set), output in $out.
run_line() {
  out=$(timeout 30 bash -c "$1" 2>&1)
}
retry_line() {  # LINE EXPECTED: runs LINE until it prints EXPECTED, for up to 20 s
  local deadline=$((SECONDS + 20))
  until run_line "$1" && [ "$out" = "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "'$1' printed '$out', expected '$2'"
    sleep 0.3
  done
}
amb_log_count() { podman logs "$tag-redis-amb" 2>&1 | grep -c -- "$1"; }
await_amb_log() {  # PATTERN COUNT: the ambassador has logged PATTERN COUNT times, within 20 s
  local deadline=$((SECONDS + 20))
  until [ "$(amb_log_count "$1")" -ge "$2" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the ambassador did not log '$1' ($2 times)"
    sleep 0.3
  done
}

# With --two-hosts: every command the narration printed for host B, pasted as printed.
if [ "${1:-}" = --two-hosts ]; then
  netns=$(sed -n 's/.*namespace \(amb-demo-[0-9]*-B\).*/\1/p' "$log" | head -n 1)
  [ -n "$netns" ] || fail "the demo named no host B namespace"
  n=0
  while IFS= read -r line; do
    case "$line" in
      "podman run "*)  # the containers exist, so these are checked, not run a second time
        bash -n -c "$line" || fail "not a valid command: $line"
        [[ "$line" == *"--network ns:/run/netns/$netns "* ]] || fail "a host B container not in host B: $line" ;;
      "ip netns exec $netns "*)
        run_line "$line" || fail "'$line' failed: $out"
        [[ "$out" != *rror* ]] || fail "'$line' printed: $out" ;;
      *) fail "a command for host B that is neither 'podman run' nor 'ip netns exec $netns': $line" ;;
    esac
    n=$((n + 1))
  done < <(sed -n 's/^    \$ \(.*\)   # on host B.*/\1/p' "$log")
  [ "$n" -ge 6 ] || fail "only $n commands printed for host B"
  echo "demo keep test: ran or checked the $n commands printed for host B"
fi

# The command to watch the ambassador, printed above the block: its log already holds "added".
watch=$(sed -n 's/^    \(  env CONTAINERS_CONF=.* podman logs -f .*\)$/\1/p' "$log" | head -n 1)
[ -n "$watch" ] || fail "no 'podman logs -f' command printed to watch the ambassador"
out=$(timeout 3 bash -c "$watch" 2>&1)
[[ "$out" == *"instance /services/redis-A/$tag-redis-2 added"* ]] || fail "'$watch' did not show the ambassador's log: $out"

# The explore block, line by line, as printed.
block=$(sed -n '/^# <explore>$/,/^# <\/explore>$/p' "$log")
[ -n "$block" ] || fail "no explore block (# <explore> ... # </explore>) printed"
redis2_stopped=false ran=0
while IFS= read -r line; do
  case "$line" in
    "" | "#"*) continue ;;
    "export "*) eval "$line"; ran=$((ran + 1)); continue ;;
  esac
  ran=$((ran + 1))
  echo "demo keep test: \$ $line"
  run_line "$line" || fail "'$line' failed: $out"
  case "$line" in
    *" get --prefix /services/")
      [[ "$out" == *"/services/redis-A/$tag-redis-2"* ]] || fail "'$line' did not list redis-2: $out" ;;
    *" put /services/redis-A/by-hand "*)
      await_amb_log "instance /services/redis-A/by-hand added" 1 ;;
    *" del /services/redis-A/by-hand")
      await_amb_log "instance /services/redis-A/by-hand removed" 1 ;;
    *" GET served_by")
      if $redis2_stopped; then retry_line "$line" redis-1; else
        [ "$out" = redis-1 ] || [ "$out" = redis-2 ] || fail "'$line' printed '$out'"
      fi ;;
    "podman start $tag-redis-1")
      # Its docker-register writes the key again; the ambassador adds it a second time.
      await_amb_log "instance /services/redis-A/$tag-redis-1 added" 2 ;;
    "podman logs $tag-register-1")
      [ "$(grep -c "registered /services/redis-A/$tag-redis-1 " <<<"$out")" -ge 2 ] ||
        fail "docker-register did not register redis-1 again after its start: $out" ;;
    *" SET served_by redis-1")
      [ "$out" = OK ] || fail "'$line' printed '$out'" ;;
    "podman stop -t 2 $tag-redis-2")
      redis2_stopped=true
      await_amb_log "instance /services/redis-A/$tag-redis-2 removed" 1 ;;
    *"/clean-up.sh")
      [ "$line" = "$clean_up" ] || fail "the block's clean-up command '$line' is not the one announced, '$clean_up'" ;;
    *) fail "a printed command this test does not know: $line" ;;
  esac
done <<<"$block"
[ "$ran" -ge 12 ] || fail "only $ran commands in the explore block"
$redis2_stopped || fail "the explore block never stopped redis-2"

# After the clean-up command: nothing of the demo is left.
left=$(podman ps -a --format '{{.Names}}' | grep "^$tag-" || true)
[ -z "$left" ] || fail "containers left behind after $clean_up: $left"
! runs "$etcd_pid" etcd || fail "etcd (PID $etcd_pid) still runs"
! runs "$podman_pid" podman || fail "podman's API service (PID $podman_pid) still runs"
[ ! -e "$(dirname "$clean_up")" ] || fail "$(dirname "$clean_up") left behind"
if [ "${1:-}" = --two-hosts ]; then
  ! ip netns list | grep -q "^$netns" || fail "namespace $netns left behind"
  ! ip link show "ambA${tag#amb-demo-}" >/dev/null 2>&1 || fail "veth ambA${tag#amb-demo-} left behind"
fi
! etcdctl --endpoints "$etcd_url" --dial-timeout 2s endpoint health >/dev/null 2>&1 || fail "etcd still answers at $etcd_url"
echo "demo keep test: passed (ran $ran printed commands, then the clean-up)"
