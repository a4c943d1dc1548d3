#!/usr/bin/env bash
# The seed's demo on one machine, with podman and the images `make images` builds: etcd, redis
# registered by docker-register (reaching etcd through a simple-amb), and a redis client served
# through dynamic-etcd-amb. Then beyond the seed: a second redis, balancing, and failover.
#
# Usage: tools/demo.sh        (run `make demo` for the set-up: packages and images)
# Everything it starts (etcd, podman's API service, containers named amb-demo-<pid>-*) is
# stopped on exit, also on Ctrl-C. Exits non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/podman/containers.conf}"
export ETCDCTL_API=3
tag="amb-demo-$$"
tmp=$(mktemp -d /tmp/amb-demo-XXXXXX)
containers=()
pids=()
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
  if [ "$status" -ne 0 ]; then
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
via_ambassador() { redis-cli -h 127.0.0.1 -p "$amb_port" "$@"; }
host_port_of() { podman port "$1" 6379/tcp | head -n 1 | sed 's/.*://'; }

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

step "Starting etcd, the registry (a host process on a free loopback port)"
etcd_port=$(free_port)
peer_port=$(free_port)
etcd_url="http://127.0.0.1:$etcd_port"
etcd --name demo --data-dir "$tmp/etcd" \
  --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "demo=http://127.0.0.1:$peer_port" >"$tmp/etcd.log" 2>&1 &
pids+=($!)
wait_for 30 etcdctl --endpoints "$etcd_url" endpoint health || fail "etcd did not become healthy at $etcd_url"
say "etcd is healthy at $etcd_url"

step "Starting podman's Docker-compatible API on a socket (what docker-register reads)"
socket="$tmp/api.sock"
podman system service --time=0 "unix://$socket" >"$tmp/podman-service.log" 2>&1 &
pids+=($!)
wait_for 30 podman --url "unix://$socket" version || fail "podman system service did not answer on $socket"
say "the engine API answers on unix://$socket"

step "Host A: starting redis-1 in a container, published on a host address (-p 127.0.0.1::6379)"
start_container redis-1 -p 127.0.0.1::6379 localhost/amb/redis
wait_for 20 host_port_of "$tag-redis-1" || fail "redis-1 has no published port"
redis1_port=$(host_port_of "$tag-redis-1")
wait_for 20 redis-cli -p "$redis1_port" PING || fail "redis-1 does not answer on 127.0.0.1:$redis1_port"
say "podman published redis-1's port 6379 on 127.0.0.1:$redis1_port"

step "Host A: starting simple-amb, a fixed ambassador that forwards to etcd"
etcd_amb_port=$(free_port)
start_container etcd-amb --network host localhost/amb/simple-amb \
  --listen "127.0.0.1:$etcd_amb_port" "127.0.0.1:$etcd_port"
wait_for 20 etcdctl --endpoints "http://127.0.0.1:$etcd_amb_port" endpoint health ||
  fail "etcd is not reachable through simple-amb on 127.0.0.1:$etcd_amb_port"
say "etcd answers through simple-amb on 127.0.0.1:$etcd_amb_port"

step "Host A: starting docker-register for redis-1 as service redis-A (etcd reached through the simple-amb)"
say "podman has no --link, so the seed's Docker-links variables are given with -e"
start_container register-1 --network host -v "$socket:/var/run/docker.sock" \
  -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_port" \
  localhost/amb/docker-register "$tag-redis-1" 6379 redis-A
wait_for 30 registered "$tag-redis-1" || fail "redis-1 was not registered in etcd"
show etcdctl --endpoints "$etcd_url" get --prefix /services/

step "Host B: starting dynamic-etcd-amb for redis-A (the client's ambassador, watching etcd)"
amb_port=$(free_port)
start_container redis-amb --network host \
  -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_port" \
  localhost/amb/dynamic-etcd-amb --listen "127.0.0.1:$amb_port" redis-A "$amb_port"
wait_for 30 via_ambassador PING || fail "no answer through dynamic-etcd-amb on 127.0.0.1:$amb_port"
say "the client only knows 127.0.0.1:$amb_port; the ambassador finds redis-A in etcd"

step "Host B: the redis client, through the ambassador"
pong=$(via_ambassador PING)
printf '    $ redis-cli -p %s PING\n      %s\n' "$amb_port" "$pong"
[ "$pong" = PONG ] || fail "expected PONG, got '$pong'"
show redis-cli -p "$amb_port" SET greeting "hello from the seed's demo"
got=$(via_ambassador GET greeting)
printf '    $ redis-cli -p %s GET greeting\n      %s\n' "$amb_port" "$got"
[ "$got" = "hello from the seed's demo" ] || fail "GET greeting gave '$got'"

step "Beyond the seed: a second redis instance, registered under the same service"
start_container redis-2 -p 127.0.0.1::6379 localhost/amb/redis
wait_for 20 host_port_of "$tag-redis-2" || fail "redis-2 has no published port"
redis2_port=$(host_port_of "$tag-redis-2")
wait_for 20 redis-cli -p "$redis2_port" PING || fail "redis-2 does not answer on 127.0.0.1:$redis2_port"
start_container register-2 --network host -v "$socket:/var/run/docker.sock" \
  -e ETCD_PORT_10000_TCP_ADDR=127.0.0.1 -e "ETCD_PORT_10000_TCP_PORT=$etcd_amb_port" \
  localhost/amb/docker-register "$tag-redis-2" 6379 redis-A
wait_for 30 registered "$tag-redis-2" || fail "redis-2 was not registered in etcd"
show etcdctl --endpoints "$etcd_url" get --prefix /services/

step "Balancing: each new connection goes to the next instance (round-robin)"
say "each redis gets a key naming itself, set directly on its own port"
redis-cli -p "$redis1_port" SET served_by redis-1 >/dev/null
redis-cli -p "$redis2_port" SET served_by redis-2 >/dev/null
# The ambassador learns of redis-2 from its watch a moment after etcd has it.
wait_for 20 bash -c "for i in 1 2 3 4; do redis-cli -p $amb_port GET served_by; done | grep -q redis-2" ||
  fail "redis-2 never served a connection through the ambassador"
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
printf '    $ redis-cli -p %s PING\n      %s\n' "$amb_port" "$pong"
[ "$pong" = PONG ] || fail "expected PONG after failover, got '$pong'"
current_step="done"
