"""The plugin's import structure: its modules import each other without a circle, the
production-mode child and the xdist controller import only what they use, and the rule codes written
out for them match the registry.

The graph is read from the source (``ast``): every import that runs, at module level or inside a
function body, of one of the plugin's own modules. An import inside a function breaks no circle, it
only hides it until the function runs, so it counts like any other. Imports under
``if TYPE_CHECKING:`` never run and are left out, as is the implicit import of a package's
``__init__`` by its submodules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import pytest_fastapi_rules

PACKAGE_ROOT = Path(pytest_fastapi_rules.__file__).resolve().parent


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported``, at ``line`` of the importer's file."""

    importer: str
    imported: str
    line: int


def _module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package by its own name)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _executed_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` that can run: all of them but those under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(tree)
    return found


def import_graph(root: Path) -> list[Edge]:
    """The imports between the modules of the package at ``root``."""
    modules = _module_names(root)
    edges: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _executed_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                # `from package import module` imports the module; `from module import name`, the module.
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            edges.extend(
                Edge(name, target, node.lineno) for target in targets if target in modules and target != name
            )
    return edges


def circles(edges: list[Edge]) -> list[tuple[set[str], list[Edge]]]:
    """Each group of modules that import each other, with one circle through it (as its edges)."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, {}).setdefault(edge.imported, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.get(module, {}):
            if imported not in index:
                connect(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return [(group, _one_circle(graph, group)) for group in groups]


def _one_circle(graph: dict[str, dict[str, Edge]], group: set[str]) -> list[Edge]:
    """A shortest circle through the alphabetically first module of ``group`` (breadth first)."""
    start = min(group)
    paths: dict[str, list[Edge]] = {start: []}
    queue = [start]
    while queue:
        module = queue.pop(0)
        for imported, edge in sorted(graph.get(module, {}).items()):
            if imported == start:
                return [*paths[module], edge]
            if imported in group and imported not in paths:
                paths[imported] = [*paths[module], edge]
                queue.append(imported)
    raise AssertionError(f"no circle through {start}")  # a strongly connected group always has one


def describe(circle: list[Edge], modules: dict[str, Path]) -> str:
    root = next(iter(modules.values())).parent
    steps = [
        f"{edge.importer} ({modules[edge.importer].relative_to(root.parent)}:{edge.line}) -> {edge.imported}"
        for edge in circle
    ]
    return "\n  ".join(steps)


def test_the_plugin_imports_no_module_in_a_circle() -> None:
    modules = _module_names(PACKAGE_ROOT)
    found = circles(import_graph(PACKAGE_ROOT))
    assert not found, "import circles among the plugin's modules:\n" + "\n".join(
        f"- {len(group)} modules import each other ({', '.join(sorted(group))}), e.g.:\n  "
        + describe(circle, modules)
        for group, circle in found
    )


def test_a_circle_closed_inside_a_function_is_found(tmp_path: Path) -> None:
    """The check itself: ``low`` imports ``high`` only when a function runs, and is still named."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "high.py").write_text("from pkg.sub import low\n")
    (package / "sub" / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pkg import other\n"
        "def later():\n"
        "    from .. import high\n"
    )
    (package / "other.py").write_text("from pkg.sub.low import later\n")

    found = circles(import_graph(package))

    assert [[(edge.importer, edge.imported, edge.line) for edge in circle] for _, circle in found] == [
        [("pkg.high", "pkg.sub.low", 1), ("pkg.sub.low", "pkg.high", 5)]
    ]


def test_the_production_child_imports_only_what_it_uses() -> None:
    """The child (``python -m pytest_fastapi_rules.production``) runs in every session that checks
    production mode, and its imports are paid for before the app starts (issue #20): the probe
    run's data generation (polyfactory, faker), pytest, and httpx until the app has started, stay
    out of its import path."""
    code = "import sys, pytest_fastapi_rules.production.__main__; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )

    assert loaded >= {"pytest_fastapi_rules.production.__main__", "pytest_fastapi_rules.discovery"}
    unused = sorted(loaded & {"polyfactory", "faker", "pytest", "_pytest", "httpx"})
    assert not unused, f"the production-mode child imports {unused}"


def test_the_xdist_controller_imports_no_rule() -> None:
    """The xdist controller groups node ids into work units between the workers' collection and
    their first item (issue #20): importing the rules there, and with them FastAPI and SQLAlchemy,
    held every ``-n`` run up by half a second. The scheduler needs only node ids and
    ``PROBE_CODES``."""
    pytest.importorskip("xdist")
    code = (
        "import sys, pytest_fastapi_rules.plugin, pytest_fastapi_rules.xdist_scheduling; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )

    assert "pytest_fastapi_rules.xdist_scheduling" in loaded
    heavy = sorted(
        loaded & {"fastapi", "sqlalchemy", "pytest_fastapi_rules.rules", "pytest_fastapi_rules.items"}
    )
    assert not heavy, f"the xdist controller's scheduler imports {heavy}"


def test_the_xdist_probe_codes_are_the_registrys() -> None:
    """``PROBE_CODES`` is written out for the controller; it must name exactly the rules that run
    with the probes, or their items would probe on the wrong worker."""
    pytest.importorskip("xdist")
    from pytest_fastapi_rules.catalog import all_rules
    from pytest_fastapi_rules.xdist_scheduling import PROBE_CODES

    expected = sorted(rule.code for rule in all_rules() if rule.runs_with_probes)
    assert sorted(PROBE_CODES) == expected, f"xdist_scheduling.PROBE_CODES is stale; it must be {expected}"


def test_the_child_rule_codes_are_the_registrys() -> None:
    """``CHILD_RULE_CODES`` decides, before the rules are imported, whether a spare production-mode
    child is started; it must name exactly the rules that start the child."""
    from pytest_fastapi_rules.catalog import all_rules
    from pytest_fastapi_rules.production.protocol import CHILD_RULE_CODES

    expected = sorted(rule.code for rule in all_rules() if rule.background is not None)
    assert sorted(CHILD_RULE_CODES) == expected, f"protocol.CHILD_RULE_CODES is stale; it must be {expected}"
