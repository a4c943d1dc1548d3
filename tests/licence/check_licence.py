#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that the repository carries its licence and explains itself.

  check_licence.py ROOT              fails (exit 1, one line per problem) when
    - a header under include/ does not open with `// SPDX-License-Identifier: MIT`
      followed by its one-line comment saying what the header is for;
    - single_include/amb/amb.hpp's banner (everything before its first inlined
      header) lacks the SPDX line or any line of LICENSE;
    - a tracked file cites background notes that live outside the repository
      (the upper-case design and protocol notes, or the shared folder beside the
      checkout): the repository's own notes are docs/design.md and docs/protocols.md.
  check_licence.py --self-test       runs the checks on a small broken tree and
                                     fails unless each problem is reported.
"""
import pathlib
import re
import subprocess
import sys
import tempfile

SPDX_LINE = "// SPDX-License-Identifier: MIT"
# Built from pieces so that this script does not cite what it forbids.
OUTSIDE_NOTES = re.compile(
    rb"\b(?:" + b"DESIGN" + rb"|" + b"PROTOCOLS" + rb")\.md\b|\.\./" + b"shared\\b|/work/" + b"shared\\b"
)
FIRST_INLINED = "// ---- begin "


def check_headers(root, problems):
    include = root / "include"
    for path in sorted(include.rglob("*.hpp")):
        lines = path.read_text(encoding="utf-8").splitlines()
        rel = path.relative_to(root)
        if not lines or lines[0] != SPDX_LINE:
            problems.append(f"{rel}: first line is not `{SPDX_LINE}`")
        elif len(lines) < 2 or not lines[1].startswith("// "):
            problems.append(f"{rel}: the one-line comment saying what the header is for must follow the SPDX line")


def check_banner(root, problems):
    single = root / "single_include" / "amb" / "amb.hpp"
    licence = root / "LICENSE"
    if not licence.is_file():
        problems.append("LICENSE: missing")
        return
    if not single.is_file():
        problems.append(f"{single.relative_to(root)}: missing")
        return
    text = single.read_text(encoding="utf-8")
    banner = text.split(FIRST_INLINED, 1)[0].splitlines()
    if not banner or banner[0] != SPDX_LINE:
        problems.append(f"single_include/amb/amb.hpp: banner does not open with `{SPDX_LINE}`")
    banner_text = [line[2:].strip() for line in banner if line.startswith("//")]
    for line in licence.read_text(encoding="utf-8").splitlines():
        if line.strip() and line.strip() not in banner_text:
            problems.append(f"single_include/amb/amb.hpp: banner lacks the LICENSE line {line.strip()!r}")
            break


def tracked_files(root):
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True,
                             capture_output=True).stdout
        names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
        if names:
            return [root / n for n in names]
    except (OSError, subprocess.CalledProcessError):
        pass
    # Not a git checkout (an exported tree): every file but build output.
    return [p for p in root.rglob("*")
            if p.is_file() and not any(part == ".git" or part.startswith("build") for part in p.relative_to(root).parts)]


def check_citations(root, problems):
    for path in tracked_files(root):
        if not path.is_file():
            continue  # deleted in the work tree, not yet in the index
        data = path.read_bytes()
        for number, line in enumerate(data.splitlines(), 1):
            m = OUTSIDE_NOTES.search(line)
            if m:
                problems.append(f"{path.relative_to(root)}:{number}: cites {m.group(0).decode()!r}, which is not in the "
                                "repository; cite docs/design.md or docs/protocols.md instead")


def run(root):
    problems = []
    check_headers(root, problems)
    check_banner(root, problems)
    check_citations(root, problems)
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "include" / "amb").mkdir(parents=True)
        (root / "single_include" / "amb").mkdir(parents=True)
        (root / "LICENSE").write_text("MIT License\n\nCopyright (c) 2026 the amb authors\n")
        good = SPDX_LINE + "\n// What this header is for.\n#pragma once\n"
        (root / "include" / "amb" / "good.hpp").write_text(good)
        (root / "single_include" / "amb" / "amb.hpp").write_text(
            SPDX_LINE + "\n// MIT License\n//\n// Copyright (c) 2026 the amb authors\n#pragma once\n" + FIRST_INLINED + "x\n")
        if run(root):
            print("self-test: a clean tree was reported: " + "; ".join(run(root)), file=sys.stderr)
            return 1
        (root / "include" / "amb" / "bad.hpp").write_text("// What this header is for.\n#pragma once\n")
        (root / "single_include" / "amb" / "amb.hpp").write_text(SPDX_LINE + "\n#pragma once\n" + FIRST_INLINED + "x\n")
        (root / "notes.txt").write_text("see " + "DESIGN" + ".md and ../" + "shared/x\n")
        problems = run(root)
        expected = ["include/amb/bad.hpp: first line", "banner lacks the LICENSE line", "notes.txt:1: cites"]
        missing = [e for e in expected if not any(e in p for p in problems)]
        if missing:
            print("self-test: not reported: " + "; ".join(missing), file=sys.stderr)
            return 1
    print("self-test: every planted problem was reported")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    if len(argv) != 1:
        print("usage: check_licence.py ROOT | --self-test", file=sys.stderr)
        return 2
    root = pathlib.Path(argv[0]).resolve()
    problems = run(root)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print("every header carries the SPDX line, the single header carries the licence, no file cites notes outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
