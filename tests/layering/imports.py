"""The import graph of qsched's own code, and the floors it must keep (docs/architecture.md).

Every `import` and `from ... import` of every module under clients/python, services and hardware
counts, wherever it stands (at the top, deferred into a function, under TYPE_CHECKING): a
deferred import is still a dependency. The units of layering are the top-level packages, with
the SDK split in three: `qsched.api` (generated stubs), `qsched.wire`, and the rest of `qsched`.

The rules:
- a package imports only from the floors below its own, from itself, and from the packages its
  floor row names (`SAME_FLOOR`); the SDK imports only `qsched.api`, `qsched.wire` and
  `qsched_benchmarks`; `qsched_ops` may also use the SDK (it is a client of the stack) and run the
  web view; the web view (`qsched_web`, a client of the public API) imports what the SDK may, and the SDK;
- services never import each other (they share floor 3, and no row allows it);
- no module of `qsched_core` or `qsched_identity` imports gRPC;
- no import cycle, between packages or between modules."""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("clients/python", "services", "hardware")
GENERATED = ("qsched.api",)  # produced by the build: a target of imports, not scanned

SDK = "qsched"  # the SDK and CLI (every qsched.* module but qsched.api and qsched.wire)
FLOORS: dict[str, int] = {
    # 0 contract
    "qsched.api": 0,
    "qsched.wire": 0,
    "qsched_core": 0,
    "qsched_benchmarks": 0,
    # 1 libraries
    "qsched_hardware": 1,
    "qsched_lab_example": 1,
    "qsched_identity": 1,
    # 2 gRPC
    "qsched_runtime": 2,
    # 3 services
    "qsched_scheduler": 3,
    "qsched_configs": 3,
    "qsched_gateway": 3,
    "qsched_executor": 3,
    # 4 operations
    "qsched_ops": 4,
}
# What a package may import besides the floors below it (and itself).
SAME_FLOOR: dict[str, frozenset[str]] = {
    "qsched.wire": frozenset({"qsched.api"}),
    "qsched_benchmarks": frozenset({"qsched_core"}),
    "qsched_lab_example": frozenset({"qsched_hardware"}),  # a lab's experiment plug-ins
    # waits for health, seeds configs, writes the person's token; `qsched serve web` runs the web view
    "qsched_ops": frozenset({SDK, "qsched_web"}),
}
# The SDK is not on a floor: it reaches the services over their protos only.
SDK_MAY_IMPORT = frozenset({SDK, "qsched.api", "qsched.wire", "qsched_benchmarks"})
# Clients of the public API beside the SDK (no floor): like the SDK they reach the services over
# their protos only, and may use the SDK itself.
CLIENTS: dict[str, frozenset[str]] = {"qsched_web": SDK_MAY_IMPORT}
NO_GRPC = ("qsched_core", "qsched_identity")
GRPC_MODULES = ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "google.rpc")


def package_of(module: str) -> str:
    """The unit of layering a module belongs to."""
    for name in (*GENERATED, "qsched.wire"):
        if module == name or module.startswith(name + "."):
            return name
    top = module.split(".")[0]
    return SDK if top == "qsched" else top


def ours(module: str) -> bool:
    return module.split(".")[0].startswith("qsched")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (for `from a import b`: a.b when that is a module, else a)
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


@dataclass
class Graph:
    """Modules (name -> source) and the imports between them."""

    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_repo(cls, repo: Path = REPO) -> Graph:
        graph = cls()
        for root in ROOTS:
            for path in sorted((repo / root).rglob("*.py")):
                parts = list(path.relative_to(repo / root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                name = ".".join(parts)
                if package_of(name) not in GENERATED:
                    graph.sources[name] = path.read_text()
        return graph

    def with_module(self, name: str, source: str) -> Graph:
        """This graph plus one more module (for tests that plant a wrong-way import)."""
        return Graph({**self.sources, name: source})

    def imports(self) -> Iterator[Import]:
        for name, source in self.sources.items():
            for line, base, names in _statements(name, source):
                if names is None:
                    yield Import(name, base, line)
                    continue
                for alias in names:
                    sub = f"{base}.{alias}"
                    yield Import(name, sub if sub in self.sources else base, line)

    def module_of(self, target: str) -> str | None:
        """The scanned module an import target names (a.b.c -> a.b when c is not a module)."""
        while target and target not in self.sources:
            target = target.rpartition(".")[0]
        return target or None


@functools.cache
def _statements(name: str, source: str) -> tuple[tuple[int, str, tuple[str, ...] | None], ...]:
    """(line, module, names imported from it or None for `import module`) of every import."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else _relative(name, node.module, node.level)
            found.append((node.lineno, base, tuple(alias.name for alias in node.names)))
    return tuple(found)


def _relative(module: str, name: str, level: int) -> str:
    base = module.split(".")[: -level or None]
    return ".".join([*base, name])


def violations(graph: Graph) -> list[str]:
    """Every break of the rules, one line each ([] when the floors hold)."""
    found: list[str] = []
    package_edges: dict[str, dict[str, Import]] = defaultdict(dict)
    module_edges: dict[str, set[str]] = defaultdict(set)
    for imp in graph.imports():
        source_package = package_of(imp.source)
        if source_package in NO_GRPC and imp.target.startswith(GRPC_MODULES):
            found.append(f"{imp}: {source_package} imports no gRPC")
        if not ours(imp.target):
            continue
        target_package = package_of(imp.target)
        if target_package != source_package:
            package_edges[source_package].setdefault(target_package, imp)
            if not allowed(source_package, target_package):
                found.append(
                    f"{imp}: {source_package} may not import {target_package} ({why(source_package)})"
                )
        target_module = graph.module_of(imp.target)
        # Importing a package's own ancestors is how Python imports a submodule, not a dependency.
        if target_module and target_module != imp.source and not imp.source.startswith(target_module + "."):
            module_edges[imp.source].add(target_module)
    for cycle in cycles({k: set(v) for k, v in package_edges.items()}):
        edges = [str(package_edges[a][b]) for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
        found.append(f"import cycle between packages {' -> '.join(cycle)}: " + "; ".join(edges))
    for cycle in cycles(module_edges):
        found.append(f"import cycle between modules {' -> '.join([*cycle, cycle[0]])}")
    return found


def allowed(source: str, target: str) -> bool:
    if source == SDK:
        return target in SDK_MAY_IMPORT
    if source in CLIENTS:
        return target in CLIENTS[source]
    if source not in FLOORS:
        return False  # an unknown package: put it on a floor first
    if target in SAME_FLOOR.get(source, ()):
        return True
    return target in FLOORS and FLOORS[target] < FLOORS[source]


def why(source: str) -> str:
    if source == SDK:
        return "the SDK imports only qsched.api, qsched.wire and qsched_benchmarks"
    if source in CLIENTS:
        return "a client of the public API imports only what the SDK may, and the SDK"
    if source not in FLOORS:
        return "it is on no floor: add it to the table in docs/architecture.md and tests/layering"
    if FLOORS[source] == 3:
        return "a service imports floors 0-2 only, never another service"
    return f"floor {FLOORS[source]} imports only the floors below it"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node, each as a cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs here are small
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(_cycle_through(sorted(component), edges))

    for node in sorted(set(edges) | {n for targets in edges.values() for n in targets}):
        if node not in index:
            visit(node)
    return found


def _cycle_through(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One cycle inside a strongly connected component, from its first node."""
    members = set(component)
    path = [component[0]]
    seen = {component[0]}
    while True:
        nxt = next(n for n in sorted(edges[path[-1]]) if n in members)
        if nxt == component[0] or nxt in seen:
            return path[path.index(nxt) :] if nxt in seen and nxt != component[0] else path
        path.append(nxt)
        seen.add(nxt)


def packages(graph: Graph) -> Iterable[str]:
    return sorted({package_of(name) for name in graph.sources})
