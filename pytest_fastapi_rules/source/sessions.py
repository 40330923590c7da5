"""Which names of the app's source hold a database session, for the source rules of several families.

FR302 and FR305 (layers) and FR403 (concurrency) ask where the app's code uses a database session:
a parameter or local typed or named as one, a session opened from a factory, ``self.session`` of a
repository or service.

The heuristics are conservative: a name is only treated as a database session when the code says so
plainly (an annotation, an import, a constructor call, a well-known name not bound to something
else). Misses are preferred to false positives.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from pytest_fastapi_rules.source.inference import attribute_types, self_class
from pytest_fastapi_rules.source.parsing import MISSING, FunctionInfo, _shadowed, dotted_text
from pytest_fastapi_rules.sqla import is_session_factory, is_session_like_class

if TYPE_CHECKING:
    from pytest_fastapi_rules.source.index import SourceIndex

#: Names that, unless bound to something else, hold a database session.
SESSION_NAMES = frozenset({"session", "db", "db_session", "async_session", "dbsession", "sess"})


#: ``self.<attr>`` names that hold a repository's or service's database session.
SESSION_ATTRIBUTES = frozenset({"session", "db", "_session", "_db", "db_session", "_db_session"})


#: Libraries whose "sessions" are HTTP or cloud clients, safe to share and never a database session.
_NON_DB_LIBRARIES = (
    "aiohttp",
    "httpx",
    "requests",
    "niquests",
    "urllib3",
    "boto3",
    "aioboto3",
    "aiobotocore",
    "botocore",
    "grpc",
    "websockets",
    "tornado",
)


#: An annotation nobody could resolve (a TYPE_CHECKING import) that names a session class.
_SESSION_TEXT = re.compile(r"\b(Async)?Session\b")


def _binding_is_session(info: FunctionInfo, value: ast.AST) -> bool | None:
    """Whether the expression a local is bound to is a database session (None: can't tell).

    ``self.session`` -> yes; another attribute or a subscript (``request.session``,
    ``client["app"]``) -> no; a call: a session factory or class -> yes, an HTTP/cloud client
    (``aiohttp.ClientSession()``) -> no, a callee named like a session (``session_factory()``) ->
    yes; anything else -> can't tell.
    """
    if isinstance(value, ast.Await):
        value = value.value
    if isinstance(value, ast.Attribute):
        return (
            isinstance(value.value, ast.Name)
            and value.value.id == "self"
            and value.attr in SESSION_ATTRIBUTES
        )
    if isinstance(value, ast.Subscript):
        return False
    if not isinstance(value, ast.Call):
        return None
    module = info.module
    resolved = module.resolve(value.func, info.local_names) or ""
    if resolved.split(".")[0] in _NON_DB_LIBRARIES:
        return False
    called = module.value_of(value.func) if not _shadowed(info, value.func) else MISSING
    if is_session_factory(called) or is_session_like_class(called):
        return True
    name = dotted_text(value.func) or ""
    last = name.rpartition(".")[2].lower()
    if "session" in last:
        return True
    return None


def db_session_names(info: FunctionInfo, depth: int = 0) -> frozenset[str]:
    """Names of ``info`` that hold a database session.

    A parameter annotated with a SQLAlchemy session (``AsyncSession``, ``Session``, through
    ``Annotated`` and aliases such as ``SessionDep``); an unannotated parameter or local with a
    session name (``db``, ``session``) that is not bound to something else (``aiohttp.ClientSession``);
    a local opened from a session factory; and, in a nested function, the enclosing function's
    sessions it uses.
    """
    module = info.module
    names: set[str] = set()
    for name, param in info.parameters.items():
        if param.annotation is None:
            if name in SESSION_NAMES:
                names.add(name)
            continue
        cls = module.annotation_type(param.annotation)
        if cls is not None:
            if is_session_like_class(cls):
                names.add(name)
        elif name in SESSION_NAMES and _SESSION_TEXT.search(ast.unparse(param.annotation)):
            names.add(name)
    for name, values in info.bindings.items():
        if name in info.parameters:
            continue
        verdicts = [_binding_is_session(info, value) for value in values]
        if False in verdicts:
            continue
        if True in verdicts or name in SESSION_NAMES:
            names.add(name)
    if info.parent is not None and depth < 4:
        names |= db_session_names(info.parent, depth + 1) & info.free_names()
    return frozenset(names)


def session_key(
    info: FunctionInfo, expr: ast.AST, sessions: frozenset[str], index: SourceIndex
) -> str | None:
    """A stable text for an expression that is a database session, or None."""
    if isinstance(expr, ast.Name) and expr.id in sessions:
        return expr.id
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "self"
        and expr.attr in SESSION_ATTRIBUTES
        and info.class_node is not None
        and self_attribute_is_session(info, expr.attr, index)
    ):
        return f"self.{expr.attr}"
    return None


def self_attribute_is_session(info: FunctionInfo, attribute: str, index: SourceIndex) -> bool:
    """Whether ``self.<attribute>`` (named like a session) holds a database session.

    No when its declared type is something else, or when the class assigns it from an HTTP
    client (``self.session = aiohttp.ClientSession()``); yes otherwise.
    """
    cls = self_class(info)
    if cls is not None:
        declared = attribute_types(cls, index).get(attribute)
        if declared is not None:
            return is_session_like_class(declared)
    for other in info.module.functions:
        if other.class_qualname != info.class_qualname:
            continue
        for node in other.body():
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                    and target.attr == attribute
                    and _binding_is_session(other, node.value) is False
                ):
                    return False
    return True
