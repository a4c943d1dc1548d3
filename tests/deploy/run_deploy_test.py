#!/usr/bin/env python3
"""Checks deploy/: the systemd units and compose.yaml.

- every unit parses: `systemd-analyze verify` in a temporary root (copies of the system's units, a
  stub /usr/bin/docker, an /etc/environment) must print nothing; and our own parser: known
  sections and keys, `docker run --rm --name %n`, ExecStartPre cleanup, ExecStop, Restart, no
  --link, [X-Fleet] placement naming units that exist, ${VARS} only with an EnvironmentFile;
- compose.yaml is valid YAML whose images are the ones tools/make-images.sh builds (plus the
  redis and etcd images we name but do not build), with no links;
- every program flag used in a unit or in compose.yaml is listed by that program's --help;
- whatever reaches etcd through the host's simple-amb on 127.0.0.1:10000 uses host networking;
- the checker itself fails on broken copies (an unknown key, a flag the program lacks, a link).

Usage: run_deploy_test.py --source-dir DIR --simple-amb BIN --docker-register BIN
                          --dynamic-etcd-amb BIN
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

# The seed's five units, plus the automatic-mode registrar.
EXPECTED_UNITS = {
    "redis-demo.service", "redis-docker-reg.service", "redis-dyn-amb.service",
    "etcd-amb-redis.service", "etcd-amb-redis2.service", "docker-register-all.service",
}
# Images we name but do not build: the user has or pulls them.
OTHER_IMAGES = {"docker.io/library/redis:7", "quay.io/coreos/etcd:v3.5.17"}

KNOWN_KEYS = {
    "Unit": {"Description", "Documentation", "Wants", "Requires", "BindsTo", "After", "Before",
             "Conflicts", "PartOf"},
    "Service": {"Type", "EnvironmentFile", "Environment", "TimeoutStartSec", "TimeoutStopSec",
                "ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", "ExecStopPost",
                "Restart", "RestartSec"},
    "Install": {"WantedBy", "RequiredBy"},
    # fleet's options (plain systemd ignores X- sections).
    "X-Fleet": {"X-ConditionMachineOf", "X-Conflicts", "Global", "MachineID", "MachineMetadata",
                "MachineOf", "Conflicts", "X-ConditionMachineID", "X-ConditionMachineMetadata"},
}
# docker run options that take a value (the next word) in our units.
DOCKER_VALUE_OPTIONS = {"--name", "-p", "--publish", "-v", "--volume", "-e", "--env",
                        "--network", "--net", "--label", "-l", "--env-file", "--user", "-u",
                        "--hostname", "-h", "--restart", "--entrypoint", "--stop-timeout"}


class Checker:
    def __init__(self, source_dir, binaries):
        self.source_dir = source_dir
        self.binaries = binaries  # image name without tag -> program path
        self.errors = []
        self.flags = {}

    def error(self, where, what):
        self.errors.append(f"{where}: {what}")

    def our_images(self):
        """The images tools/make-images.sh builds: amb/<program>:latest for each program it loops over."""
        text = open(os.path.join(self.source_dir, "tools", "make-images.sh")).read()
        m = re.search(r"for program in ([a-z -]+); do\n  echo \"make-images: building", text)
        if not m or '-t "amb/$program:latest"' not in text:
            self.error("tools/make-images.sh", "cannot find its image list (for program in ...; -t amb/$program:latest)")
            return set()
        return {f"amb/{p}:latest" for p in m.group(1).split()}

    def program_flags(self, image):
        """The long options a program's --help lists (lines starting with spaces and --)."""
        if image not in self.flags:
            out = subprocess.run([self.binaries[image], "--help"], capture_output=True, text=True, timeout=30)
            text = out.stdout + out.stderr
            flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", text, re.M))
            if out.returncode != 0 or "--help" not in flags:
                self.error(image, f"--help failed or lists no options (exit {out.returncode}): {text[:200]!r}")
            self.flags[image] = flags
        return self.flags[image]

    def check_program_args(self, where, image, args):
        name = image.rsplit(":", 1)[0]
        if name not in self.binaries:
            return
        flags = self.program_flags(name)
        for arg in args:
            if arg.startswith("--"):
                flag = arg.split("=", 1)[0]
                if flag not in flags:
                    self.error(where, f"{name.split('/')[1]} has no option {flag} (its --help lists {sorted(flags)})")

    def check_image(self, where, image, allowed):
        if image not in allowed:
            self.error(where, f"image {image!r} is neither built by make images nor one we allow ({sorted(allowed)})")

    # ---- systemd units ----

    def parse_unit(self, path):
        """INI-like unit parsing: sections, key=value, backslash continuations, # and ; comments."""
        sections, current, pending = {}, None, ""
        where = os.path.basename(path)
        for number, raw in enumerate(open(path).read().split("\n"), 1):
            line = pending + raw.strip() if pending else raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    self.error(f"{where}:{number}", f"bad section header {line!r}")
                    continue
                current = line[1:-1]
                if current not in KNOWN_KEYS:
                    self.error(f"{where}:{number}", f"unknown section [{current}]")
                sections.setdefault(current, [])
                continue
            if "=" not in line or current is None:
                self.error(f"{where}:{number}", f"not a key=value line in a section: {line!r}")
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if current in KNOWN_KEYS and key not in KNOWN_KEYS[current]:
                self.error(f"{where}:{number}", f"unknown key {key!r} in [{current}]")
            sections[current].append((key, value))
        if pending:
            self.error(where, "ends in a line continuation")
        return sections

    def check_units(self, unit_dir, allowed_images):
        names = sorted(n for n in os.listdir(unit_dir) if n.endswith(".service"))
        missing = EXPECTED_UNITS - set(names)
        if missing:
            self.error(unit_dir, f"missing units {sorted(missing)}")
        used_images, automatic = set(), False
        for name in names:
            s = self.parse_unit(os.path.join(unit_dir, name))
            get = lambda section, key: [v for k, v in s.get(section, []) if k == key]
            for section in ("Unit", "Service", "Install", "X-Fleet"):
                if section not in s:
                    self.error(name, f"no [{section}] section")
            starts = get("Service", "ExecStart")
            if len(starts) != 1:
                self.error(name, f"needs exactly one ExecStart, has {len(starts)}")
                continue
            if "-/usr/bin/docker rm -f %n" not in get("Service", "ExecStartPre"):
                self.error(name, "no ExecStartPre=-/usr/bin/docker rm -f %n (a left-over container blocks the name)")
            if get("Service", "ExecStop") != ["/usr/bin/docker stop %n"]:
                self.error(name, "needs ExecStop=/usr/bin/docker stop %n")
            if not get("Service", "Restart"):
                self.error(name, "no Restart=")
            words = shlex.split(starts[0])
            if words[:2] != ["/usr/bin/docker", "run"]:
                self.error(name, f"ExecStart is not /usr/bin/docker run: {starts[0]!r}")
                continue
            i, options = 2, []
            while i < len(words) and words[i].startswith("-"):
                options.append(words[i])
                if words[i] in DOCKER_VALUE_OPTIONS:
                    options.append(words[i + 1] if i + 1 < len(words) else "")
                    i += 1
                i += 1
            if i >= len(words):
                self.error(name, "ExecStart names no image")
                continue
            image, args = words[i], words[i + 1:]
            if "--rm" not in options:
                self.error(name, "docker run without --rm")
            if "--name" not in options or options[options.index("--name") + 1] != "%n":
                self.error(name, "docker run without --name %n")
            if any(o == "--link" or o.startswith("--link=") for o in options):
                self.error(name, "uses --link (gone in Docker 29, refused by podman): use --etcd / ETCDCTL_ENDPOINTS")
            if "/var/run/docker.sock:/var/run/docker.sock" in options and "root-equivalent" not in open(os.path.join(unit_dir, name)).read():
                self.error(name, "mounts the engine socket without a comment that it is root-equivalent")
            self.check_image(name, image, allowed_images)
            used_images.add(image)
            network = options[options.index("--network") + 1] if "--network" in options else "bridge"
            if "127.0.0.1:10000" in " ".join(args) and network != "host":
                self.error(name, "reaches 127.0.0.1:10000 (the host's simple-amb to etcd) without --network host")
            self.check_program_args(name, image, args)
            automatic |= image.startswith("amb/docker-register") and "--all" in args
            variables = set(re.findall(r"\$\{(\w+)\}", starts[0]))
            if variables and not get("Service", "EnvironmentFile"):
                self.error(name, f"uses ${{{'}, ${'.join(sorted(variables))}}} without an EnvironmentFile")
            for key in ("X-ConditionMachineOf", "X-Conflicts"):
                for other in get("X-Fleet", key):
                    if other not in names:
                        self.error(name, f"{key}={other} names no unit in {unit_dir}")
            for key in ("Requires", "BindsTo"):
                for value in get("Unit", key):
                    for other in value.split():
                        if other not in names:
                            self.error(name, f"{key}={other} names no unit in {unit_dir}")
        if not automatic:
            self.error(unit_dir, "no unit runs docker-register --all (automatic mode)")
        return names, used_images

    def systemd_verify(self, unit_dir, names):
        """systemd-analyze verify in a temporary root, so /usr/bin/docker and the system's units exist."""
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.error("systemd-analyze", "not found: install the Debian package systemd")
            return
        system_units = next((d for d in ("/usr/lib/systemd/system", "/lib/systemd/system") if os.path.isdir(d)), None)
        with tempfile.TemporaryDirectory(prefix="amb-deploy-") as root:
            shutil.copytree(system_units, os.path.join(root, "usr/lib/systemd/system"), symlinks=True)
            os.makedirs(os.path.join(root, "usr/bin"))
            docker = os.path.join(root, "usr/bin/docker")
            with open(docker, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(docker, 0o755)
            target = os.path.join(root, "etc/systemd/system")
            os.makedirs(target)
            with open(os.path.join(root, "etc/environment"), "w") as f:
                f.write("HOST_IP=10.0.0.5\nETCD_ADDR=10.0.0.2:2379\n")
            for name in names:
                shutil.copy(os.path.join(unit_dir, name), target)
            out = subprocess.run([analyze, "verify", f"--root={root}", *names],
                                 capture_output=True, text=True, timeout=120)
            text = (out.stdout + out.stderr).strip()
            if out.returncode != 0 or text:
                self.error("systemd-analyze verify", f"exit {out.returncode}:\n{text}")

    # ---- compose ----

    def check_compose(self, path, our_images):
        try:
            import yaml
        except ImportError:
            self.error(sys.executable, "has no yaml module: install the Debian package python3-yaml")
            return set()
        try:
            doc = yaml.safe_load(open(path))
        except yaml.YAMLError as e:
            self.error(path, f"is not valid YAML: {e}")
            return set()
        services = doc.get("services") if isinstance(doc, dict) else None
        if not isinstance(services, dict) or not services:
            self.error(path, "has no services")
            return set()
        used = set()
        for name, service in services.items():
            where = f"compose.yaml service {name}"
            image = service.get("image")
            if not image:
                self.error(where, "has no image (nothing is built by compose: make images builds ours)")
                continue
            self.check_image(where, image, our_images | OTHER_IMAGES)
            used.add(image)
            if "links" in service or "external_links" in service:
                self.error(where, "uses links (gone in Docker 29, refused by podman)")
            command = service.get("command", [])
            if isinstance(command, str):
                command = shlex.split(command)
            # ${VAR:-default} interpolation, as compose does when VAR is unset.
            command = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(c)) for c in command]
            self.check_program_args(where, image, command)
            if "127.0.0.1:10000" in " ".join(command + [str(v) for v in (service.get("environment") or {}).values()]) \
                    and service.get("network_mode") != "host":
                self.error(where, "reaches 127.0.0.1:10000 (the host's simple-amb to etcd) without network_mode: host")
            if image.startswith("amb/docker-register") and "/var/run/docker.sock:/var/run/docker.sock" not in service.get("volumes", []):
                self.error(where, "does not mount the engine socket")
        if not any(i.startswith("quay.io/coreos/etcd") for i in used):
            self.error(path, "runs no etcd")
        return used


def check_all(source_dir, binaries, unit_dir, compose):
    c = Checker(source_dir, binaries)
    ours = c.our_images()
    if ours and {i.rsplit(":", 1)[0] for i in ours} != set(binaries):
        c.error("tools/make-images.sh", f"builds {sorted(ours)}, the test knows the programs {sorted(binaries)}")
    names, unit_images = c.check_units(unit_dir, ours | OTHER_IMAGES)
    c.systemd_verify(unit_dir, names)
    compose_images = c.check_compose(compose, ours)
    for what, used in (("the units", unit_images), ("compose.yaml", compose_images)):
        if not ours <= used:
            c.error(what, f"do not run {sorted(ours - used)}")
    return c.errors


def expect_failure(source_dir, binaries, unit_dir, compose, edit, expected):
    """Copies deploy/, applies edit(copy_dir), and checks that the checker reports `expected`."""
    with tempfile.TemporaryDirectory(prefix="amb-deploy-broken-") as tmp:
        units = os.path.join(tmp, "systemd")
        shutil.copytree(unit_dir, units)
        shutil.copy(compose, tmp)
        edit(tmp)
        errors = check_all(source_dir, binaries, units, os.path.join(tmp, "compose.yaml"))
        if not any(expected in e for e in errors):
            return [f"self-check: a broken copy should report {expected!r}, got {errors}"]
        found = next(line for e in errors for line in e.splitlines() if expected in line)
        print(f"self-check: broken copy rejected: {found}")
        return []


def replace_in(path, old, new):
    text = open(path).read()
    assert old in text, (path, old)
    open(path, "w").write(text.replace(old, new, 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--source-dir", required=True)
    p.add_argument("--simple-amb", required=True)
    p.add_argument("--docker-register", required=True)
    p.add_argument("--dynamic-etcd-amb", required=True)
    a = p.parse_args()
    binaries = {"amb/simple-amb": a.simple_amb, "amb/docker-register": a.docker_register,
                "amb/dynamic-etcd-amb": a.dynamic_etcd_amb}
    unit_dir = os.path.join(a.source_dir, "deploy", "systemd")
    compose = os.path.join(a.source_dir, "deploy", "compose.yaml")

    errors = check_all(a.source_dir, binaries, unit_dir, compose)
    if not errors:
        print(f"deploy: {len(os.listdir(unit_dir))} units and compose.yaml check out")
        # The checker can fail: each of these broken copies must be rejected.
        unit = lambda t, n: os.path.join(t, "systemd", n)
        errors += expect_failure(a.source_dir, binaries, unit_dir, compose,
                                 lambda t: replace_in(unit(t, "redis-dyn-amb.service"), "--listen", "--listen-on"),
                                 "has no option --listen-on")
        errors += expect_failure(a.source_dir, binaries, unit_dir, compose,
                                 lambda t: replace_in(unit(t, "redis-docker-reg.service"), "--network host", "--network bridge"),
                                 "without --network host")
        errors += expect_failure(a.source_dir, binaries, unit_dir, compose,
                                 lambda t: replace_in(unit(t, "redis-demo.service"), "RestartSec=5s", "RestartSecs=5s"),
                                 "Unknown key 'RestartSecs'")
        errors += expect_failure(a.source_dir, binaries, unit_dir, compose,
                                 lambda t: replace_in(os.path.join(t, "compose.yaml"), "  docker-register-all:\n",
                                                      "  docker-register-all:\n    links: [etcd-amb]\n"),
                                 "uses links")
        errors += expect_failure(a.source_dir, binaries, unit_dir, compose,
                                 lambda t: replace_in(os.path.join(t, "compose.yaml"), "amb/simple-amb:latest", "polvi/simple-amb"),
                                 "image 'polvi/simple-amb'")
    for e in errors:
        print(f"deploy: FAIL: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
