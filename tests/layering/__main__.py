"""`python -m tests.layering` (run by `make lint`): the floors of docs/architecture.md, checked
over the import graph; prints every wrong-way import or cycle and exits 1 if there is one."""

from __future__ import annotations

import sys

from tests.layering.imports import Graph, violations


def main() -> int:
    found = violations(Graph.of_repo())
    for line in found:
        print(f"layering: {line}", file=sys.stderr)
    if found:
        print("layering: see the Floors section of docs/architecture.md", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
