"""Source rules: how the app's code is written (FR302-FR307, FR401, FR403, FR602, FR703).

Every rule here reads the code index of :mod:`pytest_fastapi_rules.source` (the app's own modules,
found through the app and parsed once). Each rule is one item for the app, with one finding per
offending place, located ``file:line:column`` (1-based column) and ending with a short excerpt of the
offending source.

The heuristics are conservative: a name is only treated as a database session, a Pydantic model or
an app helper when the code says so plainly (an annotation, an import, a constructor call, a
well-known name not bound to something else). Misses are preferred to false positives.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_fastapi_rules.facts import AppFacts, is_subclass
from pytest_fastapi_rules.options import (
    CONVENTIONAL_SHARED_PACKAGES,
    DEFAULT_DOMAIN_LAYOUT,
    RULEBOOK_DOMAIN_LAYOUT,
    RulesOptions,
)
from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    Location,
    RuleSkipped,
    Scope,
    Severity,
    rule,
)
from pytest_fastapi_rules.rules.common import is_api_route
from pytest_fastapi_rules.source import (
    MISSING,
    FunctionInfo,
    ImportedName,
    SourceIndex,
    SourceModule,
    attribute_types,
    dotted_text,
    instance_type,
    iter_body,
    resolve_callee,
    safe_attribute,
    self_class,
    settings_classes,
    shorten,
    source_index,
)
from pytest_fastapi_rules.sqla import (
    is_scoped_session,
    is_session_factory,
    is_session_like_class,
    is_sync_engine,
    is_sync_session_factory,
    is_sync_session_like_class,
)

_VERSION_PART = re.compile(r"^v\d+$")


def shared_packages(options: RulesOptions) -> tuple[str, ...]:
    """``fastapi_rules_shared_packages``: packages that are never a domain."""
    return tuple(options.shared_packages)


def shared_alias_note(domain: str, options: RulesOptions) -> str:
    """For a domain named like shared code the rulebook does not name (``src.core``, ``src.common``;
    the rulebook's is ``shared``): how to treat it as shared on purpose; empty otherwise."""
    names = [
        part
        for part in domain.split(".")[1:]
        if part in CONVENTIONAL_SHARED_PACKAGES and part not in options.shared_packages
    ]
    if not names:
        return ""
    name = names[0]
    listed = " ".join(dict.fromkeys((*options.shared_packages, name)))
    return (
        f" (`{name}` is judged as a domain: the rulebook's shared package is `shared`; if `{name}` "
        f"holds code shared by every domain, set the ini key fastapi_rules_shared_packages = {listed})"
    )


def domain_layout(options: RulesOptions) -> dict[str, tuple[str, ...]]:
    """What a module is *recognised* as (FR302, FR304, FR307 find repositories and services by it):
    the wide default names and the names ``fastapi_rules_domain_layout`` adds. Never narrowed by the
    setting: naming `crud` for FR305 must not make `repositories` invisible to the layer rules."""
    return {
        role: (*names, *(n for n in options.domain_layout.get(role, ()) if n not in names))
        for role, names in DEFAULT_DOMAIN_LAYOUT.items()
    }


def conforming_layout(options: RulesOptions) -> dict[str, tuple[str, ...]]:
    """What FR305 *accepts* for each role: the rulebook's name first, then the names
    ``fastapi_rules_domain_layout`` lists; a `crud.py` conforms only when a team says so."""
    return {
        role: (*names, *(n for n in options.domain_layout.get(role, ()) if n not in names))
        for role, names in RULEBOOK_DOMAIN_LAYOUT.items()
    }


def layout_alias_note(role: str, present: Iterable[str], options: RulesOptions) -> str:
    """For a role filled only under a name the rulebook does not use (``crud.py`` for
    ``repository.py``): the setting that accepts it on purpose; empty when there is none."""
    accepted = conforming_layout(options)[role]
    aliases = sorted(name for name in set(present) & set(DEFAULT_DOMAIN_LAYOUT[role]) if name not in accepted)
    if not aliases:
        return ""
    listed = ", ".join(f"`{name}`" for name in aliases)
    # A line replaces the role's earlier names in the setting: keep those the team listed already.
    line = " ".join((*options.domain_layout.get(role, ()), *aliases))
    return (
        f" ({listed} is not the rulebook's name; to accept it on purpose, add the line "
        f"`{role} = {line}` to the ini key fastapi_rules_domain_layout)"
    )


def _index(context: CheckContext) -> SourceIndex:
    index = source_index(context.facts)
    if not len(index):
        raise RuleSkipped("no source of the app's own modules was found (is the app installed as a library?)")
    return index


def _quote(module: SourceModule, node: ast.AST) -> str:
    return f"`{module.excerpt(node)}`"


# -- sessions --------------------------------------------------------------------------------------

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


def _shadowed(info: FunctionInfo, expr: ast.AST) -> bool:
    text = dotted_text(expr)
    return bool(text) and text.split(".")[0] in info.local_names  # type: ignore[union-attr]


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


# -- shared helpers: routes, domains, layers ---------------------------------------------------------


def route_modules(context: CheckContext, index: SourceIndex) -> dict[str, SourceModule]:
    """Indexed modules that define the endpoint of at least one API route (health routes excluded)."""
    found: dict[str, SourceModule] = {}
    for route in context.facts.routes:
        if not is_api_route(route, context.options):
            continue
        module = index.module_of(route.endpoint)
        if module is not None:
            found[module.name] = module
    return found


def domain_of_package(package: str, options: RulesOptions) -> str | None:
    """The domain package a routes module's package stands for, or None.

    Layout folders (``routers``, ``api``, ``v1``) are climbed out of: ``src.users.routers`` is the
    ``src.users`` domain. A top-level package is the app, not a domain; shared packages are not
    domains.
    """
    router_names = set(domain_layout(options)["router"])
    parts = package.split(".") if package else []
    # A versioned API folder inside a package (`notice/api/v1/sys/`, fastapi_best_architecture's
    # plugins) is that package's API layer, however deep its route modules sit below it.
    for index in range(2, len(parts) - 1):
        if parts[index] in router_names and _VERSION_PART.match(parts[index + 1]):
            parts = parts[:index]
            break
    while len(parts) > 1 and (parts[-1] in router_names or _VERSION_PART.match(parts[-1])):
        parts.pop()
    if len(parts) < 2:
        return None
    if any(part in shared_packages(options) for part in parts[1:]):
        return None
    return ".".join(parts)


def find_domains(context: CheckContext, index: SourceIndex) -> dict[str, list[SourceModule]]:
    """Domain package -> the modules in it that register routes of the app."""
    domains: dict[str, list[SourceModule]] = {}
    for module in route_modules(context, index).values():
        domain = domain_of_package(module.package, context.options)
        if domain is not None:
            domains.setdefault(domain, []).append(module)
    # a domain nested in another one belongs to the outer one
    for name in sorted(domains, key=len, reverse=True):
        outer = [other for other in domains if other != name and name.startswith(other + ".")]
        if outer:
            domains[min(outer, key=len)].extend(domains.pop(name))
    return domains


def owner_domain(module_name: str, domains: Iterable[str]) -> str | None:
    """The innermost domain package ``module_name`` belongs to (the module itself included)."""
    names = domains if isinstance(domains, set | frozenset | dict) else set(domains)
    parts = module_name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in names:
            return candidate
    return None


def _is_own(facts: AppFacts, index: SourceIndex, module_name: str) -> bool:
    return index.get(module_name) is not None or facts.is_own_module(module_name)


def is_repository_module(
    facts: AppFacts, index: SourceIndex, options: RulesOptions, module_name: str
) -> bool:
    """An app module of the data-access layer: named like one (``repository``, ``repositories``,
    ``crud``, or inside such a package), or defining a ``*Repository`` class."""
    if not _is_own(facts, index, module_name):
        return False
    names = set(domain_layout(options)["repository"])
    if any(part in names for part in module_name.split(".")[1:]):
        return True
    module = index.get(module_name)
    if module is not None:
        return any(
            node.name.endswith("Repository") for node in module.tree.body if isinstance(node, ast.ClassDef)
        )
    return False


def _mapped_classes(facts: AppFacts) -> set[type]:
    try:
        return set(facts.mapped_classes)
    except Exception:  # noqa: BLE001 - no SQLAlchemy models at all
        return set()


def _module_object(index: SourceIndex, name: str) -> Any:
    import sys

    module = index.get(name)
    if module is not None and module.module is not None:
        return module.module
    return sys.modules.get(name)


def _defines_mapped(facts: AppFacts, module_name: str) -> bool:
    return any(getattr(cls, "__module__", None) == module_name for cls in _mapped_classes(facts))


def _annotation_nodes(module: SourceModule) -> set[int]:
    """ids of every node inside an annotation (parameters, returns, ``x: T``, ``Annotated[T, ...]``)."""
    inside: set[int] = set()
    for node in module.nodes:
        annotations: list[ast.AST | None] = []
        if isinstance(node, ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, ast.Subscript) and dotted_text(node.value) in ("Annotated", "typing.Annotated"):
            inner = node.slice
            annotations.append(inner.elts[0] if isinstance(inner, ast.Tuple) and inner.elts else inner)
        for annotation in annotations:
            if annotation is not None:
                inside.update(id(sub) for sub in ast.walk(annotation))
    return inside


def _names_used_outside(module: SourceModule, annotations: set[int]) -> set[str]:
    """Names the module reads anywhere but in annotations."""
    return {
        node.id
        for node in module.nodes
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in annotations
    }


def _orm_used_through(
    module: SourceModule, item: ImportedName, target: Any, mapped: set[type], annotations: set[int]
) -> bool:
    """Whether ``models.User`` (through an imported models module) is used outside annotations."""
    as_name = isinstance(item.node, ast.Import) and all(
        alias.asname is None for alias in item.node.names if alias.name == item.module
    )
    prefix = item.module if as_name else item.local
    for node in module.nodes:
        if not isinstance(node, ast.Attribute) or id(node) in annotations:
            continue
        text = dotted_text(node)
        if text and text.startswith(prefix + "."):
            first = text[len(prefix) + 1 :].split(".")[0]
            if safe_attribute(target, first) in mapped:
                return True
    return False


# -- FR302 -----------------------------------------------------------------------------------------

_STATEMENT_FUNCTIONS = frozenset(
    f"{prefix}.{name}"
    for prefix in (
        "sqlalchemy",
        "sqlalchemy.sql",
        "sqlalchemy.sql.expression",
        "sqlalchemy.future",
        "sqlmodel",
    )
    for name in ("select", "insert", "update", "delete", "text")
)
_SESSION_CALLS = frozenset(
    {
        "execute",
        "add",
        "add_all",
        "commit",
        "delete",
        "scalars",
        "scalar",
        "get",
        "flush",
        "refresh",
        "rollback",
        "exec",
        "merge",
        "query",
        "stream",
        "stream_scalars",
    }
)


@rule(
    code="FR302",
    name="router-no-data-access",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #2, Rule #3",
    summary="Router modules neither import a repository or models module nor call `select()`, "
    "`session.execute/add/commit/delete`.",
    rationale=(
        "The router is the HTTP layer only: validate input, call the service, shape the response. "
        "Queries and ORM objects in a router mean business logic and data access live in the HTTP "
        "layer, where they cannot be reused or tested without HTTP."
    ),
    fix="Move the query into the domain's repository and the logic into its service; the router "
    "depends on the service (`service: UserServiceDep`) and calls it.",
    bad_example=(
        'from src.users.models import User\n\n@router.post("/users")\n'
        "async def create_user(data: UserCreate, db: AsyncSession = Depends(get_db)):\n"
        "    existing = await db.execute(select(User).where(User.email == data.email))"
    ),
    good_example=(
        '@router.post("/users", status_code=201)\n'
        "async def create_user(data: UserCreate, service: UserServiceDep) -> UserResponse:\n"
        "    return UserResponse.model_validate(await service.create_user(data))"
    ),
)
def check_router_no_data_access(context: CheckContext) -> Iterator[Finding]:
    """Router modules are the indexed modules that define the endpoint of an API route.

    Imports: a repository module (or a name from one), or an ORM model class (directly, or through
    an imported models module: ``models.User``); a model used only in annotations is left to FR203
    (returning ORM objects), which judges what the endpoint returns, and a models module used only
    for its enums or constants is no data access.
    Imports under ``if TYPE_CHECKING:`` are for type checkers and do not count. Calls: SQLAlchemy
    statement constructors (``select``, ``insert``, ``update``, ``delete``, ``text``) and session
    methods on a database session (see :func:`db_session_names`).
    """
    facts, options = context.facts, context.options
    index = _index(context)
    routers = route_modules(context, index)
    if not routers:
        raise RuleSkipped("no API route of the app is defined in the app's own source")
    mapped = _mapped_classes(facts)
    for module in routers.values():
        annotations = _annotation_nodes(module)
        used = _names_used_outside(module, annotations)
        by_statement: dict[int, tuple[ast.AST, list[tuple[str, str]]]] = {}
        for item in module.imported_names:
            if item.type_checking:
                continue
            what = _data_import(facts, index, options, item, mapped)
            if what is None:
                continue
            if what[0] == "models":
                if item.name is not None and item.local not in used:
                    continue  # an ORM class in annotations only: FR203 judges what is returned
                if item.name is None and not _orm_used_through(
                    module, item, _module_object(index, item.module), mapped, annotations
                ):
                    continue  # the models module for its enums or constants, or for annotations
            by_statement.setdefault(id(item.node), (item.node, []))[1].append(what)
        for node, imported in by_statement.values():
            kinds = sorted({kind for kind, _ in imported}, reverse=True)
            names = ", ".join(f"`{name}`" for _, name in imported)
            yield Finding(
                message=f"router module `{module.name}` imports the {' and '.join(kinds)} {names}: "
                f"{_quote(module, node)}",
                location=module.location(node),
            )
        for info in module.functions:
            accesses = _data_access_calls(module, info, index)
            if not accesses:
                continue
            kinds = [
                kind
                for kind in ("uses the database session", "builds SQL itself")
                if kind in {k for k, _ in accesses}
            ]
            quoted = [_quote(module, call) for _kind, call in accesses]
            more = f" (+{len(quoted) - 3} more)" if len(quoted) > 3 else ""
            # One finding per function, listing its calls: a function is what gets moved.
            yield Finding(
                message=f"router module `{module.name}` {' and '.join(kinds)} in `{info.name}`: "
                f"{', '.join(quoted[:3])}{more}",
                location=module.location(accesses[0][1]),
            )


def _data_access_calls(module: Any, info: Any, index: SourceIndex) -> list[tuple[str, ast.Call]]:
    """``(kind, call)`` of the function's data access, in source order; a call inside another one
    listed (``text(...)`` in ``db.execute(text(...))``) is part of it."""
    found: list[tuple[str, ast.Call]] = []
    sessions: frozenset[str] | None = None
    for call in info.calls():
        resolved = module.resolve(call.func, info.local_names)
        if resolved in _STATEMENT_FUNCTIONS:
            found.append(("builds SQL itself", call))
            continue
        func = call.func
        if not isinstance(func, ast.Attribute) or func.attr not in _SESSION_CALLS:
            continue
        if sessions is None:
            sessions = db_session_names(info)
        if session_key(info, func.value, sessions, index) is not None:
            found.append(("uses the database session", call))
    outer = [call for _kind, call in found]
    kept = [
        (kind, call)
        for kind, call in found
        if not any(other is not call and _inside(call, other) for other in outer)
    ]
    return sorted(kept, key=lambda item: (item[1].lineno, item[1].col_offset))


def _inside(node: ast.AST, other: ast.AST) -> bool:
    start = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
    end = (getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0)
    outer_start = (getattr(other, "lineno", 0), getattr(other, "col_offset", 0))
    outer_end = (getattr(other, "end_lineno", 0) or 0, getattr(other, "end_col_offset", 0) or 0)
    return outer_start <= start and end <= outer_end


def _data_import(
    facts: AppFacts, index: SourceIndex, options: RulesOptions, item: ImportedName, mapped: set[type]
) -> tuple[str, str] | None:
    """("repository"|"models", what) when an import brings the data layer into a module."""
    if item.name is None:
        if is_repository_module(facts, index, options, item.module):
            return "repository", item.module
        if _is_own(facts, index, item.module) and _defines_mapped(facts, item.module):
            return "models", item.module
        return None
    if not _is_own(facts, index, item.module):
        return None
    value = safe_attribute(_module_object(index, item.module), item.name)
    if inspect.isclass(value) and value in mapped:
        return "models", f"{item.module}.{item.name}"
    if is_repository_module(facts, index, options, item.module):
        return "repository", f"{item.module}.{item.name}"
    if inspect.isclass(value) and value.__name__.endswith("Repository") and facts.is_own_object(value):
        return "repository", f"{item.module}.{item.name}"
    return None


# -- FR303 -----------------------------------------------------------------------------------------


@rule(
    code="FR303",
    name="no-star-imports",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #2",
    summary="No `from x import *` in app modules.",
    rationale=(
        "A star import hides where names come from, drags a module's whole namespace (its "
        "repository, its imports) across layer and domain boundaries, and lets a later import "
        "silently shadow an earlier one."
    ),
    fix="Import the names you use, or the module with a prefix: "
    "`from src.auth import service as auth_service`.",
    bad_example="from src.auth.service import *",
    good_example="from src.auth import service as auth_service",
)
def check_no_star_imports(context: CheckContext) -> Iterator[Finding]:
    index = _index(context)
    for module in index:
        for node in module.nodes:
            if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
                source = module.absolute(node)
                yield Finding(
                    message=f"module `{module.name}` star-imports `{source}`: {_quote(module, node)}",
                    location=module.location(node),
                )


# -- FR304 -----------------------------------------------------------------------------------------


def _two_domains(context: CheckContext, index: SourceIndex) -> dict[str, list[SourceModule]]:
    domains = find_domains(context, index)
    if len(domains) < 2:
        found = ", ".join(f"`{name}`" for name in sorted(domains)) or "none"
        raise RuleSkipped(
            "the rulebook's domain layout applies from two domains on (packages below the app's "
            f"package that register routes); found {found}"
        )
    return domains


@rule(
    code="FR304",
    name="no-cross-domain-repository",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #1, Rule #2",
    summary="A domain never imports another domain's repository; cross-domain calls go through the "
    "other domain's service.",
    rationale=(
        "A domain that reaches into another's repository bypasses that domain's business rules "
        "and couples to its tables: the other domain can no longer change its storage alone."
    ),
    fix="Call the other domain's service instead: `from src.users import service as users_service`.",
    bad_example="# src/posts/service.py\nfrom src.users.repository import UserRepository",
    good_example="# src/posts/service.py\nfrom src.users import service as users_service",
)
def check_no_cross_domain_repository(context: CheckContext) -> Iterator[Finding]:
    """Domains: see :func:`find_domains`. Every indexed module of a domain (the disk walk included)
    is checked; imports under ``if TYPE_CHECKING:`` do not count."""
    facts, options = context.facts, context.options
    index = _index(context)
    domains = _two_domains(context, index)
    for module in index:
        home = owner_domain(module.name, domains)
        if home is None:
            continue
        for item in module.imported_names:
            if item.type_checking:
                continue
            target = item.module
            other = owner_domain(target, domains)
            if other is None or other == home:
                continue
            if not _imports_repository(facts, index, options, item):
                continue
            yield Finding(
                message=f"domain `{home}` imports the repository of domain `{other}` in "
                f"`{module.name}`: {_quote(module, item.node)}{shared_alias_note(other, options)}",
                location=module.location(item.node),
            )


def _imports_repository(
    facts: AppFacts, index: SourceIndex, options: RulesOptions, item: ImportedName
) -> bool:
    if is_repository_module(facts, index, options, item.module):
        return True
    if item.name is None:
        return False
    value = safe_attribute(_module_object(index, item.module), item.name)
    return inspect.isclass(value) and value.__name__.endswith("Repository") and facts.is_own_object(value)


# -- FR305 -----------------------------------------------------------------------------------------


@rule(
    code="FR305",
    name="domain-layout",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #1",
    summary="Each domain package that defines routes has `router.py`, `service.py`, `schemas.py`, "
    "and `repository.py` + `models.py` when it touches the database.",
    rationale=(
        "Every domain is a self-contained module with all its layers: readers find the same file "
        "for the same concern in every domain, and layers cannot collapse into the router."
    ),
    fix="Add the missing module to the domain package (a package of the same name also counts); "
    "a team that names a role otherwise on purpose (`crud.py`, `routes.py`) lists the name in "
    "`fastapi_rules_domain_layout`.",
    bad_example="src/tags/\n    router.py        # routes, schemas and queries all in one file",
    good_example="src/tags/\n    router.py\n    service.py\n    schemas.py\n    repository.py\n    models.py",
)
def check_domain_layout(context: CheckContext) -> Iterator[Finding]:
    """A role is filled by a module or a package of one of its names (configurable). A domain
    touches the database when one of its modules imports SQLAlchemy/SQLModel or defines an ORM
    model. One finding per domain lists every missing module: one defect of the layout, one fix."""
    facts, options = context.facts, context.options
    index = _index(context)
    domains = _two_domains(context, index)
    layout = conforming_layout(options)
    members: dict[str, list[SourceModule]] = {}
    for module in index:
        owner = owner_domain(module.name, domains)
        if owner is not None:
            members.setdefault(owner, []).append(module)
    for domain, routers in sorted(domains.items()):
        directory = routers[0].path.parent
        depth = len(routers[0].package.split(".")) - len(domain.split("."))
        for _ in range(depth):
            directory = directory.parent
        present = _present_names(directory)
        if _only_holds_its_routes(directory, present, routers):
            # `user/adapter/input/` holding nothing but `api/` (teamhide/fastapi-boilerplate's ports
            # and adapters): a layer package, not a domain; the layout cannot say where the domain is.
            continue
        touches = _touches_database(facts, domain, members.get(domain, []))
        roles = ["router", "service", "schemas"] + (["repository", "models"] if touches else [])
        anchor = index.get(domain) or routers[0]
        has = ", ".join(sorted(f"{name}.py" for name in present if (directory / f"{name}.py").exists()))
        missing = [role for role in roles if not any(name in present for name in layout.get(role, ()))]
        if not missing:
            continue
        files = [f"`{_role_file(layout, role)}`" for role in missing]
        database = [f"`{_role_file(layout, role)}`" for role in missing if role in ("repository", "models")]
        why = f" ({' and '.join(database)} because it touches the database)" if database else ""
        folder = Path(facts.relative(directory)).as_posix() + "/"
        notes = "".join(dict.fromkeys(layout_alias_note(role, present, options) for role in missing))
        yield Finding(
            message=f"domain `{domain}` has no {', '.join(files)}{why}; it has: {has or 'no modules'}"
            f"{notes}{shared_alias_note(domain, options)}",
            location=Location(file=anchor.display, line=1, column=1),
            fix=f"Add {_and(files)} to `{folder}` (a package of the same name also counts).",
        )


def _only_holds_its_routes(directory: Path, present: set[str], routers: list[SourceModule]) -> bool:
    """Whether the package holds nothing but the subpackages its route modules sit in."""
    folders = set()
    for module in routers:
        try:
            relative = module.path.relative_to(directory)
        except ValueError:
            return False
        if len(relative.parts) < 2:
            return False  # a route module of its own: a domain package, however bare
        folders.add(relative.parts[0])
    return bool(folders) and present - {"__init__"} <= folders


def _role_file(layout: dict[str, tuple[str, ...]], role: str) -> str:
    names = layout.get(role, ())
    return f"{names[0] if names else role}.py"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _present_names(directory: Path) -> set[str]:
    names: set[str] = set()
    try:
        entries = list(directory.iterdir())
    except OSError:
        return names
    for entry in entries:
        try:
            if entry.is_file() and entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.is_dir() and any(child.suffix == ".py" for child in entry.iterdir()):
                names.add(entry.name)
        except OSError:
            continue
    return names


#: SQLAlchemy names that only type or open a session: a module importing nothing else from it
#: touches the database only where it uses a session it receives.
_SESSION_TYPE_NAMES = frozenset(
    {
        "AsyncSession",
        "Session",
        "sessionmaker",
        "async_sessionmaker",
        "scoped_session",
        "async_scoped_session",
    }
)


def _touches_database(facts: AppFacts, domain: str, modules: list[SourceModule]) -> bool:
    """Whether the domain defines an ORM model, imports SQLAlchemy/SQLModel for more than a session
    type (``select``, ``Column``...), or uses a session it receives. A health check that takes an
    ``AsyncSession`` only to open a connection (minimal-fastapi-postgres-template's
    ``_: AsyncSession = Depends(new_async_session)``) queries nothing: it needs no repository."""
    if any((getattr(cls, "__module__", "") or "").startswith(domain + ".") for cls in _mapped_classes(facts)):
        return True
    for module in modules:
        database_imports = [
            item
            for item in module.imported_names
            if not item.type_checking and item.module.split(".")[0] in ("sqlalchemy", "sqlmodel")
        ]
        if any(item.name not in _SESSION_TYPE_NAMES for item in database_imports):
            return True
        if database_imports and any(_uses_a_session(info) for info in module.functions):
            return True
    return False


def _uses_a_session(info: FunctionInfo) -> bool:
    """Whether the function's body reads a name that holds a database session."""
    sessions = db_session_names(info)
    return any(
        isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in sessions
        for node in info.body()
    )


# -- FR307 -----------------------------------------------------------------------------------------


def _http_exception_class() -> type:
    from starlette.exceptions import HTTPException

    return HTTPException


_HTTP_EXCEPTION_NAMES = frozenset(
    {
        "fastapi.HTTPException",
        "fastapi.exceptions.HTTPException",
        "starlette.exceptions.HTTPException",
        "starlette.HTTPException",
    }
)


def _dependency_functions(context: CheckContext, index: SourceIndex) -> set[int]:
    """ids of the ``def`` nodes of every callable in the routes' dependency trees."""
    found: set[int] = set()
    for route in context.facts.routes:
        for dependant in route.iter_dependants():
            if dependant.call is None:
                continue
            info = index.function_info(dependant.call)
            if info is None:
                call_method = getattr(type(dependant.call), "__call__", None)  # noqa: B004
                info = index.function_info(call_method) if call_method is not None else None
            if info is not None:
                found.add(id(info.node))
    return found


def _service_scope(info: FunctionInfo, options: RulesOptions) -> bool:
    names = set(domain_layout(options)["service"])
    if any(part in names for part in info.module.name.split(".")[1:]):
        return True
    current: FunctionInfo | None = info
    while current is not None:
        if current.class_qualname and current.class_qualname.split(".")[-1].endswith("Service"):
            return True
        current = current.parent
    return False


@rule(
    code="FR307",
    name="service-raises-domain-errors",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #2, shared/exceptions.py template",
    summary="Services raise domain exceptions, not `HTTPException`.",
    rationale=(
        "The service layer knows nothing about HTTP: it is called from routers, background jobs "
        "and tests. Domain exceptions (`UserNotFoundError`) are mapped to status codes in one "
        "exception handler."
    ),
    fix="Raise a domain exception (a `DomainError` subclass with its `status_code`) and let the "
    "app's DomainError handler turn it into the HTTP response.",
    bad_example='raise HTTPException(status_code=404, detail="User not found")',
    good_example='raise UserNotFoundError(f"User {user_id} not found")',
)
def check_service_raises_domain_errors(context: CheckContext) -> Iterator[Finding]:
    """Services: modules named ``service``/``services`` (or inside such a package) and classes named
    ``*Service``. Raising ``HTTPException`` or a subclass of it (by its runtime class) is a finding.
    Functions FastAPI calls as dependencies belong to the HTTP layer (``get_current_user`` raising
    401 is FastAPI's own pattern), wherever they live, and are left alone."""
    options = context.options
    index = _index(context)
    http_exception = _http_exception_class()
    dependencies = _dependency_functions(context, index)
    scoped = [
        info
        for module in index
        for info in module.functions
        if _service_scope(info, options) and id(info.node) not in dependencies
    ]
    if not scoped:
        raise RuleSkipped("the app has no service layer (no `service.py` module, no `*Service` class)")
    for info in scoped:
        module = info.module
        for node in info.body():
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if _shadowed(info, raised):
                continue
            value = module.value_of(raised)
            is_http = (
                is_subclass(value, http_exception)
                if value is not MISSING
                else module.resolve(raised) in _HTTP_EXCEPTION_NAMES
            )
            if not is_http:
                continue
            where = info.qualname.replace(".<locals>", "")
            yield Finding(
                message=f"service `{where}` raises an HTTP exception: {_quote(module, node)}",
                location=module.location(node),
            )


# -- FR401 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blocking:
    """A known blocking API and its async replacement."""

    what: str
    fix: str


_REQUESTS_FIX = "Use `httpx.AsyncClient` and `await client.get(...)`."
#: The module-level request functions that requests and httpx's sync API both have.
_HTTP_FUNCTIONS = ("get", "post", "put", "patch", "delete", "head", "options", "request")
_BLOCKING: dict[str, Blocking] = {
    **{
        f"requests.{name}": Blocking(f"requests.{name}", _REQUESTS_FIX)
        for name in (*_HTTP_FUNCTIONS, "Session", "session")
    },
    **{
        f"httpx.{name}": Blocking(f"httpx.{name} (the sync client)", _REQUESTS_FIX)
        for name in (*_HTTP_FUNCTIONS, "stream", "Client")
    },
    "urllib.request.urlopen": Blocking("urllib.request.urlopen", _REQUESTS_FIX),
    "urllib.request.urlretrieve": Blocking("urllib.request.urlretrieve", _REQUESTS_FIX),
    "urllib3.request": Blocking("urllib3.request", _REQUESTS_FIX),
    "time.sleep": Blocking("time.sleep", "Use `await asyncio.sleep(...)`."),
    "builtins.open": Blocking("open", "Use `aiofiles.open` (or `await asyncio.to_thread(path.read_text)`)."),
    "io.open": Blocking("io.open", "Use `aiofiles.open` (or `await asyncio.to_thread(...)`)."),
    "psycopg2.connect": Blocking("psycopg2.connect", "Use asyncpg (or SQLAlchemy's AsyncSession)."),
    "psycopg.connect": Blocking(
        "psycopg.connect", "Use `await psycopg.AsyncConnection.connect(...)` or asyncpg."
    ),
    "sqlite3.connect": Blocking("sqlite3.connect", "Use aiosqlite (or SQLAlchemy's AsyncSession)."),
    "pymysql.connect": Blocking("pymysql.connect", "Use aiomysql/asyncmy (or an AsyncSession)."),
    "pymongo.MongoClient": Blocking("pymongo.MongoClient", "Use motor's `AsyncIOMotorClient`."),
    "pymongo.mongo_client.MongoClient": Blocking("pymongo.MongoClient", "Use motor's `AsyncIOMotorClient`."),
    **{
        name: Blocking(name, "Use `redis.asyncio.Redis` and await its calls.")
        for name in (
            "redis.Redis",
            "redis.StrictRedis",
            "redis.from_url",
            "redis.Redis.from_url",
            "redis.StrictRedis.from_url",
            "redis.client.Redis",
        )
    },
    **{
        f"subprocess.{name}": Blocking(
            f"subprocess.{name}", "Use `await asyncio.create_subprocess_exec(...)`."
        )
        for name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput")
    },
    "os.system": Blocking("os.system", "Use `await asyncio.create_subprocess_shell(...)`."),
    "smtplib.SMTP": Blocking("smtplib.SMTP", "Use aiosmtplib, or send mail from a background worker."),
    "smtplib.SMTP_SSL": Blocking(
        "smtplib.SMTP_SSL", "Use aiosmtplib, or send mail from a background worker."
    ),
    # Building a ``sessionmaker`` (or ``scoped_session``) connects to nothing; opening a sync
    # ``Session`` from it is where the blocking starts (see ``_opens_sync_session``).
    **{
        name: Blocking(
            f"sync SQLAlchemy `{name.rpartition('.')[2]}` (every query on it blocks)",
            "Use `AsyncSession` from an `async_sessionmaker` and await its calls.",
        )
        for name in (
            "sqlalchemy.orm.Session",
            "sqlalchemy.orm.session.Session",
            "sqlmodel.Session",
            "sqlmodel.orm.session.Session",
        )
    },
}
#: Factories whose calls build a session factory, not a session: constructing them blocks nothing.
_SESSION_FACTORY_BUILDERS = frozenset(
    {
        "sqlalchemy.orm.sessionmaker",
        "sqlalchemy.orm.session.sessionmaker",
        "sqlalchemy.orm.scoped_session",
        "sqlalchemy.orm.scoping.scoped_session",
    }
)
_INSPECT = frozenset({"sqlalchemy.inspect", "sqlalchemy.inspection.inspect"})
_SYNC_SESSION_IO = frozenset(
    {
        "execute",
        "scalars",
        "scalar",
        "get",
        "commit",
        "flush",
        "refresh",
        "query",
        "exec",
        "merge",
        "rollback",
    }
)
_SYNC_ENGINE_IO = frozenset({"connect", "begin", "execute", "raw_connection"})
_SESSION_FIX = "Use `AsyncSession` from an `async_sessionmaker` and await its calls."


def blocking_call(info: FunctionInfo, call: ast.Call) -> Blocking | None:
    """The blocking API a call runs, by its resolved name or by what its receiver is at runtime."""
    module = info.module
    func = call.func
    resolved = module.resolve(func, info.local_names)
    if resolved is not None:
        found = _BLOCKING.get(resolved)
        if found is not None:
            return found
    if _opens_sync_session(info, func):
        return Blocking(
            "sync SQLAlchemy session factory (the `Session` it opens blocks on every query)", _SESSION_FIX
        )
    if resolved in _INSPECT and call.args and not _shadowed(info, call.args[0]):
        engine = module.value_of(call.args[0])
        if engine is not MISSING and is_sync_engine(engine):
            return Blocking(
                "`inspect` on a sync Engine (it connects to the database)",
                "Inspect inside `await conn.run_sync(...)` on an async connection, or once at startup.",
            )
    if isinstance(func, ast.Attribute):
        receiver = func.value
        if func.attr in _SYNC_SESSION_IO and isinstance(receiver, ast.Name):
            cls = info.module.annotation_type(info.annotation_of(receiver.id))
            if cls is not None and is_sync_session_like_class(cls):
                return Blocking(f"sync `{cls.__name__}.{func.attr}`", _SESSION_FIX)
        if func.attr in _SYNC_ENGINE_IO and not _shadowed(info, receiver):
            engine = module.value_of(receiver)
            if engine is not MISSING and is_sync_engine(engine):
                return Blocking(f"sync `Engine.{func.attr}`", "Use `create_async_engine` and await it.")
    return None


def _opens_sync_session(info: FunctionInfo, func: ast.expr) -> bool:
    """Whether calling ``func`` opens a sync ``Session``: ``func`` is a module-level sync session
    factory (``SessionLocal = sessionmaker(bind=engine)``, or a ``scoped_session`` of one), or a
    local name bound only to ``sessionmaker(...)``/``scoped_session(...)`` built in the function
    without ``class_=AsyncSession`` (Netflix/dispatch builds one per request in its middleware)."""
    if not _shadowed(info, func):
        value = info.module.value_of(func)
        if is_scoped_session(value):
            value = value.session_factory
        return value is not MISSING and is_sync_session_factory(value)
    if not isinstance(func, ast.Name):
        return False
    bound = info.bindings.get(func.id, [])
    return bool(bound) and all(_builds_sync_session_factory(info, value) for value in bound)


def _builds_sync_session_factory(info: FunctionInfo, value: ast.AST) -> bool:
    if not isinstance(value, ast.Call):
        return False
    if info.module.resolve(value.func, info.local_names) not in _SESSION_FACTORY_BUILDERS:
        return False
    for keyword in value.keywords:
        if keyword.arg == "class_":
            return "Async" not in (dotted_text(keyword.value) or "Async")
    inner = value.args[0] if value.args else None
    return inner is None or not isinstance(inner, ast.Call) or _builds_sync_session_factory(info, inner)


def _lifespan_functions(index: SourceIndex) -> set[int]:
    """ids of the ``def`` nodes passed as ``lifespan=`` to FastAPI/Starlette/APIRouter in the app."""
    found: set[int] = set()
    for module in index:
        for node in module.nodes:
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "lifespan" and isinstance(keyword.value, ast.Name):
                    for info in module.functions:
                        if info.name == keyword.value.id:
                            found.add(id(info.node))
    return found


@rule(
    code="FR401",
    name="no-blocking-calls",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #8",
    summary="Async functions of the app (endpoints, dependencies, services, repositories) call no "
    "known blocking API: `requests`, `urllib.request`, `time.sleep`, builtin `open`, `psycopg2`, "
    "`pymongo`, `redis` (sync), sync SQLAlchemy `Session`, `subprocess.run`, ...",
    rationale=(
        "One blocking call inside `async def` stops the event loop: every other request of the "
        "worker waits until it returns."
    ),
    fix="Use the async library (httpx.AsyncClient, asyncio.sleep, aiofiles, asyncpg, motor, "
    "redis.asyncio, AsyncSession), or run the sync call with `await asyncio.to_thread(...)`.",
    bad_example='@router.get("/external")\nasync def get_external():\n'
    '    return requests.get("https://api.example.com").json()',
    good_example='@router.get("/external")\nasync def get_external():\n'
    "    async with httpx.AsyncClient() as client:\n"
    '        return (await client.get("https://api.example.com")).json()',
)
def check_no_blocking_calls(context: CheckContext) -> Iterator[Finding]:
    """Every ``async def`` of the app except the lifespan (blocking there delays startup, not a
    request). Calls into the app's own *sync* helpers are followed one level (``helper()``,
    ``module.func()``, ``self.method()``, ``service.method()`` with ``service`` annotated); async
    callees are judged as async functions themselves. Code in nested ``def``/``lambda`` (handed to
    ``asyncio.to_thread``, ``run_in_executor``) and passing a blocking function by reference do not
    count. Each blocking call is reported once, where it is written."""
    index = _index(context)
    lifespans = _lifespan_functions(index)
    reported: set[tuple[str, int, int]] = set()
    for module in index:
        for info in module.functions:
            if not info.is_async or id(info.node) in lifespans:
                continue
            for call in info.calls():
                found = blocking_call(info, call)
                if found is not None:
                    finding = _blocking_finding(info, call, found, None, reported)
                    if finding is not None:
                        yield finding
                    continue
                callee = resolve_callee(info, call, index)
                if callee is None or callee.is_async or id(callee.node) in lifespans:
                    continue
                for inner in callee.calls():
                    inner_found = blocking_call(callee, inner)
                    if inner_found is not None:
                        finding = _blocking_finding(callee, inner, inner_found, (info, call), reported)
                        if finding is not None:
                            yield finding


def _blocking_finding(
    info: FunctionInfo,
    call: ast.Call,
    found: Blocking,
    caller: tuple[FunctionInfo, ast.Call] | None,
    reported: set[tuple[str, int, int]],
) -> Finding | None:
    module = info.module
    location = module.location(call)
    key = (location.file, location.line or 0, location.column or 0)
    if key in reported:
        return None
    reported.add(key)
    name = info.qualname.replace(".<locals>", "")
    if caller is None:
        where = f"async `{name}`"
    else:
        caller_info, caller_call = caller
        caller_name = caller_info.qualname.replace(".<locals>", "")
        where = (
            f"sync `{name}`, called from async `{caller_name}` ({caller_info.module.location(caller_call)})"
        )
    return Finding(
        message=f"{where} calls blocking {found.what}: {_quote(module, call)}",
        location=location,
        fix=found.fix,
    )


# -- FR403 -----------------------------------------------------------------------------------------

_GATHER = frozenset({"asyncio.gather", "asyncio.tasks.gather"})
_TASK_GROUPS = frozenset({"asyncio.TaskGroup", "asyncio.taskgroups.TaskGroup"})


@rule(
    code="FR403",
    name="no-gather-on-one-session",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #10",
    summary="No `asyncio.gather`/`TaskGroup` runs several awaitables that share one session object.",
    rationale=(
        "An AsyncSession is one sequence of operations on one connection; concurrent use raises "
        "`InvalidRequestError` or corrupts the session's state."
    ),
    fix="Run the queries one after the other, combine them into one SELECT, or give each task its "
    "own session from the session factory.",
    bad_example="users, posts = await asyncio.gather(\n"
    "    db.execute(select(func.count(User.id))),\n    db.execute(select(func.count(Post.id))),\n)",
    good_example="async def count_users() -> int:\n"
    "    async with sessionmanager.session_factory() as session:\n        ...\n"
    "users, posts = await asyncio.gather(count_users(), count_posts())",
)
def check_no_gather_on_one_session(context: CheckContext) -> Iterator[Finding]:
    """An awaitable uses a session when it is a call on the session (``db.execute(...)``), passes it
    (``count(db)``), calls a nested function that closes over it, or calls a method of a
    repository-like object whose methods use ``self.session`` (``self.repository.get(...)``: the
    object is the shared session's holder). Sessions: :func:`db_session_names` and
    ``self.session``/``self.db``. A starred comprehension (``*(db.get(User, i) for i in ids)``)
    counts as many awaitables."""
    index = _index(context)
    for module in index:
        for info in module.functions:
            if not info.is_async:
                continue
            sessions: frozenset[str] | None = None
            for node in info.body():
                groups: list[tuple[ast.AST, list[tuple[ast.AST, int]]]] = []
                if isinstance(node, ast.Call) and module.resolve(node.func, info.local_names) in _GATHER:
                    awaitables: list[tuple[ast.AST, int]] = []
                    for arg in node.args:
                        if isinstance(arg, ast.Starred):
                            if isinstance(arg.value, ast.ListComp | ast.GeneratorExp | ast.SetComp):
                                awaitables.append((arg.value.elt, 2))
                            continue
                        awaitables.append((arg, 1))
                    groups.append((node, awaitables))
                elif isinstance(node, ast.AsyncWith):
                    groups.extend(_task_group_awaitables(info, node))
                if groups and sessions is None:
                    sessions = db_session_names(info)
                for anchor, awaitables in groups:
                    assert sessions is not None
                    counts: Counter[str] = Counter()
                    for expr, weight in awaitables:
                        for key in _uses_session(info, expr, sessions, index):
                            counts[key] += weight
                    shared = sorted(key for key, count in counts.items() if count >= 2)
                    if shared:
                        holder = shared[0]
                        direct = holder in sessions or holder.split(".")[-1] in SESSION_ATTRIBUTES
                        how = f"`{holder}`" if direct else f"shared through `{holder}`"
                        yield Finding(
                            message=f"`{info.qualname.replace('.<locals>', '')}` runs awaitables "
                            f"concurrently on one database session ({how}): {_quote(module, anchor)}",
                            location=module.location(anchor),
                        )


def _task_group_awaitables(
    info: FunctionInfo, node: ast.AsyncWith
) -> list[tuple[ast.AST, list[tuple[ast.AST, int]]]]:
    groups: list[tuple[ast.AST, list[tuple[ast.AST, int]]]] = []
    for item in node.items:
        context_expr = item.context_expr
        if not (
            isinstance(context_expr, ast.Call)
            and info.module.resolve(context_expr.func, info.local_names) in _TASK_GROUPS
            and isinstance(item.optional_vars, ast.Name)
        ):
            continue
        group = item.optional_vars.id
        awaitables: list[tuple[ast.AST, int]] = []
        for inner in iter_body(node.body):
            if (
                isinstance(inner, ast.Call)
                and isinstance(inner.func, ast.Attribute)
                and inner.func.attr == "create_task"
                and isinstance(inner.func.value, ast.Name)
                and inner.func.value.id == group
                and inner.args
            ):
                awaitables.append((inner.args[0], 1))
        groups.append((node, awaitables))
    return groups


def _uses_session(
    info: FunctionInfo, expr: ast.AST, sessions: frozenset[str], index: SourceIndex
) -> set[str]:
    """Which sessions (by key) an awaitable expression uses."""
    if isinstance(expr, ast.Name):
        bound = info.bindings.get(expr.id) or []
        calls = [value for value in bound if isinstance(value, ast.Call)]
        if len(calls) == 1:
            expr = calls[0]
    if isinstance(expr, ast.Await):
        expr = expr.value
    if not isinstance(expr, ast.Call):
        return set()
    keys: set[str] = set()
    func = expr.func
    for arg in [*expr.args, *(keyword.value for keyword in expr.keywords)]:
        key = session_key(info, arg, sessions, index)
        if key is not None:
            keys.add(key)
    if isinstance(func, ast.Attribute):
        key = session_key(info, func.value, sessions, index)
        if key is not None:
            keys.add(key)
        else:
            holder = dotted_text(func.value)
            callee = resolve_callee(info, expr, index)
            if (
                holder
                and callee is not None
                and callee.class_node is not None
                and _uses_self_session(callee, index)
            ):
                keys.add(holder)
    elif isinstance(func, ast.Name):
        nested = info.nested_function(func.id)
        if nested is not None:
            keys |= db_session_names(nested) & nested.free_names() & sessions
    return keys


def _uses_self_session(info: FunctionInfo, index: SourceIndex) -> bool:
    for node in info.body():
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr in SESSION_ATTRIBUTES
            and self_attribute_is_session(info, node.attr, index)
        ):
            return True
    return False


# -- FR602 -----------------------------------------------------------------------------------------

_V1_VALIDATORS = frozenset(
    {
        "pydantic.validator",
        "pydantic.root_validator",
        "pydantic.class_validators.validator",
        "pydantic.class_validators.root_validator",
        "pydantic.deprecated.class_validators.validator",
        "pydantic.deprecated.class_validators.root_validator",
    }
)
#: v1 methods and their v2 names.
_V1_METHODS = {
    "dict": "model_dump()",
    "json": "model_dump_json()",
    "copy": "model_copy()",
    "parse_obj": "model_validate()",
    "parse_raw": "model_validate_json()",
    "parse_file": "model_validate_json(path.read_text())",
    "from_orm": "model_validate() with from_attributes=True",
    "schema": "model_json_schema()",
    "schema_json": "json.dumps(Model.model_json_schema())",
    "construct": "model_construct()",
    "update_forward_refs": "model_rebuild()",
}


def _pydantic_base() -> type:
    from pydantic import BaseModel

    return BaseModel


def _v1_method_owner(cls: type, method: str) -> bool:
    """Whether ``cls.method`` is pydantic's own (deprecated) method, not one the app defined."""
    for klass in cls.__mro__:
        if method in vars(klass):
            owner = (getattr(klass, "__module__", "") or "").split(".")[0]
            return owner in ("pydantic", "sqlmodel")  # SQLModel keeps the deprecated v1 names too
    return False


@rule(
    code="FR602",
    name="no-pydantic-v1-api",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #14",
    summary="No `pydantic.v1` import, `@validator`, `@root_validator`, `.dict()`, `.json()`, "
    "`.parse_obj()`, `.from_orm()` on models.",
    rationale=(
        "The v1 API is deprecated in Pydantic 2 (warnings on every call) and removed in v3; "
        "`pydantic.v1` models do not mix with v2 models in FastAPI."
    ),
    fix="Use the v2 API: `model_dump()`, `model_dump_json()`, `model_validate()`, "
    "`@field_validator`, `@model_validator`.",
    bad_example="user_dict = user.dict()\nuser = UserResponse.from_orm(db_user)",
    good_example="user_dict = user.model_dump()\nuser = UserResponse.model_validate(db_user)",
)
def check_no_pydantic_v1_api(context: CheckContext) -> Iterator[Finding]:
    """Methods count only on something known to be a Pydantic model: a ``BaseModel`` subclass named
    directly, or an instance typed by an annotation, built by ``Model(...)``/``Model.model_validate``,
    held in ``self.attr`` with a known type, or a module global (``settings.dict()``). ``.json()`` on
    an HTTP response or ``.dict()`` on a dataclass or dict is never a finding; nor is a method the
    model class defines itself."""
    index = _index(context)
    base = _pydantic_base()
    for module in index:
        for item in module.imported_names:
            if (
                item.target == "pydantic.v1"
                or item.target.startswith("pydantic.v1.")
                or (item.module == "pydantic" and item.name == "v1")
            ):
                yield Finding(
                    message=f"module `{module.name}` imports the Pydantic v1 API: "
                    f"{_quote(module, item.node)}",
                    location=module.location(item.node),
                )
        for node in module.nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    if module.resolve(target) in _V1_VALIDATORS:
                        yield Finding(
                            message=f"`{node.name}` uses the v1 decorator {_quote(module, decorator)}",
                            location=module.location(decorator),
                            fix="Use `@field_validator(...)` with `@classmethod` "
                            "(`@model_validator(mode=...)` for root validators).",
                        )
        for info in module.functions:
            for call in info.calls():
                func = call.func
                if not isinstance(func, ast.Attribute) or func.attr not in _V1_METHODS:
                    continue
                model = _model_class(info, func.value, index, base)
                if model is None or not _v1_method_owner(model, func.attr):
                    continue
                yield Finding(
                    message=f"`.{func.attr}()` on the Pydantic model `{model.__name__}` is the v1 API "
                    f"(v2: `{_V1_METHODS[func.attr]}`): {_quote(module, call)}",
                    location=module.location(call),
                    fix=f"Use `{_V1_METHODS[func.attr]}`.",
                )


def _model_class(info: FunctionInfo, receiver: ast.AST, index: SourceIndex, base: type) -> type | None:
    module = info.module
    if not _shadowed(info, receiver):
        value = module.value_of(receiver)
        if inspect.isclass(value):
            return value if is_subclass(value, base) else None
    cls = instance_type(info, receiver, index)
    if is_subclass(cls, base):
        return cls
    return None


# -- FR703 -----------------------------------------------------------------------------------------

#: Names of secrets: the name *ends* with one of these words (``ACCESS_TOKEN_EXPIRE_MINUTES`` is not).
SECRET_NAME = re.compile(
    r"(?i)(^|_)(secret|secret_key|password|passwd|token|api_key|apikey|private_key|access_key|"
    r"client_secret|signing_key)$"
)
_JWT_MODULES = ("jwt", "jose", "jose.jwt", "authlib.jose", "python_jwt", "jwcrypto")
_JWT_KEY_ARGUMENTS = frozenset({"key", "secret", "secret_key", "signing_key"})


def _literal_secret(node: ast.AST | None, name: str | None) -> str | None:
    """The string literal, when it can be a secret: non-empty, no spaces (prose), not only masking
    characters (``***``), and not merely the name itself (``ACCESS_TOKEN = "access_token"``)."""
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str | bytes):
        return None
    text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
    stripped = text.strip()
    if not stripped or any(ch.isspace() for ch in stripped):
        return None
    if not any(ch.isalnum() for ch in stripped) or len(set(stripped)) == 1:
        return None
    if name is not None and _normal(stripped) == _normal(name):
        return None
    if _names_something(stripped, name):
        return None
    return text


#: A lowercase identifier: a key, a column or a header name, not a generated secret.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:[_.-][a-z0-9]+)*")


def _names_something(text: str, name: str | None) -> bool:
    """Whether the literal is a name rather than a secret: a lowercase identifier made only of the
    variable's own words (``PK_TOKEN = "token"``, ``ACCESS_TOKEN_COOKIE = "access_token"``). A
    literal with a word of its own (``SECRET_KEY = "dev-secret-key"``) stays a secret."""
    if len(text) > 40 or not _IDENTIFIER.fullmatch(text):
        return False
    words = {word for word in re.split(r"[^a-z0-9]+", (name or "").lower()) if word}
    return set(re.split(r"[_.-]", text)) <= words


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@rule(
    code="FR703",
    name="secrets-from-environment",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="config.py template, Rule #21",
    summary="Settings fields named like secrets (`SECRET_KEY`, `*_PASSWORD`, `*_TOKEN`, `*_API_KEY`) "
    "have no non-empty default, and no such literal is assigned in app code.",
    rationale=(
        "A secret in the code is in every clone, image and log of the repository; a default secret "
        "lets the app start in production with a key everybody knows."
    ),
    fix="Declare the field without a default (`SECRET_KEY: str`) and set it in the environment; "
    "read secrets from settings, never from literals.",
    bad_example='SECRET_KEY: str = "super-secret-key"\njwt.encode(claims, "my-key", algorithm="HS256")',
    good_example="SECRET_KEY: str  # required, from the environment\n"
    "jwt.encode(claims, settings.SECRET_KEY, algorithm=settings.ALGORITHM)",
)
def check_secrets_from_environment(context: CheckContext) -> Iterator[Finding]:
    """App half: fields of the app's ``BaseSettings`` classes named like secrets whose runtime
    default is a non-empty string (``SecretStr`` too), when the source shows a literal default (a
    computed default such as ``secrets.token_urlsafe(32)`` is not a secret in the code). Source half:
    literals assigned to secret names (module, class and function level, parameter defaults), and a
    literal passed as the key of a JWT call (positional key or ``key=``/``secret=``). Reading the
    environment is never a finding (``os.environ["SECRET_KEY"]``, ``os.getenv("SECRET_KEY", "")``);
    ``.env``/``.env.example`` files are not read at all; test code is not part of the index; enum
    members are names, not secrets. A finding shows the literal masked, with its length
    (``"8f4*****"``, `mask_secret`): enough to tell ``"changeme"`` from a real key, never the key."""
    facts = context.facts
    index = _index(context)
    reported: set[tuple[str, int | None, int | None]] = set()

    def report(module: SourceModule, node: ast.AST, message: str, secret: ast.AST) -> Finding | None:
        location = module.location(node)
        key = (location.file, location.line, location.column)
        if key in reported:
            return None
        reported.add(key)
        text = _secret_text(secret)
        length = f" ({len(text)} characters)" if text is not None else ""
        excerpt = _masked_excerpt(module, node, secret)
        return Finding(message=f"{message}{length}: `{excerpt}`", location=location)

    yield from _settings_defaults(facts, index, report)
    enum_bodies = _enum_class_nodes(index)
    for module in index:
        for node in module.nodes:
            if isinstance(node, ast.ClassDef) and id(node) in enum_bodies:
                continue
            if not isinstance(node, ast.Assign | ast.AnnAssign | ast.FunctionDef | ast.AsyncFunctionDef):
                if isinstance(node, ast.Call):
                    finding = _jwt_literal_key(module, node, report)
                    if finding is not None:
                        yield finding
                continue
            for target_name, value, anchor in _assignments(node):
                if id(anchor) in enum_bodies or not SECRET_NAME.search(target_name):
                    continue
                if value is None or _literal_secret(value, target_name) is None:
                    continue
                finding = report(module, anchor, f"`{target_name}` is assigned a literal secret", value)
                if finding is not None:
                    yield finding


def _masked_excerpt(module: SourceModule, node: ast.AST, secret: ast.AST, limit: int = 80) -> str:
    """The node's source with the secret literal masked (``"8f4*****..."``, see `mask_secret`):
    enough to tell a placeholder from a real key, never enough to spread the secret further in
    reports and CI logs."""
    text = ast.get_source_segment(module.source, node) or ""
    segment = ast.get_source_segment(module.source, secret)
    masked = _masked_literal(segment or "", _secret_text(secret))
    if not text or not segment:
        return masked
    start = text.find(segment)
    if start >= 0:
        text = text[:start] + masked + text[start + len(segment) :]
        # Keep the masked literal whole: it is what the reader judges the finding by.
        limit = max(limit, start + len(masked) + 2)
    return shorten(text, limit)


def _secret_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        return node.value.decode("latin-1")
    return None


def mask_secret(text: str) -> str:
    """The secret's first characters (at most 3, and at most a quarter of it), the rest as ``*``:
    ``8f4e2b0c9d1a`` is shown as ``8f4*********``; a secret under 4 characters shows none."""
    shown = min(3, len(text) // 4)
    return text[:shown] + "*" * (len(text) - shown)


_STRING_OPENING = re.compile(r"^([rRbBuU]{0,2})(\"\"\"|'''|\"|')")


def _masked_literal(segment: str, text: str | None) -> str:
    """The literal as written (prefix and quotes kept), its content masked."""
    if text is None:
        return '"***"'
    opening = _STRING_OPENING.match(segment)
    prefix, quote = (opening.group(1), opening.group(2)) if opening else ("", '"')
    return f"{prefix}{quote}{mask_secret(text)}{quote}"


def _assignments(node: ast.AST) -> Iterator[tuple[str, ast.AST | None, ast.AST]]:
    """(name, value, node to point at) of assignments and parameter defaults in ``node``."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            name = _target_name(target)
            if name:
                yield name, node.value, node
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        name = _target_name(node.target)
        if name:
            yield name, node.value, node
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        for arg, default in zip(
            positional[len(positional) - len(args.defaults) :], args.defaults, strict=True
        ):
            yield arg.arg, default, default
        for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if kw_default is not None:
                yield arg.arg, kw_default, kw_default


def _target_name(target: ast.AST) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _enum_class_nodes(index: SourceIndex) -> set[int]:
    """ids of the class nodes (and their statements) of Enum classes: members are names, not secrets."""
    import enum

    ids: set[int] = set()
    for module in index:
        for qualname, node in module.classes:
            cls = module.runtime_class(qualname)
            is_enum = (
                is_subclass(cls, enum.Enum)
                if cls is not None
                else any((dotted_text(base) or "").endswith("Enum") for base in node.bases)
            )
            if is_enum:
                ids.add(id(node))
                ids.update(id(statement) for statement in node.body)
    return ids


def _jwt_literal_key(module: SourceModule, call: ast.Call, report: Any) -> Finding | None:
    resolved = module.resolve(call.func) or ""
    head, _, function = resolved.rpartition(".")
    if head not in _JWT_MODULES or function not in ("encode", "decode"):
        return None
    candidates: list[ast.AST] = []
    if len(call.args) >= 2:
        candidates.append(call.args[1])
    candidates.extend(keyword.value for keyword in call.keywords if keyword.arg in _JWT_KEY_ARGUMENTS)
    for candidate in candidates:
        if _literal_secret(candidate, None) is not None:
            result: Finding | None = report(
                module, call, f"`{resolved}` is called with a literal key", candidate
            )
            return result
    return None


def _settings_defaults(facts: AppFacts, index: SourceIndex, report: Any) -> Iterator[Finding]:
    for cls in settings_classes(facts):
        fields = getattr(cls, "model_fields", {}) or {}
        for name, info in fields.items():
            if not SECRET_NAME.search(name) and not SECRET_NAME.search(str(info.alias or "")):
                continue
            default = info.default
            secret = getattr(default, "get_secret_value", None)
            value = secret() if callable(secret) else default
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            if not isinstance(value, str) or not value.strip():
                continue
            located = _field_node(index, cls, name)
            if located is None:
                continue
            module, node = located
            literal = _literal_default(node)
            if literal is None:
                continue
            finding = report(
                module,
                node,
                f"settings field `{cls.__name__}.{name}` has a non-empty default secret",
                literal,
            )
            if finding is not None:
                yield finding


def _field_node(
    index: SourceIndex, cls: type, name: str
) -> tuple[SourceModule, ast.AnnAssign | ast.Assign] | None:
    """The class-body statement that declares field ``name`` (looked up through the MRO)."""
    for klass in cls.__mro__:
        module = index.get(getattr(klass, "__module__", None))
        if module is None:
            continue
        for qualname, node in module.classes:
            if qualname != klass.__qualname__:
                continue
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and _target_name(statement.target) == name:
                    return module, statement
                if isinstance(statement, ast.Assign) and any(
                    _target_name(t) == name for t in statement.targets
                ):
                    return module, statement
    return None


def _literal_default(node: ast.AnnAssign | ast.Assign) -> ast.AST | None:
    """The literal default of a field declaration: ``= "x"``, ``Field("x")``, ``Field(default="x")``,
    ``SecretStr("x")``; None when the default is computed or empty."""
    value = node.value
    if value is None:
        return None
    candidates: list[ast.expr] = [value]
    if isinstance(value, ast.Call):
        # Only a field constructor's first argument is a default; in `config("SECRET_KEY")` or
        # `os.getenv("SECRET_KEY")` it is the name of the variable the secret is read from.
        function = value.func
        called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if called not in _FIELD_CONSTRUCTORS:
            return None
        candidates = list(value.args[:1]) + [k.value for k in value.keywords if k.arg == "default"]
    return next((c for c in candidates if _literal_secret(c, None) is not None), None)


_FIELD_CONSTRUCTORS = frozenset({"Field", "SecretStr", "SecretBytes", "Secret"})
