"""One module of the app's source, parsed once with ``ast``: its functions, imports and names.

:class:`SourceModule` holds a module's file, tree and (when imported) the module object, and answers
what the source rules ask of it: its functions (:class:`FunctionInfo`, with their enclosing class
and function), what a name or a dotted chain is bound to (statically through the imports, and where
the meaning matters, by asking the imported module, without calling anything), and excerpts for
messages. Which modules are the app's, and the index of them all, live in
:mod:`pytest_fastapi_rules.source.index`.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import sys
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_fastapi_rules.registry import Location

MISSING: Any = object()
"""What :meth:`SourceModule.value_of` answers when a name has no runtime value it can read safely."""


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


def _quote(module: SourceModule, node: ast.AST) -> str:
    """A node's source excerpt in backticks, as the source rules' messages show it."""
    return f"`{module.excerpt(node)}`"


def _shadowed(info: FunctionInfo, expr: ast.AST) -> bool:
    """Whether the name a chain starts with is a local of ``info`` (its meaning is not the import's)."""
    text = dotted_text(expr)
    return bool(text) and text.split(".")[0] in info.local_names  # type: ignore[union-attr]
