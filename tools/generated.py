"""The command line shared by the tools that write a generated file into the tree: write it,
or with --check say whether the file in the tree is what the tool would write (exit 1 if not;
the tests run --check so a generated file cannot go stale)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_or_check(out: Path, text: str, tool: str) -> int:
    name = out.relative_to(ROOT)
    if "--check" in sys.argv[1:]:
        if not out.exists() or out.read_text() != text:
            print(f"{name} is stale: run {tool}")
            return 1
        print(f"{name} is up to date")
        return 0
    out.write_text(text)
    print(f"wrote {name}")
    return 0
