"""The architecture, checked: the pure core stays pure, the shared OCPP-J layer stands alone, no import cycles.

Imports are read from the source (every `import` statement, also inside functions and under
TYPE_CHECKING: a cycle held apart by those is still a cycle), not by importing anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("csms", "ocppj", "simulator", "scenarios", "loadtests", "benchmarks")
# What a pure module may not touch: IO libraries, the event loop, the database, the web, the clock.
IMPURE = {
    "trio",
    "trio_websocket",
    "wsproto",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "hypercorn",
    "httpx",
    "jinja2",
    "prometheus_client",
    "asyncio",
    "socket",
    "time",
    "threading",
    "subprocess",
    "os",
}
CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(absolute module or package imported, line) for every import statement in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def _internal(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _core_modules() -> list[str]:
    return sorted(m for m in MODULES if m == "csms.core" or m.startswith("csms.core.")) + [
        "ocppj.frames",
        "ocppj.errors",
    ]


@pytest.mark.parametrize("module", _core_modules())
def test_the_core_is_pure(module):
    path = MODULES[module]
    for target, line in _imports(module, path):
        top = target.split(".")[0]
        assert top not in IMPURE, f"{path.relative_to(ROOT)}:{line} imports {target}: the core does no IO"
        internal = _internal(target)
        if module.startswith("csms.core") and internal is not None:
            assert internal.startswith("csms.core"), (
                f"{path.relative_to(ROOT)}:{line} imports {internal}: the core depends on nothing outside it"
            )
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            assert (node.func.value.id, node.func.attr) not in CLOCK_READS, (
                f"{path.relative_to(ROOT)}:{node.lineno} reads the clock: take `now` as a parameter"
            )


def test_the_purity_check_catches_a_core_module_that_imports_trio(tmp_path, monkeypatch):
    """The check above must be able to fail: a core module importing trio is caught."""
    fake = tmp_path / "csms" / "core" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import trio\nfrom datetime import datetime\nx = datetime.now()\n")
    monkeypatch.setitem(MODULES, "csms.core.bad", fake)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="imports trio"):
        test_the_core_is_pure("csms.core.bad")


def test_the_ocppj_layer_stands_alone():
    """The simulator and the CSMS share it; it needs neither."""
    for module, path in MODULES.items():
        if module.split(".")[0] != "ocppj":
            continue
        for target, line in _imports(module, path):
            assert target.split(".")[0] not in ("csms", "simulator", "scenarios"), (
                f"{path.relative_to(ROOT)}:{line} imports {target}"
            )


def _graph(*, with_parents: bool = False) -> dict[str, set[str]]:
    """Module -> the modules it imports; `with_parents`: also -> its parent packages, which importing it runs."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _line in _imports(module, path):
            internal = _internal(target)
            if internal is not None and internal != module:
                graph[module].add(internal)
        if with_parents:
            parts = module.split(".")
            graph[module].update(p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in MODULES)
    return graph


def _harmful(cycles: list[list[str]]) -> list[list[str]]:
    """Cycles through package __init__ files, less those of a package with its own submodules (a package that
    re-exports them): one that leaves the package can meet a partially initialised module."""
    out = []
    for cycle in cycles:
        packages = [m for m in cycle if MODULES.get(m, Path()).name == "__init__.py"]
        outer = min(packages, key=len) if packages else None
        if outer is None or not all(m == outer or m.startswith(outer + ".") for m in cycle):
            out.append(cycle)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_import_cycles_through_a_package_init():
    """Importing a.b.c runs a/__init__ and a/b/__init__ first: an import there that leads back is a cycle too."""
    assert _harmful(_cycles(_graph(with_parents=True))) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_cycle_leaving_a_package_through_its_init_is_harmful(monkeypatch):
    monkeypatch.setitem(MODULES, "pkg", Path("pkg/__init__.py"))
    monkeypatch.setitem(MODULES, "pkg.sub", Path("pkg/sub.py"))
    monkeypatch.setitem(MODULES, "other", Path("other.py"))
    assert _harmful([["pkg", "pkg.sub"]]) == []  # a package re-exporting its own submodule
    assert _harmful([["other", "pkg", "pkg.sub"]]) == [["other", "pkg", "pkg.sub"]]
