"""The code index: the app's own source, found through the running app and parsed once with ``ast``.

Source rules (FR302-FR307, FR401, FR403, FR602, FR703) read the code the app is made of, not whatever
lies on disk. The index starts from the facts:

- the imported modules of the app's own top-level packages (``AppFacts.own_modules``);
- the modules of the endpoints, of every callable in their dependency trees, of the exception
  handlers, the middleware classes, the lifespan, the ORM models and the settings classes, when those
  modules are project code (not the standard library, not site-packages, not a virtual environment);
- the modules of the app's own top-level packages (``AppFacts.own_packages``) that are on disk but not
  imported yet (a service imported lazily inside a function, a module nobody imports), found by
  walking the package folders. The walk skips test code (``tests/`` folders, ``test_*.py``,
  ``conftest.py``), virtual environments, ``site-packages``, migrations, hidden folders, and modules
  that build an app of their own at import time (another entry point, a script, a sample variant):
  they are not part of *this* app.

Each module is parsed once; the index is cached on the facts object (:func:`source_index`). Name
resolution is deliberately simple and conservative: imports are read statically, and where a name's
meaning matters (an annotation, a class, a module global), the already-imported module is asked at
runtime, without calling anything.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import gc
import importlib.util
import inspect
import re
import sys
import sysconfig
import time
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_fastapi_rules.facts import AppFacts, unwrap_callable
from pytest_fastapi_rules.registry import Location

_INDEX_ATTRIBUTE = "_fastapi_rules_source_index"

_LIBRARY_DIRS = tuple(
    sorted(
        {
            str(Path(path).resolve())
            for key in ("purelib", "platlib", "stdlib", "platstdlib")
            if (path := sysconfig.get_paths().get(key))
        }
    )
)
#: Folders the disk walk never enters: tests, tooling, environments, generated code.
_SKIPPED_DIRS = frozenset(
    {
        "tests",
        "test",
        "testing",
        "__pycache__",
        "node_modules",
        "site-packages",
        "dist-packages",
        "migrations",
        "alembic",
        "build",
        "dist",
    }
)
#: Dotted-name parts that mark test code, for modules that are already imported.
_TEST_PARTS = frozenset({"tests", "test", "testing", "conftest"})

MISSING: Any = object()
"""What :meth:`SourceModule.value_of` answers when a name has no runtime value it can read safely."""


# -- which files are the project's -----------------------------------------------------------------


def is_library_file(path: Path) -> bool:
    """Whether ``path`` belongs to the interpreter or to installed packages (never the app's code)."""
    text = str(path)
    if text.startswith(_LIBRARY_DIRS):
        return True
    return "site-packages" in path.parts or "dist-packages" in path.parts


def is_test_module_name(name: str) -> bool:
    """Test code by its dotted name: a ``tests`` package, ``test_*``/``*_test`` modules, conftest."""
    parts = name.split(".")
    if any(part in _TEST_PARTS for part in parts):
        return True
    last = parts[-1]
    return last.startswith("test_") or last.endswith("_test")


def _module_file(module: ModuleType | None) -> Path | None:
    file = getattr(module, "__file__", None)
    if not file or not str(file).endswith(".py"):
        return None
    try:
        return Path(file).resolve()
    except OSError:
        return None


# -- ast helpers ---------------------------------------------------------------------------------------


def dotted_parts(expr: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything that is not a plain name chain."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return list(reversed(parts))


def dotted_text(expr: ast.AST) -> str | None:
    parts = dotted_parts(expr)
    return ".".join(parts) if parts else None


def iter_body(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node of a function body, without entering nested functions, lambdas or classes.

    Code in a nested ``def`` or ``lambda`` does not run where it is written (it may be handed to a
    thread: ``asyncio.to_thread(lambda: open(path).read())``), so it is judged on its own.
    """
    stack = list(reversed(list(nodes)))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def child_statements(node: ast.AST) -> Iterator[ast.AST]:
    """The statements nested in a compound statement (``if``, ``for``, ``with``, ``try``, ``match``).

    ``def`` and ``class`` only occur in statement lists, so finding them never needs to walk
    expressions.
    """
    for name in ("body", "orelse", "finalbody"):
        value = getattr(node, name, None)
        if isinstance(value, list):
            yield from value
    for handler in getattr(node, "handlers", None) or ():
        yield from handler.body
    for case in getattr(node, "cases", None) or ():
        yield from case.body


def _is_type_checking_test(test: ast.expr) -> bool:
    text = dotted_text(test)
    return text in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def first_line(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    """The line CPython reports as ``co_firstlineno``: the first decorator's, or the ``def``'s."""
    return min([decorator.lineno for decorator in node.decorator_list] + [node.lineno])


# -- one module -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedName:
    """One name an import statement brings in, resolved to absolute dotted names."""

    node: ast.Import | ast.ImportFrom
    #: The module imported (``src.users.repository``), or the module a name comes from.
    module: str
    #: The name taken from ``module`` (``UserRepository``), or None when a module itself is imported.
    name: str | None
    #: The local name it is bound to.
    local: str
    type_checking: bool

    @property
    def target(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module


@dataclass(eq=False)
class FunctionInfo:
    """A ``def``/``async def`` of a module, with its enclosing class and function."""

    module: SourceModule
    node: ast.FunctionDef | ast.AsyncFunctionDef
    qualname: str
    class_node: ast.ClassDef | None
    class_qualname: str | None
    parent: FunctionInfo | None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def is_async(self) -> bool:
        return isinstance(self.node, ast.AsyncFunctionDef)

    @property
    def location(self) -> Location:
        return self.module.location(self.node)

    @cached_property
    def body_nodes(self) -> list[ast.AST]:
        return list(iter_body(self.node.body))

    def body(self) -> Iterator[ast.AST]:
        """The nodes of the body, nested functions and classes not entered (see :func:`iter_body`)."""
        return iter(self.body_nodes)

    def calls(self) -> Iterator[ast.Call]:
        for node in self.body_nodes:
            if isinstance(node, ast.Call):
                yield node

    @cached_property
    def parameters(self) -> dict[str, ast.arg]:
        args = self.node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        if args.vararg:
            every.append(args.vararg)
        if args.kwarg:
            every.append(args.kwarg)
        return {arg.arg: arg for arg in every}

    @cached_property
    def bindings(self) -> dict[str, list[ast.AST]]:
        """Local names bound in the body, each with the expressions (or nodes) that bind it."""
        bound: dict[str, list[ast.AST]] = {}

        def bind(target: ast.AST, value: ast.AST) -> None:
            if isinstance(target, ast.Name):
                bound.setdefault(target.id, []).append(value)
            elif isinstance(target, ast.Tuple | ast.List):
                for element in target.elts:
                    bind(element, element)
            elif isinstance(target, ast.Starred):
                bind(target.value, target)

        for node in self.body():
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target, node.value)
            elif isinstance(node, ast.AnnAssign):
                bind(node.target, node.value if node.value is not None else node)
            elif isinstance(node, ast.AugAssign | ast.For | ast.AsyncFor):
                bind(node.target, node)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                bind(node.optional_vars, node.context_expr)
            elif isinstance(node, ast.NamedExpr):
                bind(node.target, node.value)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    bound.setdefault(local, []).append(node)
            elif isinstance(node, ast.comprehension):
                bind(node.target, node)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.setdefault(node.name, []).append(node)
        return bound

    @cached_property
    def local_names(self) -> frozenset[str]:
        """Parameters and names bound in the body: they shadow imports and builtins."""
        return frozenset(self.parameters) | frozenset(self.bindings)

    def annotation_of(self, name: str) -> ast.expr | None:
        """The annotation of a parameter, or of a local ``name: T = ...``."""
        param = self.parameters.get(name)
        if param is not None:
            return param.annotation
        for node in self.body():
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
            ):
                return node.annotation
        return None

    def nested_function(self, name: str) -> FunctionInfo | None:
        """A function defined directly in this function's body, by name."""
        for info in self.module.functions:
            if info.parent is self and info.name == name:
                return info
        return None

    def free_names(self) -> set[str]:
        """Names the body reads but does not bind: closures over the enclosing function."""
        used = {
            node.id
            for node in ast.walk(self.node)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        }
        return used - set(self.local_names)


@dataclass(eq=False)
class SourceModule:
    """One module of the app: its file, its parsed tree and, when imported, the module object."""

    name: str
    path: Path
    display: str
    source: str
    tree: ast.Module
    module: ModuleType | None
    #: ``is_module_name`` answers, shared by the modules of one index (imports repeat a lot).
    module_names: dict[str, bool] = field(default_factory=dict, repr=False)

    def is_module(self, name: str) -> bool:
        known = self.module_names.get(name)
        if known is None:
            known = self.module_names[name] = is_module_name(name)
        return known

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def last_part(self) -> str:
        return self.name.rpartition(".")[2]

    @cached_property
    def lines(self) -> list[str]:
        return self.source.splitlines()

    @cached_property
    def nodes(self) -> list[ast.AST]:
        """Every node of the module, breadth first (``ast.walk`` once; the rules share the list)."""
        return list(ast.walk(self.tree))

    # -- locations and excerpts ---------------------------------------------------------------

    def column(self, node: ast.AST) -> int | None:
        """1-based column in characters (``ast`` counts UTF-8 bytes)."""
        line_no: int | None = getattr(node, "lineno", None)
        offset: int | None = getattr(node, "col_offset", None)
        if line_no is None or offset is None:
            return None
        try:
            line = self.lines[line_no - 1]
        except IndexError:
            return offset + 1
        return len(line.encode("utf-8")[:offset].decode("utf-8", "replace")) + 1

    def location(self, node: ast.AST | None = None) -> Location:
        if node is None or getattr(node, "lineno", None) is None:
            return Location(file=self.display, line=1, column=1)
        return Location(file=self.display, line=node.lineno, column=self.column(node))  # type: ignore[attr-defined]

    def excerpt(self, node: ast.AST, limit: int = 80) -> str:
        """The node's own source, on one line and at most ``limit`` characters.

        For a compound statement (``with``, ``for``, ``def``...) only its header line, without the
        colon: the body is not what the finding is about.
        """
        text = ast.get_source_segment(self.source, node) or ""
        if not text:
            line_no = getattr(node, "lineno", None)
            text = self.lines[line_no - 1] if line_no and line_no <= len(self.lines) else ""
        if isinstance(getattr(node, "body", None), list) and text:
            text = text.splitlines()[0].rstrip().removesuffix(":")
        return shorten(text, limit)

    # -- imports ------------------------------------------------------------------------------

    def absolute(self, node: ast.ImportFrom) -> str:
        """The absolute module name of a (possibly relative) ``from ... import``."""
        if not node.level:
            return node.module or ""
        parts = self.package.split(".") if self.package else []
        if node.level > 1:
            parts = parts[: max(0, len(parts) - (node.level - 1))]
        base = ".".join(parts)
        if node.module:
            return f"{base}.{node.module}" if base else node.module
        return base

    @cached_property
    def type_checking_nodes(self) -> frozenset[int]:
        """ids of the nodes under ``if TYPE_CHECKING:`` (imports only there are for type checkers)."""
        ids: set[int] = set()
        for node in self.nodes:
            if isinstance(node, ast.If) and _is_type_checking_test(node.test):
                for child in node.body:
                    ids.update(id(sub) for sub in ast.walk(child))
        return frozenset(ids)

    @cached_property
    def imported_names(self) -> list[ImportedName]:
        """Every import of the module (nested ones too), resolved to absolute names."""
        found: list[ImportedName] = []
        for node in self.nodes:
            type_checking = id(node) in self.type_checking_nodes
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    found.append(ImportedName(node, alias.name, None, local, type_checking))
            elif isinstance(node, ast.ImportFrom):
                base = self.absolute(node)
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    local = alias.asname or alias.name
                    candidate = f"{base}.{alias.name}"
                    if self.is_module(candidate):
                        found.append(ImportedName(node, candidate, None, local, type_checking))
                    else:
                        found.append(ImportedName(node, base, alias.name, local, type_checking))
        found.sort(key=lambda item: (item.node.lineno, item.node.col_offset))
        return found

    @cached_property
    def imports(self) -> dict[str, str]:
        """Local name -> what it names (``requests`` -> ``requests``, ``sleep`` -> ``time.sleep``).

        ``import a.b`` binds ``a``; attribute access then spells the rest. Module-level imports win
        over imports inside functions when both bind the same name (``ast.walk`` is breadth first).
        """
        mapping: dict[str, str] = {}
        for node in self.nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        mapping.setdefault(alias.asname, alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        mapping.setdefault(top, top)
            elif isinstance(node, ast.ImportFrom):
                base = self.absolute(node)
                for alias in node.names:
                    if alias.name != "*":
                        mapping.setdefault(alias.asname or alias.name, f"{base}.{alias.name}")
        return mapping

    @cached_property
    def module_level_names(self) -> frozenset[str]:
        """Names the module itself defines (functions, classes, assignments) at the top level."""
        names: set[str] = set()
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
        return frozenset(names)

    def resolve(self, expr: ast.AST, shadowed: Iterable[str] = ()) -> str | None:
        """The dotted name an expression spells, through the module's imports.

        ``requests.get`` -> ``requests.get``; ``sleep`` (from time) -> ``time.sleep``; ``open`` ->
        ``builtins.open``; a name of this module -> ``<module>.<name>``. None for local variables
        (``shadowed``) and anything that is not a plain name chain.
        """
        parts = dotted_parts(expr)
        if not parts:
            return None
        head = parts[0]
        if head in set(shadowed):
            return None
        if head in self.module_level_names and head not in self.imports:
            base = f"{self.name}.{head}"
        elif head in self.imports:
            base = self.imports[head]
        elif hasattr(builtins, head):
            base = f"builtins.{head}"
        else:
            return None
        return ".".join([base, *parts[1:]])

    # -- runtime values -----------------------------------------------------------------------

    def value_of(self, expr: ast.AST) -> Any:
        """The runtime value a name chain denotes in the imported module, or :data:`MISSING`.

        Reads module globals and attributes of modules and classes only (``inspect.getattr_static``
        on classes): nothing is called, no property runs.
        """
        if self.module is None:
            return MISSING
        parts = dotted_parts(expr)
        if not parts:
            return MISSING
        namespace = vars(self.module)
        if parts[0] in namespace:
            value = namespace[parts[0]]
        elif hasattr(builtins, parts[0]):
            value = getattr(builtins, parts[0])
        else:
            return MISSING
        for part in parts[1:]:
            value = safe_attribute(value, part)
            if value is MISSING:
                return MISSING
        return value

    def annotation_type(self, annotation: ast.expr | None, depth: int = 0) -> Any:
        """The class an annotation names: through ``Annotated``, ``Optional``/``X | None`` and
        string annotations, and through module-level aliases (``SessionDep``). None if unknown."""
        if annotation is None or depth > 6:
            return None
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                parsed = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return None
            return self.annotation_type(parsed, depth + 1)
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
            for side in (annotation.left, annotation.right):
                if isinstance(side, ast.Constant) and side.value is None:
                    continue
                found = self.annotation_type(side, depth + 1)
                if found is not None:
                    return found
            return None
        if isinstance(annotation, ast.Subscript):
            base = self.value_of(annotation.value)
            inner = annotation.slice
            elements = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            if base in (typing.Annotated, typing.Optional) and elements:
                return self.annotation_type(elements[0], depth + 1)
            if base is typing.Union:
                for element in elements:
                    if isinstance(element, ast.Constant) and element.value is None:
                        continue
                    found = self.annotation_type(element, depth + 1)
                    if found is not None:
                        return found
            return None
        value = self.value_of(annotation)
        if value is MISSING:
            return None
        return runtime_class(value)

    # -- functions ----------------------------------------------------------------------------

    @cached_property
    def functions(self) -> list[FunctionInfo]:
        """Every function and method of the module, nested ones included, in source order."""
        found: list[FunctionInfo] = []

        def visit(
            nodes: Iterable[ast.AST],
            prefix: str,
            class_node: ast.ClassDef | None,
            class_qualname: str | None,
            parent: FunctionInfo | None,
        ) -> None:
            for node in nodes:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    qualname = f"{prefix}{node.name}"
                    info = FunctionInfo(self, node, qualname, class_node, class_qualname, parent)
                    found.append(info)
                    visit(node.body, f"{qualname}.<locals>.", None, None, info)
                    continue
                if isinstance(node, ast.ClassDef):
                    qualname = f"{prefix}{node.name}"
                    visit(node.body, f"{qualname}.", node, qualname, parent)
                    continue
                visit(child_statements(node), prefix, class_node, class_qualname, parent)

        visit(self.tree.body, "", None, None, None)
        return found

    @cached_property
    def functions_by_first_line(self) -> dict[int, FunctionInfo]:
        return {first_line(info.node): info for info in self.functions}

    @cached_property
    def classes(self) -> list[tuple[str, ast.ClassDef]]:
        """``(qualname, node)`` of every class of the module (nested in classes too)."""
        found: list[tuple[str, ast.ClassDef]] = []

        def visit(nodes: Iterable[ast.AST], prefix: str) -> None:
            for node in nodes:
                if isinstance(node, ast.ClassDef):
                    qualname = f"{prefix}{node.name}"
                    found.append((qualname, node))
                    visit(node.body, f"{qualname}.")
                elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    visit(child_statements(node), prefix)

        visit(self.tree.body, "")
        return found

    def runtime_class(self, qualname: str | None) -> type | None:
        """The class object for a class of this module (module-level or nested in classes)."""
        if self.module is None or not qualname or "<locals>" in qualname:
            return None
        value: Any = self.module
        for part in qualname.split("."):
            value = safe_attribute(value, part)
            if value is MISSING:
                return None
        return value if inspect.isclass(value) else None


def shorten(text: str, limit: int = 80) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    text = _AFTER_OPENING.sub(r"\1", _BEFORE_CLOSING.sub(r"\1", text))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_AFTER_OPENING = re.compile(r"([(\[{]) ")
_BEFORE_CLOSING = re.compile(r",? ([)\]}])")


def safe_attribute(value: Any, name: str) -> Any:
    """``getattr`` on modules, ``inspect.getattr_static`` on classes; MISSING for anything else."""
    try:
        if isinstance(value, ModuleType):
            return getattr(value, name, MISSING)
        if inspect.isclass(value):
            found = inspect.getattr_static(value, name, MISSING)
            if isinstance(found, staticmethod | classmethod):
                return found.__func__
            return found
    except Exception:  # noqa: BLE001 - a module __getattr__ may raise anything
        return MISSING
    return MISSING


def runtime_class(value: Any) -> type | None:
    """The class an annotation value stands for (``Annotated[X, ...]`` and aliases unwrapped)."""
    for _ in range(6):
        if inspect.isclass(value) and not typing.get_args(value):
            return value
        origin = typing.get_origin(value)
        args = typing.get_args(value)
        if origin is typing.Annotated and args:
            value = args[0]
            continue
        if origin is typing.Union or type(value).__name__ == "UnionType":
            candidates = [arg for arg in args if arg is not type(None)]
            if len(candidates) == 1:
                value = candidates[0]
                continue
            return None
        return None
    return None


def is_module_name(name: str) -> bool:
    """Whether ``name`` is a module: imported, or a file next to its imported parent package.

    Never imports anything (``importlib.util.find_spec`` would import the parent packages).
    """
    if name in sys.modules:
        return True
    parent_name, _, last = name.rpartition(".")
    parent = sys.modules.get(parent_name) if parent_name else None
    for directory in getattr(parent, "__path__", None) or []:
        folder = Path(directory)
        if (folder / f"{last}.py").is_file() or (folder / last / "__init__.py").is_file():
            return True
    return False


# -- the index --------------------------------------------------------------------------------------


@dataclass
class SourceIndex:
    """The app's own modules, parsed: see the module docstring for which modules and why."""

    facts: AppFacts
    modules: dict[str, SourceModule] = field(default_factory=dict)
    #: Files that could not be read or parsed, with the reason (reported by no rule; for debugging).
    errors: dict[str, str] = field(default_factory=dict)
    build_seconds: float = 0.0

    def __iter__(self) -> Iterator[SourceModule]:
        if len(self._ordered) != len(self.modules):
            self._ordered = [self.modules[name] for name in sorted(self.modules)]
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self.modules)

    def get(self, name: str | None) -> SourceModule | None:
        return self.modules.get(name) if name else None

    by_path: dict[Path, SourceModule] = field(default_factory=dict)
    _filenames: dict[str, SourceModule | None] = field(default_factory=dict, repr=False)
    _ordered: list[SourceModule] = field(default_factory=list, repr=False)
    _module_names: dict[str, bool] = field(default_factory=dict, repr=False)
    #: Per class, the instance attribute types :func:`attribute_types` found.
    attribute_cache: dict[type, dict[str, type]] = field(default_factory=dict, repr=False)

    def module_of(self, obj: Any) -> SourceModule | None:
        """The indexed module an object (function, class, instance) is defined in."""
        target = unwrap_callable(obj)
        if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
            target = type(target)
        return self.get(getattr(target, "__module__", None))

    def function_info(self, func: Any) -> FunctionInfo | None:
        """The indexed ``def`` of a runtime function (decorators and partials unwrapped)."""
        target = unwrap_callable(func)
        if inspect.ismethod(target):
            target = target.__func__
        code = getattr(target, "__code__", None)
        if code is None:
            return None
        module = self._module_by_filename(code.co_filename)
        if module is None:
            return None
        return module.functions_by_first_line.get(code.co_firstlineno)

    def _module_by_filename(self, filename: str) -> SourceModule | None:
        if filename not in self._filenames:
            try:
                self._filenames[filename] = self.by_path.get(Path(filename).resolve())
            except OSError:
                self._filenames[filename] = None
        return self._filenames[filename]

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def build(cls, facts: AppFacts) -> SourceIndex:
        started = time.perf_counter()
        index = cls(facts)
        # Parsing creates many long-lived objects: the cyclic collector would rescan the growing
        # heap again and again for no garbage (about half the build time on a 700-module app).
        paused = gc.isenabled()
        gc.disable()
        try:
            for module in index._seed_modules():
                index._add(module.__name__, _module_file(module), module)
            index._walk_own_packages()
            index._add_sibling_imports()
        finally:
            if paused:
                gc.enable()
        index.build_seconds = time.perf_counter() - started
        return index

    def _seed_modules(self) -> list[ModuleType]:
        """Imported modules the app is made of (see the module docstring)."""
        facts = self.facts
        seeds: dict[str, ModuleType] = {module.__name__: module for module in facts.own_modules}
        objects: list[Any] = [facts.loaded.module]
        for route in facts.routes:
            objects.append(route.endpoint)
            for dependant in route.iter_dependants():
                if dependant.call is not None:
                    objects.append(dependant.call)
        objects.extend(facts.exception_handlers.values())
        objects.extend(middleware.cls for middleware in facts.middleware)
        objects.append(getattr(getattr(facts.app, "router", None), "lifespan_context", None))
        with contextlib.suppress(Exception):  # an app without SQLAlchemy models
            objects.extend(facts.mapped_classes)
        objects.extend(settings_classes(facts))
        for obj in objects:
            if obj is None:
                continue
            target = unwrap_callable(obj)
            if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
                target = type(target)
            module = sys.modules.get(getattr(target, "__module__", None) or "")
            if module is not None:
                seeds.setdefault(module.__name__, module)
        return [seeds[name] for name in sorted(seeds)]

    @cached_property
    def project_dirs(self) -> tuple[Path, ...]:
        """Where the project's files live: the rootdir, and the app module's top-level package
        (imported from ``--fastapi-app-dir`` it may lie outside the rootdir)."""
        dirs = [self.facts.root.resolve()]
        module = self.facts.loaded.module
        top = sys.modules.get(module.__name__.split(".")[0], module)
        for directory in getattr(top, "__path__", None) or []:
            dirs.append(Path(directory).resolve())
        file = _module_file(top)
        if file is not None and not getattr(top, "__path__", None):
            dirs.append(file.parent)
        return tuple(dirs)

    def is_project_file(self, path: Path) -> bool:
        """Under the project's folders and not a library (a library on PYTHONPATH outside the
        project, a ``--target`` install, a virtual environment's site-packages)."""
        if is_library_file(path):
            return False
        return any(path == directory or directory in path.parents for directory in self.project_dirs)

    def _add(self, name: str, path: Path | None, module: ModuleType | None) -> None:
        if (
            path is None
            or name in self.modules
            or is_test_module_name(name)
            or not self.is_project_file(path)
        ):
            return
        if path in self.by_path:
            return
        try:
            raw = path.read_bytes()
            source = importlib.util.decode_source(raw)
            tree = ast.parse(raw, filename=str(path))
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError) as exc:
            self.errors[str(path)] = f"{type(exc).__name__}: {exc}"
            return
        added = SourceModule(
            name=name,
            path=path,
            display=self.facts.relative(path),
            source=source,
            tree=tree,
            module=module,
            module_names=self._module_names,
        )
        self.modules[name] = added
        self.by_path[path] = added

    def _walk_own_packages(self) -> None:
        """Add the modules of the own top-level packages that are on disk but not imported."""
        spec_attribute = self.facts.loaded.spec.rpartition(":")[2].split(".")[0]
        for package_name in sorted(self.facts.own_packages):
            package = sys.modules.get(package_name)
            for directory in getattr(package, "__path__", None) or []:
                root = Path(directory).resolve()
                if not self.is_project_file(root) or root == self.facts.root.resolve() or not root.is_dir():
                    continue
                for path in _walk_python_files(root):
                    relative = path.relative_to(root).with_suffix("")
                    parts = [package_name, *relative.parts]
                    if parts[-1] == "__init__":
                        parts.pop()
                    if not all(part.isidentifier() for part in parts):
                        continue
                    name = ".".join(parts)
                    if name in self.modules or path in self.by_path:
                        continue
                    imported = sys.modules.get(name)
                    if imported is not None and _module_file(imported) == path:
                        self._add(name, path, imported)
                        continue
                    self._add(name, path, None)
                    added = self.modules.get(name)
                    if added is not None and _builds_its_own_app(added, spec_attribute):
                        del self.modules[name]
                        del self.by_path[path]

    def _add_sibling_imports(self) -> None:
        """Add the project modules of *other* top-level packages that the app's code imports.

        ``own_packages`` knows the app module's package and its endpoints'; a project may keep code
        in a sibling package no endpoint comes from (``core/config.py`` beside ``app/``, imported as
        ``core.config``). That code is the app's too: a literal secret there once went unseen by
        FR703. Followed from import to import; only modules already imported, whose file is a
        project file (never a library, a virtual environment or test code, see :meth:`_add`).
        """
        own = self.facts.own_packages
        pending = list(self.modules.values())
        while pending:
            module = pending.pop()
            for item in module.imported_names:
                name = item.module
                top = name.split(".")[0]
                # the own packages were seeded and walked already (what that left out stays out)
                if name in self.modules or top in own or top in _NEVER_INDEXED:
                    continue
                imported = sys.modules.get(name)
                if imported is None:
                    continue
                self._add(name, _module_file(imported), imported)
                added = self.modules.get(name)
                if added is not None:
                    pending.append(added)


#: Top-level packages imported in the same process that are never the app's code.
_NEVER_INDEXED = frozenset({"pytest_fastapi_rules", "_pytest", "pytest", "pluggy"})


def _walk_python_files(root: Path) -> Iterator[Path]:
    """``*.py`` files below ``root``, pruning test folders, environments and hidden folders."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        if directory != root and (directory / "pyvenv.cfg").exists():
            continue
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                if name.startswith(".") or name in _SKIPPED_DIRS or name.endswith(".egg-info"):
                    continue
                stack.append(entry)
            elif (
                name.endswith(".py")
                and name != "conftest.py"
                and not name.startswith("test_")
                and not name.endswith("_test.py")
            ):
                yield entry


def _builds_its_own_app(module: SourceModule, spec_attribute: str) -> bool:
    """A module that is not imported and builds an app at import time is another entry point.

    ``app = FastAPI(...)``, or ``<name the --fastapi-app spec uses> = <call>`` at module level: a
    second service, a script, a sample variant. Its code is not part of the app under check.
    """
    for node in module.tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Call):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = {target.id for target in targets if isinstance(target, ast.Name)}
        called = module.resolve(node.value.func) or ""
        if called in ("fastapi.FastAPI", "fastapi.applications.FastAPI", "starlette.applications.Starlette"):
            return True
        if spec_attribute in names:
            return True
    return False


def settings_classes(facts: AppFacts) -> list[type]:
    """The app's own ``pydantic_settings.BaseSettings`` subclasses (empty without pydantic-settings)."""
    try:
        from pydantic_settings import BaseSettings
    except ImportError:
        return []
    found = []
    for cls in facts.own_classes:
        try:
            if issubclass(cls, BaseSettings) and cls is not BaseSettings:
                found.append(cls)
        except TypeError:
            continue
    return found


def source_index(facts: AppFacts) -> SourceIndex:
    """The index of the app's source, built on first use and cached on the facts object."""
    index: SourceIndex | None = facts.__dict__.get(_INDEX_ATTRIBUTE)
    if index is None:
        index = SourceIndex.build(facts)
        setattr(facts, _INDEX_ATTRIBUTE, index)
    return index


# -- types of expressions, for the rules ------------------------------------------------------------


def self_class(info: FunctionInfo) -> type | None:
    """The runtime class a method belongs to (None for functions and local classes)."""
    if info.class_node is None:
        return None
    return info.module.runtime_class(info.class_qualname)


def attribute_types(cls: type, index: SourceIndex) -> dict[str, type]:
    """Types of instance attributes: class-level annotations, and ``self.x = param`` in ``__init__``
    where the parameter is annotated (looked up through the MRO's own ``__init__`` methods)."""
    cached = index.attribute_cache.get(cls)
    if cached is None:
        cached = index.attribute_cache[cls] = _attribute_types(cls, index)
    return cached


def _attribute_types(cls: type, index: SourceIndex) -> dict[str, type]:
    types: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        module = index.get(getattr(klass, "__module__", None))
        if module is None:
            continue
        for name, annotation in list(vars(klass).get("__annotations__", {}).items()):
            if isinstance(annotation, str):
                try:
                    found = module.annotation_type(ast.parse(annotation, mode="eval").body)
                except SyntaxError:
                    found = None
            else:
                found = runtime_class(annotation)
            if found is not None:
                types[name] = found
        init = vars(klass).get("__init__")
        info = index.function_info(init) if init is not None else None
        if info is None:
            continue
        for node in info.body():
            target: ast.expr | None = None
            value: ast.expr | None = None
            annotation_node: ast.expr | None = None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign):
                target, value, annotation_node = node.target, node.value, node.annotation
            if not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                continue
            found_type = None
            if annotation_node is not None:
                found_type = module.annotation_type(annotation_node)
            elif isinstance(value, ast.Name):
                found_type = info.module.annotation_type(info.annotation_of(value.id))
            if found_type is not None:
                types[target.attr] = found_type
    return types


def instance_type(info: FunctionInfo, expr: ast.AST, index: SourceIndex) -> type | None:
    """The class of the object an expression holds, when the code says it plainly.

    Parameters and locals with annotations, locals assigned from ``Cls(...)`` or
    ``Cls.classmethod(...)``, ``self``, ``self.attr`` (see :func:`attribute_types`), and instances
    held in module globals. None whenever it is not certain.
    """
    module = info.module
    if isinstance(expr, ast.Name):
        name = expr.id
        if name == "self" and info.class_node is not None and name in info.parameters:
            return self_class(info)
        annotation = info.annotation_of(name)
        if annotation is not None:
            return module.annotation_type(annotation)  # type: ignore[no-any-return]
        bound = info.bindings.get(name)
        if bound:
            classes = {_class_of_value(module, info, value) for value in bound}
            if len(classes) == 1:
                return classes.pop()
            return None
        if name in info.parameters:
            return None
        value = module.value_of(expr)
        if value is MISSING or inspect.isclass(value) or inspect.isroutine(value):
            return None
        return None if isinstance(value, ModuleType) else type(value)
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "self"
        and info.class_node is not None
    ):
        cls = self_class(info)
        if cls is None:
            return None
        return attribute_types(cls, index).get(expr.attr)
    return None


def _class_of_value(module: SourceModule, info: FunctionInfo, value: ast.AST) -> type | None:
    """``x = Cls(...)`` or ``x = Cls.model_validate(...)`` -> Cls; None otherwise."""
    if not isinstance(value, ast.Call):
        return None
    func = value.func
    if isinstance(func, ast.Name) and func.id in info.local_names:
        return None
    called = module.value_of(func)
    if inspect.isclass(called):
        return called
    if isinstance(func, ast.Attribute):
        owner = module.value_of(func.value)
        if inspect.isclass(owner) and func.attr in (
            "model_validate",
            "model_validate_json",
            "model_construct",
            "parse_obj",
            "parse_raw",
            "from_orm",
            "construct",
        ):
            return owner
    return None


def resolve_callee(info: FunctionInfo, call: ast.Call, index: SourceIndex) -> FunctionInfo | None:
    """The app's own ``def`` a call runs, when it can be named without guessing.

    ``helper()`` (this module or imported), ``module.func()``, ``self.method()``, ``Cls.method()``,
    ``obj.method()`` with ``obj`` typed by :func:`instance_type`, and a function nested in the
    caller. Classes (constructors) are not followed.
    """
    func = call.func
    module = info.module
    if isinstance(func, ast.Name):
        nested = info.nested_function(func.id)
        if nested is not None:
            return nested
        if func.id in info.local_names:
            return None
        value = module.value_of(func)
        if value is MISSING:
            for candidate in module.functions:
                if candidate.parent is None and candidate.class_node is None and candidate.name == func.id:
                    return candidate
            return None
        return _function_of(value, index)
    if isinstance(func, ast.Attribute):
        receiver = func.value
        if isinstance(receiver, ast.Name) and receiver.id not in info.local_names:
            value = module.value_of(func)
            if value is not MISSING:
                return _function_of(value, index)
        cls = instance_type(info, receiver, index)
        if cls is None and isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
            cls = self_class(info)
        if cls is not None:
            return _function_of(safe_attribute(cls, func.attr), index)
    return None


def _function_of(value: Any, index: SourceIndex) -> FunctionInfo | None:
    if value is MISSING or value is None or inspect.isclass(value):
        return None
    if isinstance(value, property):
        return None
    if not (inspect.isfunction(value) or inspect.ismethod(value) or hasattr(value, "__wrapped__")):
        return None
    return index.function_info(value)
