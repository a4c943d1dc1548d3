#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The seed's demo on one machine, with podman and the images `make images` builds: etcd, redis
# registered by docker-register (reaching etcd through a simple-amb), and a redis client served
# through dynamic-etcd-amb. Then beyond the seed: a second redis, balancing, and failover.
#
# Usage: tools/demo.sh [--two-hosts]   (`make demo` / `make demo-two-hosts` do the set-up first)
#
# One host (default): every part on this machine, over loopback.
# --two-hosts (root): host B is a network namespace this script makes, joined to this machine
# (host A) by a veth pair only: etcd, redis and docker-register on A; a simple-amb to etcd,
# dynamic-etcd-amb and the redis client on B, which reaches A only over the veth link.
#
# Everything it starts (etcd, podman's API service, containers named amb-demo-<pid>-*, the
# namespace and veth pair) is removed on exit, also on Ctrl-C. Exits non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

two_hosts=false
case "${1:-}" in
  "") ;;
  --two-hosts) two_hosts=true ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo: unknown argument '$1' (usage: tools/demo.sh [--two-hosts])" >&2; exit 2 ;;
esac

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"
export ETCDCTL_API=3
tag="amb-demo-$$"
tmp=$(mktemp -d /tmp/amb-demo-XXXXXX)
containers=()
pids=()
netns=""
current_step="set-up"

bold=$'\e[1m' plain=$'\e[0m'
[ -t 1 ] || { bold=""; plain=""; }
step() { current_step="$*"; printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '    %s\n' "$*"; }
# Shows a command, then runs it with its output indented.
show() {
  printf '    $ %s\n' "$*"
  "$@" 2>&1 | sed 's/^/      /'
}
fail() {
  echo "demo: FAILED at step \"$current_step\": $*" >&2
  exit 1
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
  printf '\n%s==> Cleaning up%s\n' "$bold" "$plain"
  for c in "${containers[@]}"; do
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if [ -n "$netns" ]; then
    # Deleting the namespace deletes its end of the veth pair, and with it the pair.
    ip netns del "$netns" 2>/dev/null || true
    ip link del "$veth_a" 2>/dev/null || true
    say "removed network namespace $netns (host B) and its veth link"
  fi
  rm -rf "$tmp"
  say "removed ${#containers[@]} containers, stopped ${#pids[@]} processes"
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
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
need() {
  command -v "$1" >/dev/null || fail "$1 is missing (run 'make demo', or apt-get install $2)"
}
# Runs a detached container named $tag-$1 (tracked for clean-up); the rest are podman run arguments.
start_container() {
  local name="$tag-$1"
  shift
  containers+=("$name")
  printf '    $ podman run -d --name %s %s\n' "$name" "$*"
  podman run -d --name "$name" "$@" >/dev/null || fail "podman run $name failed"
}
etcd_keys() { etcdctl --endpoints "$etcd_url" get --prefix /services/; }
# Whole output first, then grep: a pipe into grep -q could cut etcdctl short.
registered() { local keys; keys=$(etcd_keys) && grep -q -- "$1" <<<"$keys"; }
not_registered() { local keys; keys=$(etcd_keys) && ! grep -q -- "$1" <<<"$keys"; }
# Runs a command on host B: inside its namespace with --two-hosts, else right here.
on_b() { if [ -n "$netns" ]; then ip netns exec "$netns" "$@"; else "$@"; fi; }
via_ambassador() { on_b redis-cli -h 127.0.0.1 -p "$amb_port" "$@"; }
host_port_of() { podman port "$1" 6379/tcp | head -n 1 | sed 's/.*://'; }

if $two_hosts; then where="host B is a network namespace joined to this machine (host A) by a veth link"
else where="both hosts are this machine, over loopback"; fi
cat <<INTRO
amb demo: the ambassador pattern with etcd ($where).
  Host A runs redis in a container and docker-register, which writes redis's published address
  into etcd under /services/redis-A/. Host B runs dynamic-etcd-amb, which watches that key and
  forwards the redis client's connections to whatever instances are registered.
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
  b_prompt="(host B) "
  say "host A = this machine, $a_ip on $veth_a; host B = namespace $netns, $b_ip"
  show ip -n "$netns" -brief address
else
  a_ip=127.0.0.1
  b_net=(--network host)
  b_prompt=""
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
pids+=($!)
wait_for 30 etcdctl --endpoints "$etcd_url" endpoint health || fail "etcd did not become healthy at $etcd_url"
say "etcd is healthy, listening on $client_urls"

step "Host A: starting podman's Docker-compatible API on a socket (what docker-register reads)"
socket="$tmp/api.sock"
podman system service --time=0 "unix://$socket" >"$tmp/podman-service.log" 2>&1 &
pids+=($!)
wait_for 30 podman --url "unix://$socket" version || fail "podman system service did not answer on $socket"
say "the engine API answers on unix://$socket"

# Starts redis-$1 on host A, published on a host address, and sets redis<N>_port.
start_redis() {
  start_container "redis-$1" -p "$a_ip::6379" localhost/amb/redis
  wait_for 20 host_port_of "$tag-redis-$1" || fail "redis-$1 has no published port"
  local port
  port=$(host_port_of "$tag-redis-$1")
  wait_for 20 redis-cli -h "$a_ip" -p "$port" PING || fail "redis-$1 does not answer on $a_ip:$port"
  say "podman published redis-$1's port 6379 on $a_ip:$port"
  printf -v "redis$1_port" '%s' "$port"
}
# Starts docker-register for redis-$1 on host A, reaching etcd through host A's simple-amb.
start_register() {
  start_container "register-$1" --network host -v "$socket:/var/run/docker.sock" \
    -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_port" \
    localhost/amb/docker-register "$tag-redis-$1" 6379 redis-A
  wait_for 30 registered "$tag-redis-$1" || fail "redis-$1 was not registered in etcd"
}

step "Host A: starting redis-1 in a container, published on a host address (-p $a_ip::6379)"
start_redis 1

step "Host A: starting simple-amb, a fixed ambassador that forwards to etcd"
etcd_amb_port=$(free_port)
start_container etcd-amb --network host localhost/amb/simple-amb \
  --listen "127.0.0.1:$etcd_amb_port" "127.0.0.1:$etcd_port"
wait_for 20 etcdctl --endpoints "http://127.0.0.1:$etcd_amb_port" endpoint health ||
  fail "etcd is not reachable through simple-amb on 127.0.0.1:$etcd_amb_port"
say "etcd answers through simple-amb on 127.0.0.1:$etcd_amb_port"

step "Host A: starting docker-register for redis-1 as service redis-A (etcd reached through the simple-amb)"
say "podman has no --link, so the seed's Docker-links variables are given with -e"
start_register 1
show etcdctl --endpoints "$etcd_url" get --prefix /services/

if $two_hosts; then
  step "Host B: starting simple-amb, host B's own ambassador to etcd on host A ($a_ip:$etcd_port)"
  etcd_amb_b_port=$(free_port)
  start_container etcd-amb-b "${b_net[@]}" localhost/amb/simple-amb \
    --listen "127.0.0.1:$etcd_amb_b_port" "$a_ip:$etcd_port"
  wait_for 20 on_b etcdctl --endpoints "http://127.0.0.1:$etcd_amb_b_port" endpoint health ||
    fail "etcd is not reachable from host B through its simple-amb on 127.0.0.1:$etcd_amb_b_port"
  say "from host B, etcd answers through simple-amb on 127.0.0.1:$etcd_amb_b_port"
else
  etcd_amb_b_port=$etcd_amb_port
  say "(one machine: host B shares host A's simple-amb to etcd)"
fi

step "Host B: starting dynamic-etcd-amb for redis-A (the client's ambassador, watching etcd)"
amb_port=$(free_port)
start_container redis-amb "${b_net[@]}" \
  -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_b_port" \
  localhost/amb/dynamic-etcd-amb --listen "127.0.0.1:$amb_port" redis-A "$amb_port"
wait_for 30 via_ambassador PING || fail "no answer through dynamic-etcd-amb on host B's 127.0.0.1:$amb_port"
say "the client only knows 127.0.0.1:$amb_port; the ambassador finds redis-A in etcd"

step "Host B: the redis client, through the ambassador"
pong=$(via_ambassador PING)
printf '    %s$ redis-cli -p %s PING\n      %s\n' "$b_prompt" "$amb_port" "$pong"
[ "$pong" = PONG ] || fail "expected PONG, got '$pong'"
printf '    %s$ redis-cli -p %s SET greeting "hello from the seed'"'"'s demo"\n' "$b_prompt" "$amb_port"
via_ambassador SET greeting "hello from the seed's demo" | sed 's/^/      /'
got=$(via_ambassador GET greeting)
printf '    %s$ redis-cli -p %s GET greeting\n      %s\n' "$b_prompt" "$amb_port" "$got"
[ "$got" = "hello from the seed's demo" ] || fail "GET greeting gave '$got'"

step "Beyond the seed: a second redis instance on host A, registered under the same service"
start_redis 2
start_register 2
show etcdctl --endpoints "$etcd_url" get --prefix /services/

step "Balancing: each new connection goes to the next instance (round-robin)"
say "each redis gets a key naming itself, set directly on its own port"
redis-cli -h "$a_ip" -p "$redis1_port" SET served_by redis-1 >/dev/null
redis-cli -h "$a_ip" -p "$redis2_port" SET served_by redis-2 >/dev/null
# The ambassador learns of redis-2 from its watch a moment after etcd has it.
served_by_redis_2() {
  local i
  for i in 1 2 3 4; do
    [ "$(via_ambassador GET served_by)" = redis-2 ] && return 0
  done
  return 1
}
wait_for 20 served_by_redis_2 || fail "redis-2 never served a connection through the ambassador"
seen=""
for i in 1 2 3 4 5 6; do
  who=$(via_ambassador GET served_by)
  printf '    connection %d: served by %s\n' "$i" "$who"
  seen="$seen $who"
done
[[ "$seen" == *redis-1* && "$seen" == *redis-2* ]] || fail "connections were not spread over both instances:$seen"

step "Failover: stopping redis-1; docker-register removes its key, the client is still served"
show podman stop -t 2 "$tag-redis-1"
wait_for 30 not_registered "$tag-redis-1" || fail "redis-1's key is still in etcd after it stopped"
show etcdctl --endpoints "$etcd_url" get --prefix /services/
for i in 1 2 3 4; do
  who=$(via_ambassador GET served_by) || fail "connection $i through the ambassador failed after redis-1 stopped"
  printf '    connection %d: served by %s\n' "$i" "$who"
  [ "$who" = redis-2 ] || fail "connection $i was served by '$who', expected redis-2"
done
pong=$(via_ambassador PING)
printf '    %s$ redis-cli -p %s PING\n      %s\n' "$b_prompt" "$amb_port" "$pong"
[ "$pong" = PONG ] || fail "expected PONG after failover, got '$pong'"
current_step="done"
