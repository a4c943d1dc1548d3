#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that tools/install-deps.sh installs everything amb's files use, set by set.

A brand-new Debian 12 machine has the base system (the packages of priority "required"), git and
make, and nothing else. Every other program a script, test or benchmark starts, every header the
code includes and every Python module a script imports must come from a package that the
matching set of tools/install-deps.sh installs; otherwise `make test` (or `make demo`, `make bench`)
passes only on machines where someone once installed it by hand.

How it finds what is used, per file of a set:
  * the names of COMMANDS (below) wherever they appear as words outside comments;
  * the programs that shell scripts and Makefiles run, Python's subprocess argument lists start
    with, and the C++ tests find with require_program(): any of those that this machine resolves
    to a package outside the base system must be in COMMANDS (so a new tool cannot slip in);
  * `#include <...>` of headers outside the C++ standard library, mapped through HEADERS;
  * Python imports outside the standard library, mapped through MODULES.

  tools/check_deps.py              check every set; exit 1 naming each missing package
  tools/check_deps.py --self-test  show that a package taken out of a set is reported
"""
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every program amb's files start that a minimal Debian 12 lacks, and its package.
COMMANDS = {
    "g++": "g++", "c++": "g++", "gcc": "g++", "clang": "clang", "clang++": "clang", "cmake": "cmake", "ctest": "cmake",
    "ninja": "ninja-build", "python3": "python3",
    "etcd": "etcd-server", "etcdctl": "etcd-client",
    "redis-server": "redis-server", "redis-cli": "redis-tools", "redis-benchmark": "redis-tools",
    "podman": "podman", "runc": "runc", "newuidmap": "uidmap", "debootstrap": "debootstrap",
    "busybox": "busybox-static", "ip": "iproute2", "ss": "iproute2", "bridge": "iproute2", "systemd": "systemd",
    "haproxy": "haproxy", "nginx": "nginx-light", "socat": "socat", "rinetd": "rinetd", "iperf3": "iperf3",
    "curl": "curl", "openssl": "openssl", "systemd-analyze": "systemd",
    "nm": "binutils", "readelf": "binutils", "objdump": "binutils", "strip": "binutils",
    "ps": "procps", "pgrep": "procps", "strace": "strace", "taskset": "util-linux",
    "llvm-symbolizer": "llvm-14", "clang-format": "clang-format",
}
# Headers outside the C++ and C standard libraries (by their first path part), and their package.
HEADERS = {
    "asio": "libasio-dev", "asio.hpp": "libasio-dev", "picojson.h": "picojson-dev",
    "doctest": "doctest-dev", "openssl": "libssl-dev",
}
# Python modules outside the standard library, and their package.
MODULES = {"yaml": "python3-yaml"}
# Headers of amb's own, and the C library's folders (libc6-dev and linux-libc-dev come with g++).
OWN_HEADERS = {"amb", "support"}
SYSTEM_HEADER_DIRS = {"sys", "netinet", "arpa", "linux", "bits", "net", "asm"}
# Files no set runs on this machine: the images' builder (its own apt-get runs inside the image) and
# the deployment examples (the deploy test only parses them; it is scanned as a test).
NOT_RUN_BY_A_SET = {"Dockerfile", "deploy", "install-deps.sh", "check_deps.py"}
# Words that look like programs but are not run on this machine as such.
NOT_RUN_HERE = {
    "httpd": "a busybox applet inside the test containers",
    "nc": "a busybox applet inside the test containers",
    "sh": "the base system's shell, or busybox's inside containers",
    "kill": "bash's builtin in the scripts",
    "w": "open()'s mode in Python",
}
# Headers that only an optional build uses, and the set that builds it.
OPTIONAL_HEADERS = {"openssl": "test"}  # TLS (cmake -DAMB_TLS=ON): `make test` builds it, `make` does not

# The files each set serves. `test` runs all the others inside ctest, so it serves every file.
SETS = {
    "build": ["CMakeLists.txt", "cmake", "include", "examples", "tools/amalgamate.py"],
    "images": ["tools/make-images.sh", "tools/podman"],
    "demo": ["tools/demo.sh", "tools/make-redis-image.sh", "tools/make-images.sh"],
    "fuzz": ["fuzz"],
    "bench": ["bench"],
    "test": ["."],
}
SKIP_DIRS = {".git", "single_include", "corpus"}
SKIP_FILES = {"README.md", "RESULTS.md"}  # prose, not things that run
TEXT_SUFFIXES = {".sh", ".py", ".cpp", ".hpp", ".h", ".cmake", ".txt", ".in", ".yaml", ".cfg", ".service", ".conf"}


def base_packages():
    """Packages of priority "required" (what debootstrap's minbase installs), plus git and make."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Priority} ${Essential}\\n"],
                         capture_output=True, text=True, check=True).stdout
    base = {"git", "make", "git-man"}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and (parts[1] == "required" or parts[-1] == "yes"):
            base.add(parts[0])
    return base


def package_set(name):
    out = subprocess.run([str(ROOT / "tools/install-deps.sh"), "--list", name], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


_dpkg_files = None


def dpkg_files():
    """Every file dpkg installed, mapped to its package: read once from dpkg's own lists (one
    `dpkg-query -S` per program took 0.3-0.5 s each, most of this check's time)."""
    global _dpkg_files
    if _dpkg_files is None:
        _dpkg_files = {}
        for lst in Path("/var/lib/dpkg/info").glob("*.list"):
            package = lst.stem.split(":")[0]
            try:
                for line in lst.read_text(errors="replace").splitlines():
                    _dpkg_files.setdefault(line, package)
            except OSError:
                continue
    return _dpkg_files


def owner(path):
    """The Debian package that installed `path`, or None."""
    files = dpkg_files()
    for p in {path, os.path.realpath(path)}:
        # /bin and /sbin are links to /usr/bin and /usr/sbin on Debian 12; dpkg may know either.
        for alt in (p, p.replace("/usr/bin/", "/bin/").replace("/usr/sbin/", "/sbin/"),
                    p.replace("/bin/", "/usr/bin/", 1) if p.startswith("/bin/") else p):
            if alt in files:
                return files[alt]
    return None


def files_of(entries):
    for e in entries:
        p = ROOT / e
        if p.is_file():
            yield p
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("build")]
            for f in filenames:
                fp = Path(dirpath) / f
                if f in SKIP_FILES:
                    continue
                if fp.suffix in TEXT_SUFFIXES or f in {"Makefile", "Dockerfile", "run"} or os.access(fp, os.X_OK):
                    yield fp


def kind(path):
    if path.suffix in {".cpp", ".hpp", ".h"}:
        return "c++"
    if path.suffix == ".py":
        return "python"
    if path.suffix in {".cmake"} or path.name == "CMakeLists.txt" or path.suffix == ".in":
        return "cmake"
    return "shell"  # shell scripts, Makefile, Dockerfile, configs


def strip_comments(text, k):
    if k == "c++":
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        return re.sub(r"//[^\n]*", " ", text)
    if k == "python":
        text = re.sub(r'^\s*(""".*?"""|\'\'\'.*?\'\'\')', " ", text, flags=re.S | re.M)
    return re.sub(r"(^|\s)#(?!include)[^\n]*", " ", text)


def programs_started(text, k):
    """Names this file runs as programs (first words of commands), for the unmapped-tool check."""
    names = set()
    if k == "shell":
        for m in re.finditer(r"(?:^|[|;&(`]|\bthen\b|\bdo\b|\belse\b|\$\(|\bexec\b|\bcommand -v\b)\s*([a-z][\w.+-]*)(?![\w.+=-])",
                             text, flags=re.M):
            names.add(m.group(1))
    elif k == "python":
        # Any string that is one bare word may be argv[0] of a subprocess or a shutil.which().
        names.update(w for w in python_strings(text).split() if re.fullmatch(r'["\']([a-z][\w.+-]*)["\']', w))
        names = {n.strip("\"'") for n in names}
    elif k == "c++":
        names.update(re.findall(r'require_program\("([a-z][\w.+-]*)"', text))
    elif k == "cmake":
        names.update(re.findall(r"find_program\(\s*\w+\s+([a-z][\w.+-]*)", text))
    return names


_owners = {}


def package_of_program(name):
    """(path, package) of a program on this machine's PATH, cached; (None, None) when absent."""
    if name not in _owners:
        where = shutil.which(name)
        _owners[name] = (where, owner(where) if where else None)
    return _owners[name]


def python_strings(source):
    """The text of every string literal in a Python file (comments and code left out)."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        return " ".join(t.string for t in tokens if t.type == tokenize.STRING)
    except (tokenize.TokenError, SyntaxError):
        return source


def string_literals(text):
    return " ".join(m.group(2) for m in re.finditer(r'(["\'])((?:\\.|(?!\1).)*)\1', text))


def check(set_name, packages, base, entries=None):
    """Problems (one line each) for the files of `set_name` against `packages`."""
    problems = []
    allowed = packages | base
    for path in files_of(entries if entries is not None else SETS[set_name]):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in NOT_RUN_BY_A_SET or path.name in NOT_RUN_BY_A_SET:
            continue
        try:
            raw = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        k = kind(path)
        text = strip_comments(raw, k)
        # Where program names can appear: anywhere in a script; in the strings of Python and of the
        # C++ tests (argument lists, require_program); in CMake's COMMAND lines. Library code and the
        # programs start no other program.
        if k == "shell":
            scanned = text
        elif k == "python":
            # Program names stand alone in argument lists and which() calls; prose in messages does not count.
            scanned = " ".join(w.strip("\"'") for w in python_strings(raw).split()
                               if re.fullmatch(r'["\']([a-z][\w.+-]*)["\']', w))
        elif k == "c++" and rel.parts[0] == "tests":
            scanned = string_literals(text)
        elif k == "cmake":
            scanned = " ".join(re.findall(r"(?:COMMAND|find_program\(\s*\w+)\s+([^)\n]*)", text))
        else:
            scanned = ""
        words = set(re.findall(r"(?<![\w/.-])[a-z][\w.+-]*[\w+]", scanned))
        for w in sorted(words & COMMANDS.keys()):
            if COMMANDS[w] not in allowed:
                problems.append(f"{rel}: uses {w} (Debian package {COMMANDS[w]}), not in the '{set_name}' set")
        for name in sorted(programs_started(text, k) - COMMANDS.keys() - NOT_RUN_HERE.keys()):
            where, pkg = package_of_program(name)
            if pkg and pkg not in base:
                problems.append(f"{rel}: runs {name} ({where}, package {pkg}): add it to COMMANDS in "
                                f"tools/check_deps.py and to the '{set_name}' set")
        if k == "c++":
            for inc in re.findall(r"#\s*include\s*<([^>]+)>", raw):
                first = inc.split("/")[0]
                if first in OWN_HEADERS:
                    continue
                pkg = HEADERS.get(first)
                if first in OPTIONAL_HEADERS and set_name != OPTIONAL_HEADERS[first]:
                    continue
                if pkg and pkg not in allowed:
                    problems.append(f"{rel}: includes <{inc}> (Debian package {pkg}), not in the '{set_name}' set")
                elif not pkg and ("/" in inc and first not in SYSTEM_HEADER_DIRS):
                    problems.append(f"{rel}: includes <{inc}>, which HEADERS in tools/check_deps.py does not map")
        if k == "python":
            for mod in re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", raw, flags=re.M):
                if mod in sys.stdlib_module_names or mod == "__future__":
                    continue
                pkg = MODULES.get(mod)
                if not pkg:
                    problems.append(f"{rel}: imports {mod}, which MODULES in tools/check_deps.py does not map")
                elif pkg not in allowed:
                    problems.append(f"{rel}: imports {mod} (Debian package {pkg}), not in the '{set_name}' set")
    return problems


def self_test(base):
    """A package taken out of a set must be reported; otherwise this check could not fail."""
    failures = 0
    for set_name, pkg, word in [("test", "iperf3", "iperf3"), ("test", "python3-yaml", "yaml"),
                                ("bench", "socat", "socat"), ("bench", "strace", "strace"), ("build", "libasio-dev", "asio"),
                                ("demo", "etcd-client", "etcdctl")]:
        packages = package_set(set_name) - {pkg}
        problems = check(set_name, packages, base - {pkg})
        if not any(word in p for p in problems):
            print(f"check_deps self-test: taking {pkg} out of '{set_name}' was not reported", file=sys.stderr)
            failures += 1
        else:
            print(f"check_deps self-test: taking {pkg} out of '{set_name}' is reported")
    return failures


def main(argv):
    base = base_packages()
    if "--self-test" in argv:
        return 1 if self_test(base) else 0
    problems = []
    for set_name in SETS:
        problems += check(set_name, package_set(set_name), base)
    for p in problems:
        print(f"check_deps: {p}", file=sys.stderr)
    if problems:
        print(f"check_deps: {len(problems)} problems: add the packages to tools/install-deps.sh", file=sys.stderr)
        return 1
    print(f"check_deps: every program, header and module used is installed by its set ({', '.join(SETS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
