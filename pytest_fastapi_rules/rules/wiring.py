"""FR1xx: application wiring (the main.py template, Rule #5 lifespan)."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, Scope, Severity, rule


@rule(
    code="FR101",
    name="lifespan-not-on-event",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP,
    section="main.py template, Rule #5",
    summary="Startup and shutdown code lives in a lifespan, not in @app.on_event handlers.",
    rationale=(
        "`@app.on_event` is deprecated, and Starlette silently ignores on_event handlers when the "
        "app also passes `lifespan=`: the startup code never runs."
    ),
    fix="Move the handler's code into an `@asynccontextmanager async def lifespan(app)` "
    "passed as `FastAPI(lifespan=lifespan)`: startup before `yield`, shutdown after it.",
    bad_example='@app.on_event("startup")\nasync def connect() -> None: ...',
    good_example=(
        "@asynccontextmanager\nasync def lifespan(app: FastAPI):\n    await connect()\n"
        "    yield\n    await disconnect()\n\napp = FastAPI(lifespan=lifespan)"
    ),
)
def check_lifespan_not_on_event(context: CheckContext) -> Iterator[Finding]:
    router = context.facts.app.router
    for event in ("startup", "shutdown"):
        for handler in getattr(router, f"on_{event}", None) or []:
            name = getattr(handler, "__qualname__", repr(handler))
            yield Finding(
                message=f"`{name}` is registered as an on_event({event!r}) handler",
                target="app",
                location=context.facts.location_of(handler),
            )
