#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Side-by-side benchmark of amb's ambassadors and their peers on loopback (issue 7).

Starts redis-server, iperf3 -s and a temporary etcd on free loopback ports, then each proxy that is
installed (simple-amb, dynamic-etcd-amb, haproxy tcp mode with 1/2 threads with and without splice,
socat fork, nginx stream, rinetd), and measures, interleaved over several repetitions:
redis-benchmark GET/SET -c 50 (plain and -P 16), connection churn (-k 0), iperf3 1 and 4 streams,
CPU of the proxy per request / connection / GB, syscalls of the proxy per request / connection / MB
(strace -c, in an untimed pass of its own), PSS idle and with N idle live connections, and the
control plane (etcd put -> first connection on the new instance). The throughput rows run in a
shared mode (every process on every CPU) and a pinned one (each proxy alone on CPU 1, everything
else on CPU 0, with taskset). Prints one table per row kind: medians, the ratio to the direct
connection, the spread between repetitions. Every process it starts is stopped by PID.

Usage: bench/run_bench.py [--quick] [--reps N] [--mode shared|pinned|both] [--bin DIR] [--only a,b] [--markdown FILE]
"""
import argparse
import base64
import fcntl
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# ---------------------------------------------------------------- processes


class Procs:
    """Every process the benchmark started, stopped by PID (never by name), also on failure."""

    def __init__(self):
        self.live = []

    def start(self, argv, log, **kw):
        f = open(log, "ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        f.close()
        p.log = log
        self.live.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                # The session holds the proxy and its children (nginx workers, socat forks).
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            try:  # children of a dead leader (socat forks) may still be around
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(reversed(self.live)):
            self.stop(p)


PROCS = Procs()


PORT_CLAIMS = []  # the open files whose locks claim the ports this run drew (claim_port)


def claim_port(port):
    """Claims `port` among the processes that draw ports from 20000-32767 at once (amb's tests do the
    same, tests/support/process.hpp: make test runs this script beside them): an exclusive flock(2) on
    a file named after the port in a folder they all share, held until this script ends. False when
    another process holds it: it gave the port to a server that may not have bound it yet."""
    folder = os.path.join(os.environ.get("TMPDIR") or "/tmp", "amb-test-ports")
    os.makedirs(folder, exist_ok=True)
    f = open(os.path.join(folder, str(port)), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    PORT_CLAIMS.append(f)
    return True


def bind_free_port(sock):
    """Binds `sock` to 127.0.0.1 and a random free port in 20000-32767 that no other process claimed
    (claim_port); returns the port. Below the kernel's ephemeral range (32768-60999 here): no outgoing
    connection (from a proxy under test, say) can take it before the server binds it, and podman's DNAT
    rules for the host ports it publishes (from that range) cannot catch connections meant for it."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        if not claim_port(port):
            continue
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port in 20000-32767 on 127.0.0.1")


def free_port():
    """A free port for a server that binds it itself (see bind_free_port)."""
    with socket.socket() as s:
        return bind_free_port(s)


def prog(proc):
    """The program a process runs, behind taskset when pinned."""
    argv = proc.args
    return argv[3] if argv[0] == "taskset" and len(argv) > 3 else argv[0]


def pin(cpus, argv):
    """argv run on the CPUs `cpus` (taskset's list, e.g. "1"), all its threads and children; argv as is when None."""
    return ["taskset", "-c", cpus] + argv if cpus else argv


def wait_port(port, proc=None, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{prog(proc)} exited with {proc.returncode}; see {proc.log}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def redis_ping(port, timeout=5.0):
    """One PING end to end through whatever listens on port; True on +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_ping(port, proc=None, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{prog(proc)} exited with {proc.returncode}; see {proc.log}")
        if redis_ping(port, 1.0):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no PONG through 127.0.0.1:{port} after {timeout}s")


# ---------------------------------------------------------------- /proc accounting


def tree_pids(root):
    """root and all its live descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(root, user_only=False):
    """utime+stime of the proxy's live process tree, plus what its reaped children used (socat forks);
    with user_only, utime (+cutime) alone: the part of the proxy's CPU that is its own code, not the kernel's."""
    total = 0
    for p in tree_pids(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14..17.
        total += int(fields[11]) + (0 if user_only else int(fields[12]))
        if p == root:
            total += int(fields[13]) + (0 if user_only else int(fields[14]))
    return total / CLK_TCK


# What a Release program of `make bench` may load: libc and the dynamic loader. libstdc++, libgcc
# and libm are linked in (examples/CMakeLists.txt): each shared library a program maps adds its
# pages to the program's idle PSS, and few other processes on a host share libstdc++'s or libm's.
RELEASE_LIBRARIES = {"libc.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}


def shared_libraries(program):
    """The DT_NEEDED entries of `program`, as readelf -d lists them."""
    out = subprocess.run(["readelf", "-d", program], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def pss_kb(root):
    total = 0
    for p in tree_pids(root):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- servers


class Env:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="amb-bench-")
        self.redis_port = free_port()
        self.iperf_port = free_port()
        self.etcd_port = free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        # Pinned mode (set_mode): the proxy under test on proxy_cpus, everything else on other_cpus.
        self.mode = "shared"
        self.proxy_cpus = None
        self.other_cpus = None
        self.etcd = None

    def set_mode(self, mode, cpus):
        """shared: every process may run on every CPU in `cpus`; pinned: the proxies started from now
        on run on cpus[1], the servers (moved now, all their threads), the load generators and this
        script on cpus[0]."""
        if mode == self.mode:
            return
        self.mode = mode
        if mode == "pinned":
            self.proxy_cpus, self.other_cpus = str(cpus[1]), str(cpus[0])
            servers_cpus = self.other_cpus
            os.sched_setaffinity(0, {cpus[0]})
        else:
            self.proxy_cpus = self.other_cpus = None
            servers_cpus = ",".join(map(str, cpus))
            os.sched_setaffinity(0, set(cpus))
        for p in (self.redis, self.iperf, self.etcd):
            if p is not None:
                subprocess.run(["taskset", "-a", "-p", "-c", servers_cpus, str(p.pid)], check=True,
                               stdout=subprocess.DEVNULL)

    def load(self, argv):
        """A load generator's argv, pinned off the proxy's CPU in pinned mode."""
        return pin(self.other_cpus, argv)

    def log(self, name):
        return os.path.join(self.tmp, name + ".log")

    def start_servers(self):
        self.redis = PROCS.start(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--maxclients", "20000",
                                  "--dir", self.tmp], self.log("redis"))
        wait_ping(self.redis_port, self.redis)
        self.start_iperf()
        if shutil.which("etcd") and self.args.bin_dyn:
            peer = free_port()
            self.etcd = PROCS.start(["etcd", "--name=bench", f"--data-dir={self.tmp}/etcd",
                                     f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
                                     f"--listen-peer-urls=http://127.0.0.1:{peer}",
                                     f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                                     f"--initial-cluster=bench=http://127.0.0.1:{peer}"], self.log("etcd"))
            end = time.time() + 20
            while True:
                try:
                    self.etcd_put("/bench/ready", "1")
                    break
                except OSError:
                    if time.time() > end or self.etcd.poll() is not None:
                        raise RuntimeError(f"etcd did not come up on {self.etcd_url}; see {self.etcd.log}")
                    time.sleep(0.1)

    def start_iperf(self):
        self.iperf = PROCS.start(pin(self.other_cpus, ["iperf3", "-s", "-p", str(self.iperf_port), "-B", "127.0.0.1"]),
                                 self.log("iperf3"))
        wait_port(self.iperf_port, self.iperf)

    def restart_iperf(self):
        PROCS.stop(self.iperf)
        self.start_iperf()

    def etcd_put(self, key, value):
        """A put through etcd's v3 JSON gateway (what etcdctl put does, without etcdctl's start-up time)."""
        body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                           "value": base64.b64encode(value.encode()).decode()}).encode()
        req = urllib.request.Request(self.etcd_url + "/v3/kv/put", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()


# ---------------------------------------------------------------- proxies


class Proxy:
    """One proxy kind: start(target_port) -> (process, listen_port)."""

    def __init__(self, name, start):
        self.name = name
        self.start = start


def proxies(env):
    a = env.args
    out = [Proxy("direct", None)]

    def start_proxy(argv, log):
        return PROCS.start(pin(env.proxy_cpus, argv), log)  # on its own CPU in pinned mode

    def simple(t):
        port = free_port()
        p = start_proxy([a.bin_simple, "--log-level", "warn", "--listen", f"127.0.0.1:{port}",
                         f"127.0.0.1:{t}"], env.log("simple-amb"))
        return p, port

    if a.bin_simple:
        out.append(Proxy("simple-amb", simple))

    def dyn(t, threads=1):
        port = free_port()
        service = f"bench-{t}"
        env.etcd_put(f"/services/{service}/i1", f"127.0.0.1:{t}")
        extra = ["--threads", str(threads)] if threads > 1 else []
        p = start_proxy([a.bin_dyn, "--log-level", "warn", "--etcd", env.etcd_url, "--listen",
                         f"127.0.0.1:{port}"] + extra + [service, str(port)], env.log("dynamic-etcd-amb"))
        return p, port

    if a.bin_dyn and shutil.which("etcd"):
        out.append(Proxy("dyn-etcd-amb", dyn))

    def with_bin(start, binary, attr):
        def s(t):
            saved = getattr(a, attr)
            setattr(a, attr, binary)
            try:
                return start(t)
            finally:
                setattr(a, attr, saved)
        return s

    if a.compare:  # the same programs from another build, e.g. before a change
        old_simple = shutil.which(os.path.join(a.compare, "simple-amb"))
        old_dyn = shutil.which(os.path.join(a.compare, "dynamic-etcd-amb"))
        if old_simple:
            out.append(Proxy("simple-amb(cmp)", with_bin(simple, old_simple, "bin_simple")))
        if old_dyn and shutil.which("etcd"):
            out.append(Proxy("dyn-etcd-amb(cmp)", with_bin(dyn, old_dyn, "bin_dyn")))

    if a.threads > 1 and a.bin_simple:
        def simple_threads(t):
            port = free_port()
            p = start_proxy([a.bin_simple, "--log-level", "warn", "--threads", str(a.threads), "--listen",
                             f"127.0.0.1:{port}", f"127.0.0.1:{t}"], env.log("simple-amb-threads"))
            return p, port
        out.append(Proxy(f"simple-amb{a.threads}t", simple_threads))
    if a.threads > 1 and a.bin_dyn and shutil.which("etcd"):
        out.append(Proxy(f"dyn-etcd-amb{a.threads}t", lambda t: dyn(t, a.threads)))

    def haproxy(threads, splice):
        def start(t):
            port = free_port()
            cfg = os.path.join(env.tmp, f"haproxy-{threads}-{splice}-{port}.cfg")
            with open(cfg, "w") as f:
                f.write(f"""global
    nbthread {threads}
    maxconn {max(6000, a.conns + 100)}
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    {'option splice-auto' if splice else 'no option splice-auto'}
    {'option splice-request' if splice else 'no option splice-request'}
    {'option splice-response' if splice else 'no option splice-response'}
listen bench
    bind 127.0.0.1:{port}
    server s1 127.0.0.1:{t}
""")
            p = start_proxy(["haproxy", "-db", "-f", cfg], env.log("haproxy"))
            return p, port
        return start

    if shutil.which("haproxy"):
        for threads in (1, 2):
            for splice in (False, True):
                out.append(Proxy(f"haproxy{threads}t{'+splice' if splice else ''}", haproxy(threads, splice)))

    def socat(t):
        port = free_port()
        p = start_proxy(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=1024",
                         f"TCP:127.0.0.1:{t}"], env.log("socat"))
        return p, port

    if shutil.which("socat"):
        out.append(Proxy("socat-fork", socat))

    stream_mod = "/usr/lib/nginx/modules/ngx_stream_module.so"

    def nginx(t):
        port = free_port()
        d = os.path.join(env.tmp, f"nginx-{port}")
        os.makedirs(d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(f"""load_module {stream_mod};
daemon off;
worker_processes 1;
worker_rlimit_nofile {3 * a.conns + 1000};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {2 * a.conns + 1000}; }}
stream {{
    server {{ listen 127.0.0.1:{port} backlog=1024; proxy_pass 127.0.0.1:{t}; }}
}}
""")
        p = start_proxy(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")], env.log("nginx"))
        return p, port

    if shutil.which("nginx") and os.path.exists(stream_mod):
        out.append(Proxy("nginx", nginx))

    def rinetd(t):
        port = free_port()
        cfg = os.path.join(env.tmp, f"rinetd-{port}.conf")
        with open(cfg, "w") as f:
            f.write(f"127.0.0.1 {port} 127.0.0.1 {t}\n")
        p = start_proxy(["rinetd", "-f", "-c", cfg], env.log("rinetd"))
        return p, port

    if shutil.which("rinetd"):
        out.append(Proxy("rinetd", rinetd))

    if a.only:
        keep = set(a.only.split(","))
        out = [p for p in out if p.name in keep or p.name == "direct"]
    return out


# ---------------------------------------------------------------- measurements


def redis_bench(port, extra, n, timeout=300, prefix=()):
    """redis-benchmark --csv; returns {test: (rps, p50_ms, p99_ms)}."""
    argv = list(prefix) + ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(n), "--csv"] + extra
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out = {}
    for line in r.stdout.splitlines():
        cells = [c.strip('"') for c in line.split('","')]
        if len(cells) >= 7 and cells[0] != "test":
            try:
                out[cells[0]] = (float(cells[1]), float(cells[4]), float(cells[6]))
            except ValueError:
                pass
    if not out:
        raise RuntimeError(f"{' '.join(argv)}: no results ({r.stderr.strip()[:200]})")
    return out


def iperf(env, port, streams, seconds):
    argv = env.load(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-P", str(streams), "-J",
                     "--connect-timeout", "3000"])
    for attempt in range(2):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 20)
        try:
            j = json.loads(r.stdout)
            return j["end"]["sum_received"]["bits_per_second"] / 1e9, j["end"]["sum_received"]["bytes"]
        except (ValueError, KeyError):
            env.restart_iperf()  # a failed test can leave the server busy
    raise RuntimeError(f"iperf3 through port {port} failed: {r.stdout[-300:]} {r.stderr[-300:]}")


class Load:
    """One throughput row: a load through the proxy, what one unit of work is, and how its CPU and
    syscall figures are scaled. run(env, port, n) -> {"value", "units", and "p50", "p99" for redis}."""

    def __init__(self, key, title, target, run, n, sys_s, value_head, value_fmt, cpu_head, cpu_per, sys_head, sys_per,
                 extra=None):
        self.key, self.title, self.target, self.run, self.extra = key, title, target, run, extra
        self.n = n  # size of the timed run
        self.sys_s = sys_s  # seconds of the untimed strace window (iperf3: of its run)
        self.value_head, self.value_fmt = value_head, value_fmt
        self.cpu_head, self.cpu_per = cpu_head, cpu_per  # cpu_per(cpu_seconds, units)
        self.sys_head, self.sys_per = sys_head, sys_per  # sys_per(syscalls, units)


def loads(skip, quick):
    """The throughput rows, in the order each proxy runs them in a repetition."""
    out = []
    per_req = lambda x, units: x * 1e6 / units  # noqa: E731 — CPU seconds -> µs per request
    per_unit = lambda x, units: x / units  # noqa: E731

    def redis(extra, test):
        def run(env, port, n):
            r = redis_bench(port, extra, n, prefix=env.load([]))
            if test is None:  # churn: -t ping runs PING_INLINE and PING_MBULK; conn/s of the first
                return {"value": list(r.values())[0][0], "units": len(r) * n}
            rps, p50, p99 = r[test]
            return {"value": rps, "p50": p50, "p99": p99, "units": n}
        return run

    window = 0.3 if quick else 1.0
    if "redis" not in skip:
        n_plain, n_pipe = (10000, 50000) if quick else (50000, 300000)
        for t in ("GET", "SET"):
            extra = ["-t", t.lower(), "-c", "50"]
            out.append(Load(f"c50 {t}", f"redis-benchmark -t {t.lower()} -c 50 (no pipelining), {t}", "redis",
                            redis(extra, t), n_plain, window, "req/s", "{:,.0f}", "proxy CPU µs/req", per_req,
                            "syscalls/req", per_unit, extra))
        for t in ("GET", "SET"):
            extra = ["-t", t.lower(), "-c", "50", "-P", "16"]
            out.append(Load(f"P16 {t}", f"redis-benchmark -t {t.lower()} -c 50 -P 16, {t}", "redis",
                            redis(extra, t), n_pipe, window, "req/s", "{:,.0f}", "proxy CPU µs/req", per_req,
                            "syscalls/req", per_unit, extra))
    if "churn" not in skip:
        # 15,000 connections per test (30,000 per repetition, about 3.5 s): with 6,000 a repetition
        # lasted 1.4 s and the repetitions of one proxy spread by 5-26 %, more than the differences
        # between proxies that the churn targets are about.
        extra = ["-t", "ping", "-c", "50", "-k", "0"]
        out.append(Load("churn", "connection churn: redis-benchmark -t ping -c 50 -k 0 (a new connection per request)",
                        "redis", redis(extra, None), 2000 if quick else 15000, 1.5 * window, "conn/s", "{:,.0f}",
                        "proxy CPU µs/conn", per_req, "syscalls/conn", per_unit, extra))
    if "iperf" not in skip:
        def bulk(streams):
            def run(env, port, seconds):
                gbps, nbytes = iperf(env, port, streams, seconds)
                return {"value": gbps, "units": nbytes / 1e9}  # GB
            return run
        for streams in (1, 4):
            out.append(Load(f"iperf {streams}", f"bulk: iperf3 -P {streams} through the proxy, Gbit/s received",
                            "iperf", bulk(streams), 1 if quick else 2, 1, "Gbit/s", "{:.2f}", "proxy CPU s/GB",
                            per_unit, "syscalls/MB", lambda x, gb: x / (gb * 1000)))
    return out


def strace_counts(path):
    """{syscall: calls} from the summary of strace -c."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and re.fullmatch(r"[0-9.]+", parts[0]) and parts[-1] != "total":
                counts[parts[-1]] = int(parts[3])
    return counts


def settle(root, timeout=3.0):
    """Waits (up to timeout) until the per-connection children that root forked (socat's: a fork
    without exec, so the same command line) are gone; long-lived ones (nginx's worker) stay."""
    end = time.time() + timeout
    while time.time() < end:
        kids = [p for p in tree_pids(root) if p != root]
        transient = [p for p in kids if _cmdline(p) == _cmdline(root)]
        if not transient:
            return
        time.sleep(0.05)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def recv_until(s, done=lambda data: False):
    """Reads from socket s until the peer closes or done(all read so far) says the reply is whole."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
        if done(data):
            return data


def redis_bulk_reply_whole(data):
    """True once a redis bulk reply ($LEN\r\n...) has all its bytes."""
    head, _, body = data.partition(b"\r\n")
    return head.startswith(b"$") and len(body) >= int(head[1:])


def redis_commands(port):
    """redis's total_commands_processed (INFO stats), asked directly."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(b"INFO stats\r\n")
        data = recv_until(s, redis_bulk_reply_whole)
    m = re.search(rb"total_commands_processed:(\d+)", data)
    if not m:
        raise RuntimeError(f"no total_commands_processed in redis's INFO: {data[:200]!r}")
    return int(m.group(1))


class StraceError(RuntimeError):
    pass


def strace_attach(env, proc, tag):
    """strace -c -f attached to every process of proc's tree (and so to all their threads, and to the
    children they fork while it runs, such as socat's); returns (strace process, summary file) once
    strace says it is attached."""
    out = os.path.join(env.tmp, f"strace-{tag}.txt")
    pids = tree_pids(proc.pid)
    argv = ["strace", "-c", "-f", "-o", out] + [x for p in pids for x in ("-p", str(p))]
    st = PROCS.start(env.load(argv), env.log(f"strace-{tag}"))
    end = time.time() + 10
    while True:  # "Process N attached" for each (socat's children may have exited meanwhile)
        with open(st.log, errors="replace") as f:
            attached = f.read().count(" attached")
        if attached >= 1 and attached >= sum(os.path.exists(f"/proc/{p}") for p in pids):
            return st, out
        if st.poll() is not None or time.time() > end:
            PROCS.stop(st)
            raise StraceError(f"strace did not attach to {pids}; see {st.log}")
        time.sleep(0.02)


def syscalls_per_unit(env, proc, port, ld, tag):
    """{syscall: calls per unit} of the proxy under ld's load, untimed (ptrace stops the proxy at
    every call). redis rows: redis-benchmark runs with no end; once its connections are up, strace is
    attached for ld.sys_s seconds, and the unit is what happened in that window: the commands redis
    processed (INFO total_commands_processed, read as strace is attached and before it detaches), or
    for churn the connections the proxy accepted; the connections' set-up and tear-down at the ends of
    the run fall outside. iperf3: strace for a whole ld.sys_s-second run, per MB received."""
    settle(proc.pid)  # socat's children of the previous run, on their way out
    if ld.target != "redis":
        st, out = strace_attach(env, proc, tag)
        try:
            r = ld.run(env, port, ld.sys_s)
            settle(proc.pid)
        finally:
            PROCS.stop(st)  # SIGTERM: strace detaches and writes its summary
        counts = strace_counts(out)
        return {c: ld.sys_per(v, r["units"]) for c, v in counts.items()}
    load = PROCS.start(env.load(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", "100000000"] + ld.extra),
                       env.log(f"strace-load-{tag}"))
    try:
        time.sleep(0.2)  # its 50 connections are up
        if load.poll() is not None:
            raise RuntimeError(f"redis-benchmark exited; see {load.log}")
        st, out = strace_attach(env, proc, tag)
        try:
            c0 = redis_commands(env.redis_port)
            time.sleep(ld.sys_s)
            c1 = redis_commands(env.redis_port)
        finally:
            PROCS.stop(st)
        if load.poll() is not None:
            raise RuntimeError(f"redis-benchmark ended inside the window; see {load.log}")
    finally:
        PROCS.stop(load)
    settle(proc.pid)
    counts = strace_counts(out)
    units = counts.get("accept", 0) + counts.get("accept4", 0) if ld.key == "churn" else c1 - c0 - 1
    if units <= 0:
        raise RuntimeError(f"no {'connection' if ld.key == 'churn' else 'request'} in the strace window")
    return {c: ld.sys_per(v, units) for c, v in counts.items()}


def spread(xs):
    """(max - min) / median of the repetitions, in %; None with fewer than 2."""
    if len(xs) < 2 or not statistics.median(xs):
        return None
    return 100 * (max(xs) - min(xs)) / statistics.median(xs)


def throughput(env, kinds, mode, cpus, reps, skip, quick):
    """The throughput rows in one mode (shared or pinned): every proxy's pair (to redis, to iperf3)
    started for this mode, the repetitions interleaved, then the untimed strace pass; returns the
    Markdown tables, one per row, one line per proxy."""
    env.set_mode(mode, cpus)
    lds = loads(skip, quick)
    names = [k.name for k in kinds]
    running = {}
    try:
        # Long-lived proxies: one to redis, one to iperf3 per kind.
        for k in kinds:
            if k.start is None:
                running[k.name] = (None, env.redis_port, None, env.iperf_port)
                continue
            pr, portr = k.start(env.redis_port)
            pi, porti = k.start(env.iperf_port)
            wait_ping(portr, pr)
            wait_port(porti, pi)
            running[k.name] = (pr, portr, pi, porti)

        samples = {}  # (row, what, proxy) -> [values]

        def add(row, what, name, v):
            samples.setdefault((row, what, name), []).append(v)

        t0 = time.time()
        for rep in range(reps):
            order = kinds if rep % 2 == 0 else list(reversed(kinds))  # interleaved, alternating order
            for k in order:
                pr, portr, pi, porti = running[k.name]
                print(f"run_bench: {mode}: rep {rep + 1}/{reps}: {k.name}", file=sys.stderr)
                for ld in lds:
                    proc, port = (pr, portr) if ld.target == "redis" else (pi, porti)
                    c0 = cpu_seconds(proc.pid) if proc else None
                    u0 = cpu_seconds(proc.pid, user_only=True) if proc else None
                    r = ld.run(env, port, ld.n)
                    cpu = cpu_seconds(proc.pid) - c0 if proc else None
                    user = cpu_seconds(proc.pid, user_only=True) - u0 if proc else None
                    for what in ("value", "p50", "p99"):
                        if what in r:
                            add(ld.key, what, k.name, r[what])
                    if cpu is not None:
                        add(ld.key, "cpu", k.name, ld.cpu_per(cpu, r["units"]))
                        add(ld.key, "user", k.name, ld.cpu_per(user, r["units"]))

        t1 = time.time()
        sys_counts = {}  # (row, proxy) -> {syscall: calls per unit}
        if "syscalls" not in skip:
            if not shutil.which("strace"):
                print("run_bench: strace is missing (make bench installs it): no syscall columns", file=sys.stderr)
            else:
                failed = False
                for k in kinds:
                    pr, portr, pi, porti = running[k.name]
                    if pr is None or failed:
                        continue
                    print(f"run_bench: {mode}: syscalls (strace, untimed): {k.name}", file=sys.stderr)
                    for ld in lds:
                        proc, port = (pr, portr) if ld.target == "redis" else (pi, porti)
                        tag = f"{mode}-{k.name}-{ld.key}".replace(" ", "-")
                        try:
                            sys_counts[(ld.key, k.name)] = syscalls_per_unit(env, proc, port, ld, tag)
                        except StraceError as e:
                            # Most likely ptrace is not allowed here: give up the pass rather than wait on every cell.
                            print(f"run_bench: syscalls: {k.name} {ld.key}: {e}; no more syscall counts", file=sys.stderr)
                            failed = True
                            break
                        except Exception as e:  # noqa: BLE001 — a cell, not the end of the run
                            print(f"run_bench: syscalls: {k.name} {ld.key}: {e}", file=sys.stderr)
        print(f"run_bench: {mode}: timed repetitions {t1 - t0:.0f} s, syscall pass {time.time() - t1:.0f} s", file=sys.stderr)

        for k in kinds:
            pr, _, pi, _ = running.pop(k.name)
            for p in (pr, pi):
                if p is not None:
                    if p.poll() is not None:
                        print(f"run_bench: warning: {k.name} exited during the run; see {p.log}", file=sys.stderr)
                    PROCS.stop(p)
    finally:
        for pr, _, pi, _ in running.values():
            for p in (pr, pi):
                if p is not None:
                    PROCS.stop(p)
        env.set_mode("shared", cpus)

    def med(row, what):
        return {n: median(samples.get((row, what, n), [])) for n in names}

    if mode == "pinned":
        where = f"pinned cores: each proxy alone on CPU {cpus[1]}; the load generators, the servers and strace on CPU {cpus[0]}"
    else:
        where = f"shared cores: every process on CPUs {','.join(map(str, cpus))}"
    md = [f"## Throughput, {where}\n"]
    for ld in lds:
        value = med(ld.key, "value")
        d = value.get("direct")
        cols = [(ld.value_head, value, ld.value_fmt),
                ("ratio to direct", {n: v / d for n, v in value.items() if v is not None and d}, "{:.2f}"),
                ("spread %", {n: spread(samples.get((ld.key, "value", n), [])) for n in names}, "{:.1f}")]
        if ld.target == "redis" and ld.key != "churn":
            cols += [("p50 ms", med(ld.key, "p50"), "{:.3f}"), ("p99 ms", med(ld.key, "p99"), "{:.3f}")]
        cpu_fmt = "{:.3f}" if ld.key.startswith(("P16", "iperf")) else "{:.2f}"
        cols.append((ld.cpu_head, med(ld.key, "cpu"), cpu_fmt))
        # The kernel's share (TCP, epoll, copies) is the same work for every proxy; user is what differs.
        cols.append(("of which user", med(ld.key, "user"), cpu_fmt))
        if "syscalls" not in skip:
            cols.append((ld.sys_head, {n: sum(sys_counts[(ld.key, n)].values()) for n in names
                                       if (ld.key, n) in sys_counts}, "{:.2f}"))
            cols.append(("top syscalls", {n: ", ".join(f"{c} {v:.2f}" for c, v in sorted(
                sys_counts[(ld.key, n)].items(), key=lambda cv: -cv[1])[:4]) for n in names
                if (ld.key, n) in sys_counts}, "{}"))
        size = f"-n {ld.n}" if ld.target == "redis" else f"-t {ld.n}"
        md.append(row_table(f"{ld.title} — {mode}", names, cols, f"{size}, median of {reps}"))
    return md


def hold_connections(port, count):
    """count live connections through port, each checked with a PING; returns the sockets."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), 10)
        socks.append(s)
    for s in socks:
        s.sendall(b"PING\r\n")
    for s in socks:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(64)
            if not chunk:
                raise RuntimeError("connection closed before +PONG")
            data += chunk
        if data != b"+PONG\r\n":
            raise RuntimeError(f"unexpected reply {data!r}")
    return socks


# ---------------------------------------------------------------- control plane


class Tagged(threading.Thread):
    """A tiny server that says its tag to each connection and closes: shows where a connection went."""

    def __init__(self, tag):
        super().__init__(daemon=True)
        self.tag = tag
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = bind_free_port(self.sock)
        self.sock.listen(128)

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.sendall(self.tag)
            except OSError:
                pass
            c.close()


def control_plane(env, trials):
    """Time from a put of a new instance's address to the first connection that reaches it."""
    a, b = Tagged(b"A"), Tagged(b"B")
    a.start(), b.start()
    port = free_port()
    env.etcd_put("/services/bench-cp/i1", f"127.0.0.1:{a.port}")
    p = PROCS.start([env.args.bin_dyn, "--log-level", "warn", "--etcd", env.etcd_url, "--listen",
                     f"127.0.0.1:{port}", "bench-cp", str(port)], env.log("dynamic-etcd-amb-cp"))
    wait_port(port, p)
    times, current = [], b"A"
    try:
        for _ in range(trials):
            new = b"B" if current == b"A" else b"A"
            srv = b if new == b"B" else a
            t0 = time.perf_counter()
            env.etcd_put("/services/bench-cp/i1", f"127.0.0.1:{srv.port}")
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), 2) as s:
                        got = s.recv(1)
                except OSError:
                    got = b""
                if got == new:
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError("no connection reached the new instance within 10 s")
            times.append((time.perf_counter() - t0) * 1000)
            current = new
            time.sleep(0.02)
    finally:
        PROCS.stop(p)
        a.sock.close(), b.sock.close()
    return times


# ---------------------------------------------------------------- control plane: registration, CPU under churn


BUSYBOX_IMAGE = "localhost/amb-test-busybox:latest"  # the image tests/support/podman_service.hpp builds


class Podman:
    """podman's Docker-compatible API on a temp unix socket (as tests/support/podman_service.hpp does)."""

    def __init__(self, env):
        self.env = env
        self.dir = os.path.join(env.tmp, "podman")
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    '[engine]\nruntime = "runc"\n')
        self.sock = os.path.join(self.dir, "api.sock")
        self.cli_env = dict(os.environ, CONTAINERS_CONF=self.conf)
        self.names = []
        self.ensure_image()
        self.service = PROCS.start(["podman", "system", "service", "--time=0", "unix://" + self.sock],
                                   env.log("podman"), env=self.cli_env)
        end = time.time() + 30
        while self.api("GET", "/_ping")[0] != 200:
            if time.time() > end or self.service.poll() is not None:
                raise RuntimeError(f"podman system service did not answer on {self.sock}; see {self.service.log}")
            time.sleep(0.1)

    def cli(self, *args, check=True):
        r = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.cli_env, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {r.stderr.strip()[:300]}")
        return r.stdout.strip()

    def ensure_image(self):
        if subprocess.run(["podman", "image", "exists", BUSYBOX_IMAGE], env=self.cli_env).returncode == 0:
            return
        busybox = shutil.which("busybox")
        if not busybox:
            raise RuntimeError("busybox is missing (Debian package busybox-static)")
        root = os.path.join(self.dir, "image-root")
        os.makedirs(os.path.join(root, "bin"))
        shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
        for tool in ("sh", "sleep", "nc", "httpd"):
            os.symlink("busybox", os.path.join(root, "bin", tool))
        tar = os.path.join(self.dir, "image.tar")
        subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
        self.cli("import", "--change", 'CMD ["/bin/sh"]', tar, BUSYBOX_IMAGE)

    def api(self, method, path):
        """One HTTP/1.0 request on the unix socket; (status, body)."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(self.sock)
                s.sendall(f"{method} {path} HTTP/1.0\r\nHost: d\r\nContent-Length: 0\r\n\r\n".encode())
                data = recv_until(s)
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body
        except (OSError, ValueError, IndexError):
            return 0, b""

    def close(self):
        for n in self.names:
            self.cli("rm", "-f", "-t", "0", n, check=False)
        PROCS.stop(self.service)


def etcd_range_count(env, prefix):
    """Keys under prefix, through the gateway."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode(), "count_only": True}).encode()
    req = urllib.request.Request(env.etcd_url + "/v3/kv/range", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(json.loads(r.read()).get("count", 0))


class EventClock(threading.Thread):
    """Reads the engine's /events on its own connection and notes when each container's start event
    arrives, to set docker-register's registration time beside the engine's own events."""

    def __init__(self, sock_path, stem):
        super().__init__(daemon=True)
        self.starts = {}  # container name -> perf_counter() when its start event arrived
        self.pattern = re.compile(re.escape(stem) + r"[0-9]+")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        query = urllib.parse.quote(json.dumps({"type": ["container"], "event": ["start"]}))
        self.sock.sendall(f"GET /events?filters={query} HTTP/1.1\r\nHost: engine\r\n\r\n".encode())

    def run(self):
        pending = ""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            now = time.perf_counter()
            pending += data.decode(errors="replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                if '"start"' in line:
                    for name in self.pattern.findall(line):
                        self.starts.setdefault(name, now)

    def close(self):
        self.sock.close()


def registration(env, trials):
    """Time from the engine API's container start (POST /containers/ID/start) to its key in etcd,
    written by docker-register --all; the container is removed between trials. Each trial also
    records when the start call answered and when the start event arrived on a /events stream of
    our own. Returns a list of dicts of milliseconds."""
    pod = Podman(env)
    prefix = "/bench-reg/"
    reg = PROCS.start([env.args.bin_reg, "--all", "--log-level", "warn", "--etcd", env.etcd_url, "--docker",
                       "unix://" + pod.sock, "--prefix", prefix.rstrip("/"), "--ip", "127.0.0.1", "--hostname", "bench"],
                      env.log("docker-register"))
    stem = f"amb-bench-reg-{os.getpid()}-"
    clock = EventClock(pod.sock, stem)
    clock.start()
    trials_ms = []
    try:
        time.sleep(1.0)
        if reg.poll() is not None:
            raise RuntimeError(f"docker-register exited; see {reg.log}")
        for i in range(trials):
            name = f"{stem}{i}"
            pod.names.append(name)
            cid = pod.cli("create", "--name", name, "-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=benchreg",
                          BUSYBOX_IMAGE, "sleep", "600")
            t0 = time.perf_counter()
            status, body = pod.api("POST", f"/containers/{cid}/start")
            t_started = time.perf_counter()
            if status not in (204, 304):
                raise RuntimeError(f"start {name}: HTTP {status} {body[:200]!r}")
            while etcd_range_count(env, prefix + "benchreg/") < 1:
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"no key for {name} within 10 s; see {reg.log}")
                time.sleep(0.002)
            t_key = time.perf_counter()
            # podman's start event often comes after the key: docker-register acts on the earlier
            # "init" event once inspect shows the container running.
            end = time.perf_counter() + 2
            while name not in clock.starts and time.perf_counter() < end:
                time.sleep(0.002)
            t_event = clock.starts.get(name)
            trials_ms.append({"total": (t_key - t0) * 1000, "start_call": (t_started - t0) * 1000,
                              "event": None if t_event is None else (t_event - t0) * 1000,
                              "after_call": (t_key - t_started) * 1000})
            pod.cli("rm", "-f", "-t", "0", name)
            pod.names.remove(name)
            end = time.time() + 10
            while etcd_range_count(env, prefix + "benchreg/") > 0 and time.time() < end:
                time.sleep(0.01)
    finally:
        clock.close()
        PROCS.stop(reg)
        pod.close()
    return trials_ms


def cpu_under_churn(env, instances, rate, seconds):
    """dynamic-etcd-amb's CPU while `instances` instances are registered under its service and
    `rate` puts per second change them (through the gateway), for `seconds`."""
    service = "bench-churn"
    for i in range(instances):
        env.etcd_put(f"/services/{service}/i{i}", f"127.0.0.1:{20000 + i}")
    port = free_port()
    p = PROCS.start([env.args.bin_dyn, "--log-level", "warn", "--etcd", env.etcd_url, "--listen",
                     f"127.0.0.1:{port}", service, str(port)], env.log("dynamic-etcd-amb-churn"))
    try:
        wait_port(port, p)
        time.sleep(1.0)  # the snapshot of `instances` keys is in
        idle0 = cpu_seconds(p.pid)
        time.sleep(2.0)
        idle = (cpu_seconds(p.pid) - idle0) / 2.0
        c0, t0 = cpu_seconds(p.pid), time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < seconds:
            due = t0 + n / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            i = n % instances
            env.etcd_put(f"/services/{service}/i{i}", f"127.0.0.1:{30000 + (n % 20000)}")
            n += 1
        elapsed = time.perf_counter() - t0
        time.sleep(0.5)  # let the last events arrive
        cpu = cpu_seconds(p.pid) - c0
        if p.poll() is not None:
            raise RuntimeError(f"dynamic-etcd-amb exited; see {p.log}")
        return {"changes": n, "rate": n / elapsed, "cpu_pct": 100 * cpu / (elapsed + 0.5),
                "us_per_change": cpu * 1e6 / max(n, 1), "idle_pct": 100 * idle, "pss_kb": pss_kb(p.pid)}
    finally:
        PROCS.stop(p)


def cpu_with_checks(env, instances, seconds, send_expect):
    """dynamic-etcd-amb's CPU with `instances` instances registered (all at the benchmark's redis, each
    under its own key), without active health checks and then with --health-check tcp every 2 s
    (connect only, or PING/+PONG when `send_expect`), over `seconds` each."""
    service = "bench-checks"
    for i in range(instances):
        env.etcd_put(f"/services/{service}/i{i}", f"127.0.0.1:{env.redis_port}")
    out = {}
    for mode in ("none", "checks"):
        port = free_port()
        extra = []
        if mode == "checks":
            extra = ["--health-check", "tcp", "--check-interval", "2s"]
            if send_expect:
                extra += ["--check-send", "PING\\r\\n", "--check-expect", "+PONG"]
        p = PROCS.start([env.args.bin_dyn, "--log-level", "warn", "--etcd", env.etcd_url, "--listen",
                         f"127.0.0.1:{port}"] + extra + [service], env.log(f"dynamic-etcd-amb-checks-{mode}"))
        try:
            wait_port(port, p)
            time.sleep(2.5)  # the snapshot is in, and every instance had its first check
            c0, t0 = cpu_seconds(p.pid), time.perf_counter()
            time.sleep(seconds)
            cpu = cpu_seconds(p.pid) - c0
            elapsed = time.perf_counter() - t0
            if p.poll() is not None:
                raise RuntimeError(f"dynamic-etcd-amb exited; see {p.log}")
            out[mode] = {"cpu_pct": 100 * cpu / elapsed, "cpu": cpu, "elapsed": elapsed, "pss_kb": pss_kb(p.pid)}
        finally:
            PROCS.stop(p)
    checks = instances * out["checks"]["elapsed"] / 2.0
    out["us_per_check"] = (out["checks"]["cpu"] - out["none"]["cpu_pct"] / 100 * out["checks"]["elapsed"]) * 1e6 / checks
    out["checks_per_s"] = instances / 2.0
    return out


def hold_many(port, count):
    """Opens up to count connections through port, each checked with a PING before the next is
    opened; returns (sockets, connections held, first error or "")."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), 10)
            socks.append(s)
            s.sendall(b"PING\r\n")
            got = s.recv(16)
            if got != b"+PONG\r\n":
                raise RuntimeError(f"connection {len(socks)}: {got!r} instead of +PONG")
        return socks, len(socks), ""
    except (OSError, RuntimeError) as e:
        return socks, len(socks) - 1, str(e)


# ---------------------------------------------------------------- tables


def median(xs):
    return statistics.median(xs) if xs else None


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def fmt(v, unit_fmt):
    return "—" if v is None else unit_fmt.format(v)


def multi_table(title, names, rows, note=""):
    """rows: [(label, {proxy: value}, fmt, with_ratio)]."""
    lines = [f"### {title}" + (f" ({note})" if note else ""), ""]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("| --- |" + " --- |" * len(names))
    for label, vals, f, with_ratio in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(vals.get(n), f) for n in names) + " |")
        if with_ratio and vals.get("direct"):
            d = vals["direct"]
            lines.append(f"| {label}: ratio to direct | " + " | ".join(
                "—" if vals.get(n) is None else f"{vals[n] / d:.2f}" for n in names) + " |")
    lines.append("")
    return "\n".join(lines)


def row_table(title, names, cols, note=""):
    """cols: [(heading, {proxy: value}, fmt)]. One line per proxy, one column per figure."""
    lines = [f"### {title}" + (f" ({note})" if note else ""), ""]
    lines.append("| proxy | " + " | ".join(c[0] for c in cols) + " |")
    lines.append("| --- |" + " --- |" * len(cols))
    for n in names:
        lines.append(f"| {n} | " + " | ".join(fmt(vals.get(n), f) for _, vals, f in cols) + " |")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition, small runs (~1 minute)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build-bench", "examples"),
                    help="folder with simple-amb and dynamic-etcd-amb (default build-bench/examples)")
    ap.add_argument("--only", help="comma-separated proxy names to run (direct always runs)")
    ap.add_argument("--conns", type=int, default=1000, help="idle live connections for the PSS row")
    ap.add_argument("--cp-trials", type=int, default=None, help="control-plane trials (default 50, quick 10)")
    ap.add_argument("--skip", default="", help="comma-separated row kinds to skip: redis,churn,iperf,syscalls,mem,cp,reg,cpchurn,checks,big")
    ap.add_argument("--mode", choices=("shared", "pinned", "both"), default=None,
                    help="throughput rows with every process on every CPU (shared), with each proxy alone on CPU 1 and "
                         "everything else on CPU 0 (pinned), or both, one after the other (default both, quick shared)")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--compare", help="folder with other builds of the programs: extra columns simple-amb(cmp), dyn-etcd-amb(cmp)")
    ap.add_argument("--threads", type=int, default=2, help="also run simple-amb and dynamic-etcd-amb with --threads N as simple-ambNt and dyn-etcd-ambNt (default 2; 1 = not)")
    ap.add_argument("--reg-trials", type=int, default=None, help="registration trials (default 30, quick 8)")
    ap.add_argument("--big-conns", type=int, default=10000, help="connections for the many-connections row (default 10000)")
    a = ap.parse_args()
    reps = a.reps or (1 if a.quick else 3)
    modes = {"shared": ["shared"], "pinned": ["pinned"], "both": ["shared", "pinned"]}[a.mode or ("shared" if a.quick else "both")]
    cpus = sorted(os.sched_getaffinity(0))
    if "pinned" in modes:
        if len(cpus) < 2:
            sys.exit(f"run_bench: pinned mode needs 2 CPUs, this process may use {cpus}")
        if not shutil.which("taskset"):
            sys.exit("run_bench: taskset is missing (util-linux)")
    cp_trials = a.cp_trials or (10 if a.quick else 50)
    skip = set(filter(None, a.skip.split(",")))
    a.bin_simple = shutil.which(os.path.join(a.bin, "simple-amb"))
    a.bin_dyn = shutil.which(os.path.join(a.bin, "dynamic-etcd-amb"))
    a.bin_reg = shutil.which(os.path.join(a.bin, "docker-register"))
    reg_trials = a.reg_trials or (8 if a.quick else 30)
    for tool in ("redis-server", "redis-benchmark", "iperf3"):
        if not shutil.which(tool):
            sys.exit(f"run_bench: {tool} is missing (make bench installs it)")
    if not a.bin_simple or not a.bin_dyn:
        print(f"run_bench: warning: simple-amb or dynamic-etcd-amb not found in {a.bin}", file=sys.stderr)
    needed = {os.path.basename(p): shared_libraries(p) for p in (a.bin_simple, a.bin_dyn, a.bin_reg) if p}
    extra = {name: sorted(set(libs) - RELEASE_LIBRARIES) for name, libs in needed.items()}
    if a.bin == ap.get_default("bin") and any(extra.values()):
        sys.exit("run_bench: the Release programs load more than libc: "
                 + "; ".join(f"{name} needs {', '.join(libs)}" for name, libs in extra.items() if libs)
                 + " (examples/CMakeLists.txt links libstdc++, libgcc and libm in)")

    # 1000+ connections through the proxy need fds here, in redis and in each proxy (they inherit it).
    # Root may raise the hard limit too: a proxy holding --conns connections needs 2 fds for each.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 3 * max(a.conns, a.big_conns) + 1000)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    env = Env(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.time()
    md = []
    ok = False
    try:
        env.start_servers()
        kinds = proxies(env)
        names = [k.name for k in kinds]
        print(f"run_bench: proxies: {', '.join(names)}; {reps} repetition(s); {' then '.join(modes)}; logs in {env.tmp}",
              file=sys.stderr)
        md.append(f"load average before: {open('/proc/loadavg').read().split()[:3]}\n")
        md.append("shared libraries of the programs: "
                  + "; ".join(f"{name}: {', '.join(libs)}" for name, libs in needed.items()) + "\n")

        for mode in modes:
            md += throughput(env, kinds, mode, cpus, reps, skip, a.quick)

        if "mem" not in skip:
            idle, held, per = {}, {}, {}
            for k in kinds:
                if k.start is None:
                    continue
                print(f"run_bench: memory: {k.name}", file=sys.stderr)
                p, port = k.start(env.redis_port)
                try:
                    wait_ping(port, p)
                    time.sleep(0.3)
                    idle[k.name] = pss_kb(p.pid)
                    socks = hold_connections(port, a.conns)
                    time.sleep(0.5)
                    held[k.name] = pss_kb(p.pid)
                    per[k.name] = (held[k.name] - idle[k.name]) / a.conns
                    for s in socks:
                        s.close()
                except Exception as e:  # noqa: BLE001 — one proxy's failure is a table cell, not the end
                    print(f"run_bench: memory: {k.name}: {e}", file=sys.stderr)
                finally:
                    PROCS.stop(p)
            mnames = [n for n in names if n != "direct"]
            md.append(multi_table("memory: PSS of the proxy (/proc/PID/smaps_rollup, whole process tree)", mnames,
                                  [("idle, kB (after one PING)", idle, "{:,.0f}", False),
                                   (f"with {a.conns} idle live connections, kB", held, "{:,.0f}", False),
                                   ("per idle connection, kB", per, "{:.2f}", False)],
                                  "each connection checked with a PING end to end"))

        if "cp" not in skip and a.bin_dyn and shutil.which("etcd"):
            print("run_bench: control plane", file=sys.stderr)
            t = control_plane(env, cp_trials)
            md.append(f"### control plane: etcd put of a new instance address -> first connection routed to it "
                      f"(dynamic-etcd-amb, {len(t)} trials)\n\n"
                      f"| p50 ms | p99 ms | max ms |\n| --- | --- | --- |\n"
                      f"| {pct(t, 50):.1f} | {pct(t, 99):.1f} | {max(t):.1f} |\n")

        if "reg" not in skip:
            if not a.bin_reg:
                print(f"run_bench: registration: no docker-register in {a.bin}; row skipped", file=sys.stderr)
            elif not shutil.which("podman") or not shutil.which("etcd"):
                print("run_bench: registration: podman or etcd missing; row skipped", file=sys.stderr)
            else:
                print("run_bench: registration after container start", file=sys.stderr)
                try:
                    t = registration(env, reg_trials)
                    part = lambda k: [x[k] for x in t if x[k] is not None]  # noqa: E731
                    row = lambda label, xs: (f"| {label} | {pct(xs, 50):.1f} | {pct(xs, 99):.1f} | {max(xs):.1f} |\n"  # noqa: E731
                                             if xs else f"| {label} | — | — | — |\n")
                    md.append(f"### control plane: container start (engine API) -> its key in etcd (docker-register --all, "
                              f"{len(t)} trials)\n\n| from the start call to | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |\n"
                              + row("the key in etcd (the row's figure)", part("total"))
                              + row("the start call's answer (the engine's own work)", part("start_call"))
                              + row("the start event on a /events stream of our own", part("event"))
                              + "\n| from the start call's answer to | p50 ms | p99 ms | max ms |\n| --- | --- | --- | --- |\n"
                              + row("the key in etcd (what is left beyond the engine's own start)", part("after_call")))
                except Exception as e:  # noqa: BLE001 — reported, the other rows still print
                    md.append(f"### control plane: container start -> key in etcd\n\nfailed: {e}\n")
        if "cpchurn" not in skip and a.bin_dyn and shutil.which("etcd"):
            secs = 5 if a.quick else 10
            print(f"run_bench: CPU with 1000 instances and 100 changes/s for {secs} s", file=sys.stderr)
            r = cpu_under_churn(env, 1000, 100, secs)
            md.append(f"### control plane: dynamic-etcd-amb CPU with 1000 instances registered and 100 changes/s "
                      f"({r['changes']} puts in {secs} s)\n\n"
                      f"| changes/s done | CPU % while changing | µs CPU per change | CPU % idle (1000 instances, no changes) | PSS kB |\n"
                      f"| --- | --- | --- | --- | --- |\n"
                      f"| {r['rate']:.0f} | {r['cpu_pct']:.2f} | {r['us_per_change']:.0f} | {r['idle_pct']:.2f} | {r['pss_kb']:,} |\n")
        if "checks" not in skip and a.bin_dyn and shutil.which("etcd"):
            secs = 5 if a.quick else 20
            rows = []
            for send_expect in (False, True):
                what = "PING/+PONG" if send_expect else "connect"
                print(f"run_bench: CPU with 1000 instances, health checks ({what}) every 2 s, {secs} s",
                      file=sys.stderr)
                r = cpu_with_checks(env, 1000, secs, send_expect)
                rows.append(f"| {what} | {r['checks_per_s']:.0f} | {r['none']['cpu_pct']:.2f} | "
                            f"{r['checks']['cpu_pct']:.2f} | {r['us_per_check']:.0f} | {r['checks']['pss_kb']:,} |")
            md.append(f"### control plane: dynamic-etcd-amb CPU with 1000 instances and active health checks every 2 s "
                      f"({secs} s each)\n\n"
                      "| check | checks/s | CPU % without checks | CPU % with checks | µs CPU per check | PSS kB |\n"
                      "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")
        if "big" not in skip:
            rows = []
            for k in kinds:
                if k.name not in ("simple-amb", "dyn-etcd-amb"):
                    continue
                print(f"run_bench: {a.big_conns} connections: {k.name}", file=sys.stderr)
                p, port = k.start(env.redis_port)
                socks = []
                try:
                    wait_ping(port, p)
                    idle = pss_kb(p.pid)
                    socks, held, err = hold_many(port, a.big_conns)
                    time.sleep(0.5)  # let the last refused or reset connection settle before measuring
                    full = pss_kb(p.pid)
                    with open(f"/proc/{p.pid}/limits") as f:
                        lim = next((l.split()[3:5] for l in f if l.startswith("Max open files")), ["?", "?"])
                    per = (full - idle) / held if held else 0
                    rows.append(f"| {k.name} | {held:,} | {'yes' if held == a.big_conns else 'no'} | "
                                f"{full:,} | {per:.2f} | {lim[0]} / {lim[1]} | {err or '—'} |")
                finally:
                    for t in socks:
                        t.close()
                    PROCS.stop(p)
            if rows:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                md.append(f"### {a.big_conns} concurrent idle connections, each checked with a PING end to end "
                          f"(fd limit of the benchmark: {soft}/{hard})\n\n"
                          "| proxy | connections held | all held? | PSS while holding them, kB | kB per held connection "
                          "| proxy's fd limit soft / hard | first error |\n"
                          "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n")

        md.append(f"load average after: {open('/proc/loadavg').read().split()[:3]}; "
                  f"run took {time.time() - started:.0f} s\n")
        text = "\n".join(md)
        print(text)
        if a.markdown:
            with open(a.markdown, "w") as f:
                f.write(text)
        ok = True
    finally:
        PROCS.stop_all()
    # Logs stay behind only when something failed (or when asked).
    if ok and not os.environ.get("BENCH_KEEP_LOGS"):
        shutil.rmtree(env.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
