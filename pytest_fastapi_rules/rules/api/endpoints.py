"""FR201: every endpoint is ``async def`` (Rule #7).

A sync endpoint runs in FastAPI's thread pool; one that works with a sync SQLAlchemy session is
told that making it ``async def`` alone would block the event loop.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pytest_fastapi_rules.facts import (
    is_coroutine_callable,
    is_subclass,
    plain_annotation,
    type_hints,
    unwrap_callable,
)
from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, Scope, Severity, rule
from pytest_fastapi_rules.rules.common import any_route

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import RouteFacts


# -- FR201 ----------------------------------------------------------------------------------------


@rule(
    code="FR201",
    name="async-endpoint",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #7",
    summary="Every endpoint function is `async def` (decorators and partials unwrapped).",
    rationale=(
        "FastAPI runs a plain `def` endpoint in a thread pool of 40 threads; in an async app it "
        "cannot await the async session or clients, and a slow one starves the pool."
    ),
    fix="Declare the endpoint with `async def` and await its async calls.",
    applies_to=any_route,
    bad_example='@router.get("/users/{user_id}")\ndef get_user(user_id: int) -> UserResponse: ...',
    good_example='@router.get("/users/{user_id}")\nasync def get_user(user_id: int) -> UserResponse: ...',
)
def check_async_endpoint(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    if is_coroutine_callable(route.endpoint):
        return
    name = getattr(route.function, "__name__", repr(route.function))
    sync_session = _sync_session_dependency(route)
    if sync_session is not None:
        yield Finding(
            message=f"endpoint `{name}` is a sync `def` that works with a sync SQLAlchemy session "
            f"(`{sync_session}`); FastAPI runs it in a worker thread",
            location=route.location,
            fix="Move the data access to async SQLAlchemy (`AsyncSession` from an `async_sessionmaker`, "
            "awaited), then make the endpoint `async def`; `async def` alone would run the sync "
            "session's queries on the event loop and block every other request.",
        )
        return
    yield Finding(
        message=f"endpoint `{name}` is a sync `def`; FastAPI runs it in a worker thread",
        location=route.location,
    )


def _sync_session_dependency(route: RouteFacts) -> str | None:
    """The name of a dependency of the route that yields a sync SQLAlchemy ``Session``, if any."""
    from sqlalchemy.orm import Session

    for parameter, annotation in type_hints(route.function).items():
        if parameter != "return" and is_subclass(plain_annotation(annotation), Session):
            return parameter
    for dependant in route.iter_dependants():
        call = dependant.call
        if call is None:
            continue
        returned = type_hints(unwrap_callable(call)).get("return")
        for candidate in (returned, *typing.get_args(returned)):
            if is_subclass(candidate, Session):
                return str(getattr(unwrap_callable(call), "__name__", "the session dependency"))
    return None
