"""The floors of docs/architecture.md hold in the code (`make lint` runs this file): and the check
is not vacuous, each rule fails on an import planted the wrong way."""

from __future__ import annotations

import pytest

from tests.layering.imports import CLIENTS, FLOORS, SDK, Graph, packages, violations


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph.of_repo()


def test_the_code_keeps_the_floors(graph: Graph) -> None:
    assert violations(graph) == []


def test_every_package_is_on_a_floor(graph: Graph) -> None:
    assert set(packages(graph)) - {SDK} <= set(FLOORS) | set(CLIENTS)


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        # the ground floor reaching up, or to gRPC
        ("qsched_core.planted", "from qsched_runtime.errors import abort\n", "qsched_core may not import"),
        ("qsched_core.planted", "def f():\n    import grpc\n", "qsched_core imports no gRPC"),
        ("qsched_core.planted", "from google.rpc import status_pb2\n", "qsched_core imports no gRPC"),
        ("qsched_identity.planted", "import grpc\n", "qsched_identity imports no gRPC"),
        # identity is a library below the gRPC floor
        ("qsched_identity.planted", "from qsched_runtime import auth\n", "qsched_identity may not import"),
        # the gRPC floor knows neither the SDK nor the services nor operations
        ("qsched_runtime.planted", "from qsched.credentials import find_token\n", "may not import qsched "),
        ("qsched_runtime.planted", "import qsched_scheduler.server\n", "qsched_runtime may not import"),
        # services never import each other, nor the SDK beyond qsched.api and qsched.wire
        ("qsched_scheduler.planted", "from qsched_gateway import registry\n", "never another service"),
        ("qsched_executor.planted", "from qsched.errors import QschedError\n", "may not import qsched "),
        ("qsched_configs.planted", "from qsched_ops import args\n", "qsched_configs may not import"),
        # the SDK imports no service (a deferred import counts too)
        ("qsched.planted", "def f():\n    from qsched_gateway import estimate\n", "the SDK imports only"),
        ("qsched.cli.planted", "from qsched_ops.cli import up\n", "the SDK imports only"),
        ("qsched.planted", "import qsched_core.errors\n", "the SDK imports only"),
        # the web view is a client of the public API: no service, no server plumbing
        ("qsched_web.planted", "from qsched_scheduler import watch\n", "a client of the public API"),
        ("qsched_web.planted", "import qsched_runtime.errors\n", "a client of the public API"),
        ("qsched_web.planted", "from qsched_core.config import SERVICES\n", "a client of the public API"),
        # a package on no floor is refused until it is given one
        ("qsched_newthing.planted", "import qsched_core\n", "it is on no floor"),
    ],
)
def test_a_wrong_way_import_fails_the_check(graph: Graph, module: str, source: str, complaint: str) -> None:
    found = violations(graph.with_module(module, source))
    assert any(module in line and complaint in line for line in found), found


def test_an_import_cycle_fails_the_check(graph: Graph) -> None:
    # between modules: two SDK modules importing each other (the qsched.aio cycle that was)
    planted = graph.with_module("qsched.aio.planted_a", "from qsched.aio import planted_b\n")
    planted = planted.with_module("qsched.aio.planted_b", "def f():\n    import qsched.aio.planted_a\n")
    assert any("cycle between modules" in line and "planted_a" in line for line in violations(planted))
    # between packages, even when each import alone is allowed by the floors
    planted = graph.with_module("qsched_core.planted", "import qsched_benchmarks.estimate\n")
    found = violations(planted)
    assert any("cycle between packages qsched_benchmarks -> qsched_core" in line for line in found), found


def test_the_lint_command_fails_on_a_wrong_way_import(graph: Graph, monkeypatch, capsys) -> None:
    """`make lint` runs `python -m tests.layering`: exit 1, naming the import."""
    from tests.layering import __main__ as lint

    assert lint.main() == 0
    planted = graph.with_module("qsched.planted", "import qsched_scheduler\n")
    monkeypatch.setattr(lint.Graph, "of_repo", classmethod(lambda cls: planted))
    assert lint.main() == 1
    assert "qsched.planted:1 imports qsched_scheduler" in capsys.readouterr().err
