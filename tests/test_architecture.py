"""The layout has one direction (DESIGN.md, issue 11): each package imports only those
below it, import strings included, and no two modules import each other in a cycle.

    homeward (the vocabulary) <- edge, alerts <- server, device_sim <- stack, bench

``stack`` is the composition root (CLI wiring, demo, private servers), ``bench``
the benchmark harnesses; device_sim may use edge's encoders.

Every module is parsed, not imported: ``import x``/``from x import y`` at any depth
(a function-local import counts as much as a top-level one), ``importlib.import_module``
and ``__import__`` calls, and any string constant shaped like a dotted module path
or an entry-point ``module:attribute`` naming one of our packages.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("homeward", "edge", "server", "alerts", "device_sim", "stack", "bench")

#: What each package may name besides itself.  Everything not listed is forbidden.
ALLOWED: dict[str, set[str]] = {
    "homeward": set(),
    "edge": {"homeward"},
    "alerts": {"homeward"},
    "server": {"homeward", "alerts"},
    "device_sim": {"homeward", "edge"},
    # The composition root wires everything, the benchmark commands included.
    "stack": {"homeward", "edge", "alerts", "server", "device_sim", "bench"},
    "bench": {"homeward", "edge", "alerts", "server", "device_sim", "stack"},
}

#: Modules of a package above that a package may name all the same (and their submodules):
#: the alert engine and the store build the FHIR push channel's Bundles with the server's
#: pure FHIR mapping (alerts/fhir_push.py).  Kept pure by the test below.
ALSO_ALLOWED: dict[str, tuple[str, ...]] = {"alerts": ("server.fhir.push",)}
#: What importing those modules may load of ours: the mapping, and the packages above it.
PURE_FHIR = {"server", "server.fhir", "server.fhir.push", "server.fhir.resources",
             "server.fhir.codes"}

_MODULE_STRING = re.compile(
    r"^(?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?::[A-Za-z_][A-Za-z0-9_.]*)?$"
    r"|^(?:" + "|".join(PACKAGES) + r"):[A-Za-z_][A-Za-z0-9_.]*$")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def named_modules(module: str, path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, dotted name, is_import_statement) for everything ``module`` imports or names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, True
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module)
                    if node.level else node.module or "")
            yield node.lineno, base, True
            for alias in node.names:  # ``from pkg import module`` names pkg.module
                yield node.lineno, f"{base}.{alias.name}", True
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and _MODULE_STRING.match(node.value):
            yield node.lineno, node.value.split(":")[0], False


def _package(name: str) -> str:
    return name.split(".")[0]


def test_every_package_names_only_the_packages_below_it() -> None:
    violations = []
    for module, path in _modules().items():
        own = _package(module)
        for line, name, _ in named_modules(module, path):
            other = _package(name)
            if other in PACKAGES and other != own and other not in ALLOWED[own] and not any(
                    name == m or name.startswith(f"{m}.") for m in ALSO_ALLOWED.get(own, ())):
                violations.append(f"{path.relative_to(ROOT)}:{line}: {own} names {name}")
    assert violations == []


def test_the_server_modules_alerts_may_import_load_only_the_pure_fhir_mapping() -> None:
    """Importing server.fhir.push runs server/__init__ and server/fhir/__init__ too: none of
    them may bring in a module that does I/O or names alerts (a cycle)."""
    modules = _modules()
    graph = _top_level_graph(modules)
    seen: set[str] = set()
    todo = list(ALSO_ALLOWED["alerts"])
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # its packages run first
        todo += [m for m in graph[module] if _package(m) != "homeward"]
    assert seen <= PURE_FHIR, f"server.fhir.push now loads {sorted(seen - PURE_FHIR)}"
    for module in seen:
        names = {_package(n) for _, n, _ in named_modules(module, modules[module])}
        assert names & set(PACKAGES) <= {"homeward", "server"}, module


def test_only_edge_ble_imports_bleak() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line}" for module, path in _modules().items()
                 if module.startswith("edge.") and module != "edge.ble"
                 for line, name, is_import in named_modules(module, path)
                 if is_import and _package(name) == "bleak"]
    assert offenders == []


def _top_level_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> our modules it imports when it is itself imported (module-level and
    class-level statements; not function bodies, not ``if TYPE_CHECKING:``)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        pending: list[ast.stmt] = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                pending.extend(node.orelse)
                continue
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = (_resolve_relative(module, is_package, node.level, node.module)
                        if node.level else node.module or "")
                edges.add(base)
                edges.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.ClassDef | ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        pending.extend(child.body if isinstance(child, ast.ExceptHandler)
                                       else [child])
        graph[module] = {e for e in edges if e in modules and e != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules() -> None:
    graph = _top_level_graph(_modules())
    # A package's __init__ re-exporting its own submodules is not a cycle worth
    # forbidding; drop package -> own-submodule edges.
    for module, edges in graph.items():
        if (ROOT / module.replace(".", "/") / "__init__.py").exists():
            graph[module] = {e for e in edges if not e.startswith(module + ".")}
    assert _cycles(graph) == []


# -- the checker itself, on examples ------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ("import device_sim.radio", "device_sim.radio"),
    ("from device_sim import backend", "device_sim.backend"),
    ("def f():\n    from device_sim.radio import VirtualRadio", "device_sim.radio"),
    ("SCANNER = 'device_sim.backend:SimBleakScanner'", "device_sim.backend"),
    ("import importlib\nimportlib.import_module('device_sim.radio')", "device_sim.radio"),
])
def test_the_checker_sees_imports_and_import_strings(tmp_path: Path, source: str,
                                                     expected: str) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert expected in {name for _, name, _ in named_modules("edge.m", path)}


def test_the_checker_ignores_prose_and_finds_cycles(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("A = 'edge agent'\nB = 'server'\nC = 'see server.api for more'\n")
    assert list(named_modules("homeward.m", path)) == []
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
