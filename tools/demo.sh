#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ambassador pattern, played with real containers (podman) and the images `make images` builds,
# after CoreOS's 2014 demo: etcd; redis registered by docker-register (which reaches etcd through a
# simple-amb); a redis client served through dynamic-etcd-amb. Then what amb adds: a second redis,
# balancing, failover, and a dead instance ejected. The programs' own log lines are shown as they
# happen, next to the narration.
#
# Usage: tools/demo.sh [--two-hosts] [--keep]
#   (`make demo` or `make demo-two-hosts` sets up first; with --keep: `make demo DEMO_FLAGS=--keep`)
#
# One host (default): every part on this machine, over loopback.
# --two-hosts (root): host B is a network namespace this script makes, joined to this machine
#   (host A) by a veth pair only: etcd, redis and docker-register on A; a simple-amb to etcd,
#   dynamic-etcd-amb and the redis client on B, which reaches A only over the veth link. Every
#   command printed for host B runs there as printed (`ip netns exec amb-demo-<pid>-B ...`).
# --keep: after the last step, leave everything running and print commands to explore by hand
#   (put and delete keys, stop a container, watch the ambassador follow) and the one command
#   that removes it all afterwards.
#
# Everything it starts (etcd, podman's API service, containers named amb-demo-<pid>-*, the
# namespace and veth pair) is removed on exit, also on Ctrl-C, unless --keep was given and every
# step passed. Exits non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

two_hosts=false
keep=false
for arg in "$@"; do
  case "$arg" in
    --two-hosts) two_hosts=true ;;
    --keep) keep=true ;;
    -h | --help) sed -n '3,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument '$arg' (usage: tools/demo.sh [--two-hosts] [--keep])" >&2; exit 2 ;;
  esac
done

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"
export ETCDCTL_API=3
tag="amb-demo-$$"
tmp=$(mktemp -d /tmp/amb-demo-XXXXXX)
containers=()
pids=()      # host processes, as PID:NAME (NAME is what /proc/PID/comm must say before a kill)
netns=""
veth_a=""
current_step="set-up"

bold=$'\e[1m' plain=$'\e[0m'
[ -t 1 ] || { bold=""; plain=""; }
step() { current_step="$*"; printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '    %s\n' "$*"; }
# One argument as a shell word: as it is when plain, else quoted, so printed commands paste as they are.
shell_word() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then printf '%s' "$1"; else printf '%s' "${1@Q}"; fi
}
shell_line() {
  local out="" a
  for a in "$@"; do out+="${out:+ }$(shell_word "$a")"; done
  printf '%s' "$out"
}
# Shows a command, then runs it with its output indented.
show() {
  printf '    $ %s\n' "$(shell_line "$@")"
  "$@" 2>&1 | sed 's/^/      /'
}
fail() {
  echo "demo: FAILED at step \"$current_step\": $*" >&2
  exit 1
}

# Writes $tmp/clean-up.sh, which removes everything started so far: containers by name, host
# processes by PID (only while the PID still runs the program started), the namespace and veth pair,
# and $tmp itself. The demo runs it on exit; with --keep it is the command printed for afterwards.
write_clean_up() {
  local c p
  {
    echo '#!/usr/bin/env bash'
    echo "# Removes everything tools/demo.sh (process $$) started."
    printf 'export CONTAINERS_CONF=%s\n' "$(shell_word "$CONTAINERS_CONF")"
    echo 'stop_pid() {  # PID NAME: SIGTERM, then up to 10 s, then SIGKILL; only if PID still runs NAME'
    echo '  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 0'
    echo '  kill "$1" 2>/dev/null || return 0'
    echo '  for _ in $(seq 100); do'
    echo '    state=$(sed -n "s/^State:[[:space:]]*\([A-Z]\).*/\1/p" "/proc/$1/status" 2>/dev/null)'
    echo '    [ -z "$state" ] || [ "$state" = Z ] && return 0'
    echo '    sleep 0.1'
    echo '  done'
    echo '  kill -9 "$1" 2>/dev/null || true'
    echo '}'
    for c in "${containers[@]}"; do
      printf 'podman rm -f -t 0 %s >/dev/null 2>&1 || true\n' "$(shell_word "$c")"
    done
    for p in "${pids[@]}"; do
      printf 'stop_pid %s %s\n' "${p%%:*}" "$(shell_word "${p#*:}")"
    done
    if [ -n "$netns" ]; then
      # Deleting the namespace deletes its end of the veth pair, and with it the pair.
      printf 'ip netns del %s 2>/dev/null || true\n' "$(shell_word "$netns")"
      printf 'ip link del %s 2>/dev/null || true\n' "$(shell_word "$veth_a")"
      printf 'echo "    removed network namespace %s (host B) and its veth link"\n' "$netns"
    fi
    printf 'rm -rf %s\n' "$(shell_word "$tmp")"
    printf 'echo "    removed %d containers, stopped %d processes"\n' "${#containers[@]}" "${#pids[@]}"
  } >"$tmp/clean-up.sh"
  chmod +x "$tmp/clean-up.sh"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$status" -ne 0 ] && [ "$status" -ne 130 ]; then
    echo "demo: logs of what it started, for the failure above:" >&2
    for c in "${containers[@]}"; do
      echo "--- podman logs $c" >&2
      podman logs "$c" 2>&1 | tail -n 15 >&2 || true
    done
    for f in "$tmp"/*.log; do
      [ -f "$f" ] || continue
      echo "--- $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  write_clean_up
  if [ "$status" -eq 0 ] && $keep; then
    explore
    exit 0
  fi
  printf '\n%s==> Cleaning up%s\n' "$bold" "$plain"
  "$tmp/clean-up.sh"
  local p
  for p in "${pids[@]}"; do
    wait "${p%%:*}" 2>/dev/null || true
  done
  if [ "$status" -eq 0 ]; then
    printf '\n%sdemo: all steps passed%s\n' "$bold" "$plain"
  else
    echo "demo: failed (exit $status)" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
set -E
trap 'echo "demo: FAILED at step \"$current_step\": $BASH_COMMAND" >&2' ERR
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
# A port below the kernel's ephemeral range (32768+), so that no outgoing connection takes it first.
free_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(20000, 32767)
    try:
        socket.socket().bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break'
}
need() {
  command -v "$1" >/dev/null || fail "$1 is missing (run 'make demo', or apt-get install $2)"
}
# Runs a detached container named $tag-$2 (tracked for clean-up) on host $1 (A or B); the rest are
# podman run arguments. The command is printed as it can be pasted (on host B with --two-hosts).
start_container() {
  local host=$1 name="$tag-$2"
  shift 2
  containers+=("$name")
  local note=""
  [ "$host" = B ] && note=$b_note
  printf '    $ %s%s\n' "$(shell_line podman run -d --name "$name" "$@")" "$note"
  podman run -d --name "$name" "$@" >/dev/null || fail "podman run $name failed"
}
etcd_keys() { etcdctl --endpoints "$etcd_url" get --prefix /services/; }
# Whole output first, then grep: a pipe into grep -q could cut etcdctl short.
registered() { local keys; keys=$(etcd_keys) && grep -q -- "$1" <<<"$keys"; }
not_registered() { local keys; keys=$(etcd_keys) && ! grep -q -- "$1" <<<"$keys"; }
# Runs a command on host B: inside its namespace with --two-hosts, else right here.
on_b() { "${b_cmd[@]}" "$@"; }
via_ambassador() { on_b redis-cli -h 127.0.0.1 -p "$amb_port" "$@"; }
# Shows a redis-cli command on host B through the ambassador, as it can be pasted, then runs it;
# its reply is shown and left in $reply.
ask() {
  printf '    $ %s%s\n' "$(shell_line "${b_cmd[@]}" redis-cli -h 127.0.0.1 -p "$amb_port" "$@")" "$b_note"
  reply=$(via_ambassador "$@" 2>&1) || fail "redis-cli $* through the ambassador failed: $reply"
  printf '%s\n' "$reply" | sed 's/^/      /'
}
host_port_of() { podman port "$1" 6379/tcp | head -n 1 | sed 's/.*://'; }

# The programs' own words: the lines a container logged since the last look, after its short name.
declare -A log_lines_shown
show_log() {
  local name=$1 lines i
  mapfile -t lines < <(podman logs "$tag-$name" 2>&1)
  for ((i = ${log_lines_shown[$name]:-0}; i < ${#lines[@]}; i++)); do
    printf '      [%s log] %s\n' "$name" "${lines[i]}"
  done
  log_lines_shown[$name]=${#lines[@]}
}
log_has() { local out; out=$(podman logs "$tag-$1" 2>&1) && grep -q -- "$2" <<<"$out"; }
# Waits (up to $3 seconds, default 60) for container $1 to log a line matching $2, then shows what
# it logged since the last look.
await_log() {
  wait_for "${3:-60}" log_has "$1" "$2" || fail "$1 never logged '$2'"
  show_log "$1"
}

if $two_hosts; then where="host B is a network namespace joined to this machine (host A) by a veth link"
else where="both hosts are this machine, over loopback"; fi
cat <<INTRO
amb demo: the ambassador pattern with etcd ($where).
  A client should not have to know where the service it uses runs. It talks to a local port; an
  ambassador on that port forwards each connection to wherever the service really is. After
  CoreOS's 2014 demo ("Dynamic Docker links with an ambassador powered by etcd"):
  Host A runs redis in a container and docker-register, which writes redis's published address
  into etcd under /services/redis-A/. Host B runs dynamic-etcd-amb, which watches that key and
  forwards the redis client's connections to whatever instances are registered.
  Lines in [brackets] are the programs' own log lines, shown as they happen.
INTRO

step "Checking the tools and images"
need podman podman
need runc runc
need etcd etcd-server
need etcdctl etcd-client
need redis-cli redis-tools
need python3 python3
for image in simple-amb docker-register dynamic-etcd-amb; do
  podman image exists "localhost/amb/$image:latest" || fail "image amb/$image is missing: run 'make images' first"
done
tools/make-redis-image.sh || fail "could not make the redis image"
say "images: amb/simple-amb, amb/docker-register, amb/dynamic-etcd-amb, amb/redis (all local)"

if $two_hosts; then
  step "Making host B: a network namespace joined to this machine (host A) by a veth pair only"
  need ip iproute2
  [ "$(id -u)" -eq 0 ] || fail "--two-hosts makes a network namespace and a veth pair: run it as root"
  # A /24 no interface here uses yet, 10.213.N.0/24.
  for n in $(seq $(($$ % 200 + 20)) 254) $(seq 20 254); do
    ip -4 addr | grep -q " 10\.213\.$n\." || break
  done
  a_ip="10.213.$n.1"
  b_ip="10.213.$n.2"
  veth_a="ambA$$"
  netns="amb-demo-$$-B"
  ip netns add "$netns" || { netns=""; fail "ip netns add failed"; }
  ip link add "$veth_a" type veth peer name "ambB$$" netns "$netns"
  ip addr add "$a_ip/24" dev "$veth_a"
  ip link set "$veth_a" up
  ip -n "$netns" addr add "$b_ip/24" dev "ambB$$"
  ip -n "$netns" link set "ambB$$" up
  ip -n "$netns" link set lo up
  b_net=(--network "ns:/run/netns/$netns")
  b_cmd=(ip netns exec "$netns")
  b_note="   # on host B"
  say "host A = this machine, $a_ip on $veth_a; host B = namespace $netns, $b_ip"
  say "a command for host B runs inside the namespace: 'ip netns exec $netns COMMAND'"
  show ip -n "$netns" -brief address
else
  a_ip=127.0.0.1
  b_net=(--network host)
  b_cmd=()
  b_note=""
fi

step "Host A: starting etcd, the registry (a host process, temp data dir, free port)"
etcd_port=$(free_port)
peer_port=$(free_port)
etcd_url="http://127.0.0.1:$etcd_port"
client_urls="$etcd_url"
[ "$a_ip" = 127.0.0.1 ] || client_urls="$etcd_url,http://$a_ip:$etcd_port"
etcd --name demo --data-dir "$tmp/etcd" \
  --listen-client-urls "$client_urls" --advertise-client-urls "$client_urls" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "demo=http://127.0.0.1:$peer_port" >"$tmp/etcd.log" 2>&1 &
pids+=("$!:etcd")
wait_for 30 etcdctl --endpoints "$etcd_url" endpoint health || fail "etcd did not become healthy at $etcd_url"
say "etcd is healthy, listening on $client_urls"

step "Host A: starting podman's Docker-compatible API on a socket (what docker-register reads)"
socket="$tmp/api.sock"
podman system service --time=0 "unix://$socket" >"$tmp/podman-service.log" 2>&1 &
pids+=("$!:podman")
wait_for 30 podman --url "unix://$socket" version || fail "podman system service did not answer on $socket"
say "the engine API answers on unix://$socket"

# Starts redis-$1 on host A, published on a host address, and sets redis<N>_port.
start_redis() {
  start_container A "redis-$1" -p "$a_ip::6379" localhost/amb/redis
  wait_for 20 host_port_of "$tag-redis-$1" || fail "redis-$1 has no published port"
  local port
  port=$(host_port_of "$tag-redis-$1")
  wait_for 20 redis-cli -h "$a_ip" -p "$port" PING || fail "redis-$1 does not answer on $a_ip:$port"
  say "podman published redis-$1's port 6379 on $a_ip:$port"
  printf -v "redis$1_port" '%s' "$port"
}
# Starts docker-register for redis-$1 on host A, reaching etcd through host A's simple-amb, and
# shows its log line saying what it registered.
# --engine-wait 3m and up to 200s for its line: on a busy machine podman's API service was seen not
# answering GET /version for over a minute (docker-register says so and asks again meanwhile).
start_register() {
  start_container A "register-$1" --network host -v "$socket:/var/run/docker.sock" \
    -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_port" \
    localhost/amb/docker-register --engine-wait 3m "$tag-redis-$1" 6379 redis-A
  await_log "register-$1" "registered /services/redis-A/$tag-redis-$1 " 200
  wait_for 30 registered "$tag-redis-$1" || fail "redis-$1 was not registered in etcd"
}

step "Host A: starting redis-1 in a container, published on a host address (-p $a_ip::6379)"
start_redis 1

step "Host A: starting simple-amb, a fixed ambassador that forwards to etcd"
etcd_amb_port=$(free_port)
start_container A etcd-amb --network host localhost/amb/simple-amb \
  --listen "127.0.0.1:$etcd_amb_port" "127.0.0.1:$etcd_port"
wait_for 20 etcdctl --endpoints "http://127.0.0.1:$etcd_amb_port" endpoint health ||
  fail "etcd is not reachable through simple-amb on 127.0.0.1:$etcd_amb_port"
show_log etcd-amb
say "etcd answers through simple-amb on 127.0.0.1:$etcd_amb_port"

step "Host A: starting docker-register for redis-1 as service redis-A (etcd reached through the simple-amb)"
say "docker-register finds etcd as the 2014 containers did, from Docker-links variables:"
say "  ETCD_PORT_10000_TCP_ADDR=127.0.0.1, ETCD_PORT_10000_TCP_PORT=$etcd_amb_port"
say "'docker run --link etcd-amb:etcd' once set these: ETCD is the link's alias and 10000 the port"
say "the simple-amb image exposes, so the name says 10000; the values say where that simple-amb"
say "really listens (127.0.0.1:$etcd_amb_port here). podman has no --link, so they are given with -e."
start_register 1
show etcdctl --endpoints "$etcd_url" get --prefix /services/

if $two_hosts; then
  step "Host B: starting simple-amb, host B's own ambassador to etcd on host A ($a_ip:$etcd_port)"
  etcd_amb_b_port=$(free_port)
  start_container B etcd-amb-b "${b_net[@]}" localhost/amb/simple-amb \
    --listen "127.0.0.1:$etcd_amb_b_port" "$a_ip:$etcd_port"
  wait_for 20 on_b etcdctl --endpoints "http://127.0.0.1:$etcd_amb_b_port" endpoint health ||
    fail "etcd is not reachable from host B through its simple-amb on 127.0.0.1:$etcd_amb_b_port"
  show_log etcd-amb-b
  say "from host B, etcd answers through simple-amb on 127.0.0.1:$etcd_amb_b_port"
else
  etcd_amb_b_port=$etcd_amb_port
  say "(one machine: host B shares host A's simple-amb to etcd)"
fi

step "Host B: starting dynamic-etcd-amb for redis-A (the client's ambassador, watching etcd)"
say "it finds etcd through the same ETCD_PORT_10000_TCP_* variables: host B's simple-amb, 127.0.0.1:$etcd_amb_b_port"
amb_port=$(free_port)
start_container B redis-amb "${b_net[@]}" \
  -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_b_port" \
  localhost/amb/dynamic-etcd-amb --listen "127.0.0.1:$amb_port" redis-A "$amb_port"
wait_for 30 via_ambassador PING || fail "no answer through dynamic-etcd-amb on host B's 127.0.0.1:$amb_port"
await_log redis-amb "instance /services/redis-A/$tag-redis-1 added"
say "the client only knows 127.0.0.1:$amb_port; the ambassador finds redis-A in etcd"

step "Host B: the redis client, through the ambassador"
ask PING
[ "$reply" = PONG ] || fail "expected PONG, got '$reply'"
ask SET greeting "hello through the ambassador"
ask GET greeting
[ "$reply" = "hello through the ambassador" ] || fail "GET greeting gave '$reply'"

step "Beyond CoreOS's 2014 demo: a second redis instance on host A, registered under the same service"
start_redis 2
start_register 2
await_log redis-amb "instance /services/redis-A/$tag-redis-2 added"
show etcdctl --endpoints "$etcd_url" get --prefix /services/

step "Balancing: each new connection goes to the next instance (round-robin)"
say "redis-1 and redis-2 are two independent servers, not replicas: each holds its own data, and"
say "nothing copies it between them (an ambassador spreads connections; it does not copy data)."
say "The greeting above is on one of them only. To show who serves each connection, each gets a"
say "different value for the same key, set directly on its own port:"
show redis-cli -h "$a_ip" -p "$redis1_port" SET served_by redis-1
show redis-cli -h "$a_ip" -p "$redis2_port" SET served_by redis-2
# The ambassador learns of redis-2 from its watch a moment after etcd has it.
served_by_redis_2() {
  local i
  for i in 1 2 3 4; do
    [ "$(via_ambassador GET served_by)" = redis-2 ] && return 0
  done
  return 1
}
wait_for 20 served_by_redis_2 || fail "redis-2 never served a connection through the ambassador"
printf '    $ %s   # %ssix times, each run a new connection\n' \
  "$(shell_line "${b_cmd[@]}" redis-cli -h 127.0.0.1 -p "$amb_port" GET served_by)" "${netns:+on host B; }"
seen=""
for i in 1 2 3 4 5 6; do
  who=$(via_ambassador GET served_by)
  printf '    connection %d: served by %s\n' "$i" "$who"
  seen="$seen $who"
done
[[ "$seen" == *redis-1* && "$seen" == *redis-2* ]] || fail "connections were not spread over both instances:$seen"

step "Failover: stopping redis-1; docker-register removes its key, the client is still served"
show podman stop -t 2 "$tag-redis-1"
await_log register-1 "removed"
wait_for 30 not_registered "$tag-redis-1" || fail "redis-1's key is still in etcd after it stopped"
await_log redis-amb "instance /services/redis-A/$tag-redis-1 removed"
show etcdctl --endpoints "$etcd_url" get --prefix /services/
for i in 1 2 3 4; do
  who=$(via_ambassador GET served_by) || fail "connection $i through the ambassador failed after redis-1 stopped"
  printf '    connection %d: served by %s\n' "$i" "$who"
  [ "$who" = redis-2 ] || fail "connection $i was served by '$who', expected redis-2"
done
ask PING
[ "$reply" = PONG ] || fail "expected PONG after failover, got '$reply'"

step "A dead instance: registered by hand, nothing listening; the ambassador ejects it"
dead_port=$(free_port)
dead_key=/services/redis-A/by-hand-dead
say "a key written with etcdctl counts as much as one docker-register wrote; this one points at"
say "$a_ip:$dead_port, where nothing listens, so every connect to it is refused"
show etcdctl --endpoints "$etcd_url" put "$dead_key" "$a_ip:$dead_port"
await_log redis-amb "instance $dead_key added"
say "a refused connect is retried on the next instance (the client sees nothing); three in a row"
say "eject the instance for 10 s (--max-fails, --fail-timeout)"
for i in 1 2 3 4 5 6 7 8 9 10; do
  who=$(via_ambassador GET served_by) || fail "connection $i through the ambassador failed with a dead instance registered"
  printf '    connection %d: served by %s\n' "$i" "$who"
  [ "$who" = redis-2 ] || fail "connection $i was served by '$who', expected redis-2"
  log_has redis-amb "instance $dead_key .*ejected" && break
done
await_log redis-amb "instance $dead_key .*ejected"
show etcdctl --endpoints "$etcd_url" del "$dead_key"
await_log redis-amb "instance $dead_key removed"

current_step="done"
# Prints the commands to explore what --keep left running (the clean-up handler calls it).
explore() {
  local etcd_b="http://127.0.0.1:$etcd_amb_b_port" b_etcdctl b_cli
  b_etcdctl=$(shell_line "${b_cmd[@]}" etcdctl --endpoints "$etcd_b")
  b_cli=$(shell_line "${b_cmd[@]}" redis-cli -h 127.0.0.1 -p "$amb_port")
  printf '\n%s==> Still running (--keep): explore by hand%s\n' "$bold" "$plain"
  say "etcd (PID ${pids[0]%%:*}), podman's API service (PID ${pids[1]%%:*}) and these containers run on:"
  local c
  for c in "${containers[@]}"; do say "  $c"; done
  say "In a second terminal, watch the ambassador's log as it follows etcd (Ctrl-C stops the watching only):"
  say "  $(shell_line env CONTAINERS_CONF="$CONTAINERS_CONF" podman logs -f "$tag-redis-amb")"
  say "Then paste the lines below into a shell, one at a time or all at once (comments included)."
  [ -z "$netns" ] || say "Those starting with 'ip netns exec $netns' run on host B, as root."
  echo
  cat <<EXPLORE
# <explore>
export CONTAINERS_CONF=$(shell_word "$CONTAINERS_CONF") ETCDCTL_API=3
# What etcd holds, read the way host B's ambassador reads it:
$b_etcdctl get --prefix /services/
# Register an instance by hand (redis-2 a second time): the ambassador logs "instance ... added".
$b_etcdctl put /services/redis-A/by-hand '{"host":"$a_ip","port":$redis2_port}'
# The client through the ambassador; each run is a new connection, given to the next instance:
$b_cli GET served_by
# Delete that key: the ambassador logs "instance ... removed".
$b_etcdctl del /services/redis-A/by-hand
# Start redis-1 again: its docker-register (still running) writes its key again, with the port podman
# gives it now. It is a new, empty redis: set its served_by again, directly on its own port.
podman start $tag-redis-1
podman logs $tag-register-1
redis-cli -h $a_ip -p "\$(podman port $tag-redis-1 6379/tcp | sed 's/.*://')" SET served_by redis-1
$b_cli GET served_by
# Stop redis-2: its docker-register removes its key, and every connection goes to redis-1.
podman stop -t 2 $tag-redis-2
$b_cli GET served_by
# When done: remove everything the demo started (containers, etcd, podman's API service${netns:+, host B}).
$tmp/clean-up.sh
# </explore>
EXPLORE
  echo
  printf '%sdemo: all steps passed; everything is still running (clean up with %s)%s\n' "$bold" "$tmp/clean-up.sh" "$plain"
}
