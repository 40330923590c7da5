"""FR3xx: layers, domains, dependencies (Rules #1-#6)."""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from collections.abc import Iterator
from typing import Annotated, Any

from pytest_fastapi_rules.facts import type_hints, unwrap_callable
from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    RuleSkipped,
    Scope,
    Severity,
    rule,
)
from pytest_fastapi_rules.rules.common import is_api_route
from pytest_fastapi_rules.rules.wiring import is_app_code_module
from pytest_fastapi_rules.sqla import SESSION_FACTORY_CLASSES, SESSION_LIKE_CLASSES

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
