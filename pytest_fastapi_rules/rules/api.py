"""FR2xx: routes and API design (Rules #7, #15, #16, #17)."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_fastapi_rules.facts import is_coroutine_callable
from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, Scope, Severity, rule
from pytest_fastapi_rules.rules.common import any_route


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
    yield Finding(
        message=f"endpoint `{name}` is a sync `def`; FastAPI runs it in a worker thread",
        location=route.location,
    )
