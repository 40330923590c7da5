"""FR3xx: layers, domains, dependencies (Rules #1-#6).

FR301 reads the routes' dependency trees, FR302-FR305 and FR307 the app's source (the domain and
layer analysis they share is here; the session analysis shared with other families is in
``source.sessions``), FR306 the probe run (the session dependency's lifecycle).
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import re
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pytest_fastapi_rules.facts import AppFacts, is_subclass, type_hints, unwrap_callable
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
from pytest_fastapi_rules.rules.probe_support import _probe
from pytest_fastapi_rules.rules.wiring import is_app_code_module
from pytest_fastapi_rules.source.index import SourceIndex, _index
from pytest_fastapi_rules.source.parsing import (
    MISSING,
    FunctionInfo,
    ImportedName,
    _quote,
    _shadowed,
    dotted_text,
    safe_attribute,
)
from pytest_fastapi_rules.source.sessions import db_session_names, session_key
from pytest_fastapi_rules.sqla import SESSION_FACTORY_CLASSES, SESSION_LIKE_CLASSES

if TYPE_CHECKING:
    from pytest_fastapi_rules.source.parsing import SourceModule

#: Return-type wrappers whose first argument is what a (yield) dependency hands to the endpoint.
_YIELDING_ORIGINS = (
    collections.abc.AsyncGenerator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.Generator,
    collections.abc.Iterator,
    collections.abc.Iterable,
)
#: Fallback for annotations nobody could resolve (``from __future__ import annotations`` with
#: names imported under TYPE_CHECKING). Only ``AsyncSession`` is matched by name: a bare
#: ``Session`` may as well be a login-session model or ``requests.Session``.
_ASYNC_SESSION_NAME = re.compile(r"(^|[\[\s,|.'\"])AsyncSession($|[\]\s,|'\"])")


def _session_in_annotation(annotation: Any, depth: int = 0) -> type | str | None:
    """The session class an annotation hands over, or None.

    Looks through ``Annotated``, ``Optional``/unions, and the generator/iterator wrappers of yield
    dependencies. Answers the class, or the name ``AsyncSession`` for an unresolved string.
    """
    if annotation is None or depth > 8:
        return None
    if isinstance(annotation, str):
        return "AsyncSession" if _ASYNC_SESSION_NAME.search(annotation) else None
    forward = getattr(annotation, "__forward_arg__", None)
    if isinstance(forward, str):
        return _session_in_annotation(forward, depth + 1)
    if inspect.isclass(annotation) and not typing.get_args(annotation):
        try:
            return annotation if issubclass(annotation, SESSION_LIKE_CLASSES) else None
        except TypeError:
            return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated and args:
        return _session_in_annotation(args[0], depth + 1)
    if origin in _YIELDING_ORIGINS and args:
        return _session_in_annotation(args[0], depth + 1)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        for arg in args:
            found = _session_in_annotation(arg, depth + 1)
            if found is not None:
                return found
    return None


def _session_from_dependency(call: Any) -> type | str | None:
    """The session class a dependency callable returns or yields, judged by its declaration."""
    if call is None:
        return None
    target = unwrap_callable(call)
    if inspect.isclass(target):
        try:
            return target if issubclass(target, SESSION_LIKE_CLASSES) else None
        except TypeError:
            return None
    if isinstance(target, SESSION_FACTORY_CLASSES):
        # Depends(SessionLocal): calling a sessionmaker opens a session.
        return "AsyncSession" if type(target).__name__.startswith("async") else "Session"
    return _session_in_annotation(type_hints(target).get("return"))


def _type_name(found: type | str) -> str:
    return found if isinstance(found, str) else found.__name__


def _call_name(call: Any) -> str:
    target = unwrap_callable(call)
    return str(getattr(target, "__name__", None) or type(target).__name__)


@rule(
    code="FR301",
    name="router-uses-service",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #3, Rule #4",
    summary="No endpoint receives a database session directly (an `AsyncSession`/`Session` "
    "parameter or a dependency that yields one); endpoints depend on services.",
    rationale=(
        "A router that holds the session ends up running queries and business logic itself; the "
        "rulebook keeps routers thin: HTTP in, `service` call, response out. The session belongs "
        "to the repository, reached through the service dependency."
    ),
    fix="Depend on a service instead: `service: Annotated[UserService, "
    "Depends(get_user_service)]`, where get_user_service -> get_user_repository -> get_db.",
    applies_to=is_api_route,
    bad_example=(
        '@router.get("/users/{user_id}")\n'
        "async def get_user(user_id: int, db: AsyncSession = Depends(get_db)) -> UserResponse: ..."
    ),
    good_example=(
        '@router.get("/users/{user_id}")\n'
        "async def get_user(user_id: int, service: UserServiceDep) -> UserResponse:\n"
        "    return await service.get_user(user_id)"
    ),
)
def check_router_uses_service(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    module_name = getattr(route.function, "__module__", None)
    if not is_app_code_module(context.facts, module_name):
        # A library's ready-made router (an admin or CRUD generator): its layering is not the
        # app's to fix; FR109 still judges where the app mounted it.
        raise RuleSkipped(f"endpoint `{route.name}` comes from `{module_name}`, not the app's code")
    dependant = route.dependant
    if dependant is None:
        return
    hints = {**type_hints(route.function), **type_hints(route.endpoint)}
    endpoint_name = route.name
    for sub in dependant.dependencies:
        # Parameterless dependencies (`dependencies=[Depends(get_db)]`) give the endpoint nothing.
        name = sub.name
        if not name:
            continue
        found = _session_in_annotation(hints.get(name))
        via = ""
        if found is None:
            found = _session_from_dependency(sub.call)
            via = f" from `{_call_name(sub.call)}`" if found is not None else ""
        elif sub.call is not None:
            via = f" from `{_call_name(sub.call)}`"
        if found is None:
            continue
        yield Finding(
            message=f"endpoint `{endpoint_name}` receives a database session directly: "
            f"parameter `{name}` ({_type_name(found)}{via})",
            location=route.location,
        )


# -- FR306 session-dependency-lifecycle ------------------------------------------------------------------


@rule(
    code="FR306",
    name="session-dependency-lifecycle",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="database.py template, Rule #5",
    summary="The session dependency commits on success, rolls back when the request fails, and "
    "always closes the session.",
    rationale=(
        "Without the commit, writes vanish; without rollback and close, a failed request leaves a "
        "transaction open and its connection checked out until the pool runs dry."
    ),
    fix="`async with sessionmanager.session_factory() as session:` then `try: yield session; "
    "await session.commit()` / `except Exception: await session.rollback(); raise`.",
    bad_example=(
        "async def get_db():\n    session = session_factory()\n    yield session\n    await session.commit()"
    ),
    good_example=(
        "async def get_db():\n    async with sessionmanager.session_factory() as session:\n        try:\n"
        "            yield session\n            await session.commit()\n        except Exception:\n"
        "            await session.rollback()\n            raise"
    ),
    phases=("session-lifecycle",),
    reports_setup_failure=True,
)
def check_session_dependency_lifecycle(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR306")
    if not results.session_checks:
        if results.session_dependency is None:
            raise RuleSkipped("no route depends on a database-session dependency")
        raise RuleSkipped("no GET route that uses the session dependency answered 2xx to inject into")
    check = results.session_checks[0]
    if check.skipped:
        raise RuleSkipped(check.skipped)
    location = _dependency_location(context.facts, check.dependency)
    name = f"`{check.dependency}`"
    if check.committed_on_success is False:
        yield Finding(
            message=f"the plugin's probe wrote a marker row through the session from {name} during a "
            f"successful {check.route}, and it was not committed: the app's own writes there would "
            "be lost the same way",
            location=location,
        )
    if check.leaked_on_success:
        yield Finding(
            message=f"after a successful {check.route} (in which the plugin's probe wrote a marker row), "
            f"{check.leaked_on_success} session(s) from {name} still held a transaction or connection "
            "(never closed)",
            location=location,
        )
    if check.rolled_back_on_error is False:
        yield Finding(
            message=f"when {check.route} failed (the plugin's probe raised an error after writing a "
            f"marker row through the session), {name} committed the write instead of rolling it back",
            location=location,
        )
    if check.leaked_on_error:
        yield Finding(
            message=f"when {check.route} failed (the plugin's probe raised an error after a write), the "
            f"session from {name} was neither rolled back nor closed: its transaction and connection "
            "stayed open",
            location=location,
        )


def _dependency_location(facts: AppFacts, qualname: str) -> Location | None:
    for route in facts.routes:
        for dependant in route.iter_dependants():
            if getattr(dependant.call, "__qualname__", None) == qualname:
                return facts.location_of(dependant.call)
    return None


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
        # Modules and packages alike: "it has: __init__.py" hid fastapi_best_architecture's api/,
        # crud/, model/, schema/ and service/ packages.
        has = ", ".join(
            sorted(f"{name}.py" if (directory / f"{name}.py").exists() else f"{name}/" for name in present)
        )
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
