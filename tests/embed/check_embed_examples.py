#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks the embedding examples and the programs against their line budgets, and that the README
quotes every embedding example verbatim (between <!-- embed:NAME --> and <!-- /embed:NAME -->).

  check_embed_examples.py REPO_ROOT
"""
import pathlib
import re
import sys

EMBED_BUDGET = 30
PROGRAM_BUDGET = 150


def main(argv):
    root = pathlib.Path(argv[1] if len(argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
    readme = (root / "README.md").read_text(encoding="utf-8")
    problems = []
    examples = sorted((root / "examples" / "embed").glob("*.cpp"))
    if len(examples) < 3:
        problems.append(f"examples/embed/ holds {len(examples)} examples, expected at least 3")
    for path in examples:
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > EMBED_BUDGET:
            problems.append(f"examples/embed/{path.name}: {lines} lines (budget {EMBED_BUDGET})")
        name = path.stem
        m = re.search(r"<!-- embed:%s -->\n```cpp\n(.*?)```\n<!-- /embed:%s -->" % (re.escape(name), re.escape(name)),
                      readme, re.S)
        if not m:
            problems.append(f"README.md does not quote examples/embed/{path.name} (<!-- embed:{name} --> block)")
        elif m.group(1) != text:
            problems.append(f"README.md's quote of examples/embed/{path.name} differs from the file")
    for path in sorted((root / "examples").glob("*.cpp")):
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > PROGRAM_BUDGET:
            problems.append(f"examples/{path.name}: {lines} lines (budget {PROGRAM_BUDGET})")
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(examples)} embedding examples within {EMBED_BUDGET} lines and quoted by the README; "
              f"programs within {PROGRAM_BUDGET} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
