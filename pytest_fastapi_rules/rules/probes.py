"""Probe rules: checks whose facts come from exercising the app for real (RULES.md basis *probe*).

Every rule here reads the observations of one probe run (``probing.runner.probe_results``), done
once per session by the first probe item: the app's lifespan is run anew, on an isolated database,
with real requests sent in-process and their SQL counted (see ``pytest_fastapi_rules/probing``).

The runtime halves of app rules (FR105, FR203, FR207, FR209, FR701) live with their static halves
and are declared with them (``rule(runtime=...)``); the access to the probe run and the helpers the
probe rules share are in ``probe_support``.
"""

from __future__ import annotations

import collections
import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.facts import is_subclass, plain_annotation
from pytest_fastapi_rules.probing.auth import (
    challenge_schemes,
    credential_reader,
    iter_schemes,
)
from pytest_fastapi_rules.probing.blocking import STALL_THRESHOLD
from pytest_fastapi_rules.probing.edges import EDGE_PHASE
from pytest_fastapi_rules.probing.logchild import LoggingProbeError, logging_facts
from pytest_fastapi_rules.probing.requests import PASSWORD_FIELD, RequestBuilder
from pytest_fastapi_rules.probing.results import N_PLUS_ONE_GROWTH
from pytest_fastapi_rules.probing.runner import (
    ENVELOPE_SAMPLES,
    LIVENESS_ALIASES,
    READINESS_ALIASES,
)
from pytest_fastapi_rules.probing.seeding import LARGE, SMALL
from pytest_fastapi_rules.production import DOCS_KINDS, declared_docs_paths, describe_env, production_facts
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
from pytest_fastapi_rules.rules.common import any_route, code_of, start_logging_child, start_production_child
from pytest_fastapi_rules.rules.probe_support import (
    _auth_note,
    _frame_location,
    _happy,
    _method_route,
    _probe,
    _short_frame,
    _short_where,
    _unanswered,
    _where_location,
)
from pytest_fastapi_rules.runtime import AppStartupError

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions
    from pytest_fastapi_rules.probing.results import Exchange, ProbeResults


# -- FR102 lifespan-starts-cleanly --------------------------------------------------------------------


@rule(
    code="FR102",
    name="lifespan-starts-cleanly",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template, Rule #5",
    summary="The lifespan's startup and shutdown both complete within the timeout, without error.",
    rationale=(
        "A lifespan that raises at shutdown leaks connections and loses the last log lines on every "
        "deploy; one that fails or hangs at startup takes the service down."
    ),
    fix="Make startup and shutdown code robust: dispose engines and close clients after `yield` "
    "in a `try/finally`, and do not let shutdown code raise.",
    bad_example=(
        "@asynccontextmanager\nasync def lifespan(app):\n    sessionmanager.init(url)\n    yield\n"
        "    await redis.close()  # redis was never opened: AttributeError at shutdown"
    ),
    good_example=(
        "@asynccontextmanager\nasync def lifespan(app):\n    sessionmanager.init(url)\n    try:\n"
        "        yield\n    finally:\n        await sessionmanager.close()"
    ),
    # Not reports_setup_failure: it judges the app's lifespan, and a database the probes could
    # not set up says nothing about that.
    phases=("shutdown",),
)
def check_lifespan_starts_cleanly(context: CheckContext) -> Iterator[Finding]:
    try:
        results = _probe(context, "FR102")
    except AppStartupError as exc:
        fallback = _sqlite_fallback(context)
        if fallback is not None and _is_database_error(exc.app_traceback or exc.message):
            raise RuleSkipped(
                "the lifespan failed with a database error on the probes' SQLite database, which they "
                f"use because {fallback}: that says nothing about the app's own database, so the "
                "lifespan is not judged. Make the app's server reachable (or pass "
                "--fastapi-rules-db-url=URL of a PostgreSQL server) to judge it: "
                + exc.message.split(". Checks that need")[0]
            ) from None
        what = exc.message.split(". Checks that need")[0]
        what = what.removeprefix("The app's lifespan failed at startup with ")
        yield Finding(
            message=f"the lifespan failed at startup: {what}",
            location=_last_own_frame(context.facts, exc.app_traceback) or context.facts.app_location,
            fix="Fix the startup error shown in the app's traceback below; "
            + (exc.app_traceback or "").strip()[-1500:],
        )
        return
    if results.shutdown_error:
        lines = [line for line in results.shutdown_error.strip().splitlines() if line.strip()]
        yield Finding(
            message=f"the lifespan failed at shutdown: {lines[-1].strip() if lines else 'error'}",
            location=_last_own_frame(context.facts, results.shutdown_error) or context.facts.app_location,
            fix="Make the code after `yield` in the lifespan robust (try/finally, check what was "
            "opened before closing it). The app's traceback: " + results.shutdown_error.strip()[-1500:],
        )


def _sqlite_fallback(context: CheckContext) -> str | None:
    """Why the probes run on SQLite although the app uses another database, or None."""
    choice = getattr(getattr(context.facts, "database_placement", None), "choice", None)
    return getattr(choice, "fallback", None) if choice is not None and choice.server is None else None


#: The exception modules whose errors are the database's answer, not the app's own code failing.
_DATABASE_ERRORS = re.compile(
    r"\b(sqlalchemy\.exc\.|sqlite3\.|aiosqlite\.)\w*Error|OperationalError|ProgrammingError"
)


def _is_database_error(text: str) -> bool:
    return bool(_DATABASE_ERRORS.search(text))


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _last_own_frame(facts: AppFacts, text: str | None) -> Location | None:
    """The innermost frame of the app's own code in a formatted traceback."""
    if not text:
        return None
    found: Location | None = None
    for match in _FRAME.finditer(text):
        path, line = match.group(1), int(match.group(2))
        relative = facts.relative(path)
        if "site-packages" in path or relative.startswith("/") or "pytest_fastapi_rules" in path:
            continue
        found = Location(file=relative, line=line)
    return found


# -- FR103 lifespan-disposes-engines ------------------------------------------------------------------


@rule(
    code="FR103",
    name="lifespan-disposes-engines",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="database.py template, main.py template",
    summary="Every engine the app used is disposed at shutdown, with no connection left checked out.",
    rationale=(
        "An engine that is never disposed keeps its connections open after the app stops (and an "
        "aiosqlite engine keeps the process alive); a checked-out connection at shutdown is a leak."
    ),
    fix="Call `await engine.dispose()` (the template's `sessionmanager.close()`) after `yield` in "
    "the lifespan, in a `finally`.",
    bad_example="async def lifespan(app):\n    sessionmanager.init(url)\n    yield  # never closed",
    good_example=(
        "async def lifespan(app):\n    sessionmanager.init(url)\n    try:\n        yield\n"
        "    finally:\n        await sessionmanager.close()"
    ),
    phases=("shutdown",),
    reports_setup_failure=True,
)
def check_lifespan_disposes_engines(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR103")
    if not results.engines:
        raise RuleSkipped("the app used no SQLAlchemy engine during the probes")
    for engine in results.engines:
        location = _where_location(context.facts, engine.where)
        if not engine.disposed:
            yield Finding(
                message=f"the engine created at {_short_where(context.facts, engine.where)} was not "
                "disposed when the lifespan shut down",
                location=location,
            )
        if engine.checked_out:
            yield Finding(
                message=f"{engine.checked_out} connection(s) of the engine created at "
                f"{_short_where(context.facts, engine.where)} were still checked out after shutdown",
                location=location,
                fix="Close every session (`async with session_factory() as session:`), so its "
                "connection returns to the pool before shutdown.",
            )


# -- FR106 error-envelope -----------------------------------------------------------------------------

_MACHINE_CODE = re.compile(r"^[a-z][a-z0-9]*([_.-][a-z0-9]+)*$")


@rule(
    code="FR106",
    name="error-envelope",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template, shared/exceptions.py template",
    summary="Error responses (404, 422, 401) share one JSON envelope with a machine-readable code "
    "in `error`, as the rulebook's (another key through `fastapi_rules_error_code_key`).",
    rationale=(
        'Clients handle errors by one shape: `{"error": "user_not_found", "message": ...}`. '
        'FastAPI\'s defaults answer `{"detail": "Not Found"}` for one error and a list for another.'
    ),
    fix="Register handlers for HTTPException and RequestValidationError (and the domain error) "
    'that all answer `{"error": <code>, "message": <text>}`.',
    bad_example='{"detail": "Not Found"}  /  {"detail": [{"loc": [...], "msg": ...}]}',
    good_example='{"error": "user_not_found", "message": "User 7 not found"}',
    phases=("missing", "bad-input", "credentials", "envelope"),
    reports_setup_failure=True,
)
def check_error_envelope(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR106")
    # The first 404 to a missing id, 422 to bad input and 401 without credentials, routes in the
    # app's order: the order a whole run sends them in, whichever routes this process probed itself
    # (see shards.py).
    route_order = {route.target: index for index, route in enumerate(context.facts.routes)}
    samples: dict[int, Exchange] = {}
    for phase, status in ENVELOPE_SAMPLES:
        answers = [
            (route_order.get(exchange.target, -1), sent, exchange)
            for sent, exchange in enumerate(results.exchanges)
            if exchange.phase == phase and exchange.status == status
        ]
        if answers:
            samples[status] = min(answers, key=lambda answer: answer[:2])[2]
    if len(samples) < 2:
        raise RuleSkipped(
            "the probes saw fewer than two kinds of error response to compare (a 404 to a missing id, "
            "a 422 to bad input, a 401 without credentials)"
        )
    bodies = {status: exchange.json for status, exchange in samples.items()}
    not_objects = [status for status, body in bodies.items() if not isinstance(body, dict)]
    if not_objects:
        for status in not_objects:
            exchange = samples[status]
            yield Finding(
                message=f"the {status} answer to {exchange.request.shown} is not a JSON object: "
                f"{exchange.body_excerpt(100)!r}",
            )
        return
    shared = set.intersection(*(set(body) for body in bodies.values()))
    coded = [
        key
        for key in sorted(shared)
        if all(isinstance(body.get(key), str) and _MACHINE_CODE.match(body[key]) for body in bodies.values())
    ]
    shapes = "; ".join(f"{status}: {{{', '.join(sorted(body))}}}" for status, body in sorted(bodies.items()))
    key = context.options.error_code_key
    if key in coded:
        return
    if coded:
        # One envelope, but its code under another key than the rulebook's: a team's choice to
        # make on purpose, not a default.
        yield Finding(
            message=f"error responses share one envelope, with the machine-readable code in "
            f"`{coded[0]}`, not in `{key}` ({shapes}); to accept it on purpose, set the ini key "
            f"fastapi_rules_error_code_key = {coded[0]}"
        )
        return
    what = (
        "share no key"
        if not shared
        else f"share {', '.join(sorted(shared))} but no machine-readable code in it"
    )
    yield Finding(message=f"error responses do not share one envelope: they {what} ({shapes})")


# -- FR107 health-endpoints ---------------------------------------------------------------------------


@rule(
    code="FR107",
    name="health-endpoints",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template",
    summary="`GET /health` answers 200 JSON; `GET /health/ready` answers 200 and reaches the database "
    "(other paths through `fastapi_rules_health_path` and `fastapi_rules_readiness_path`).",
    rationale=(
        "Load balancers and Kubernetes need a liveness route that answers without dependencies and a "
        "readiness route that fails when the database is down; a readiness check that never touches "
        "the database routes traffic to an instance that cannot serve it."
    ),
    fix="Add `GET /health` (returns a small JSON) and `GET /health/ready` that runs `SELECT 1` "
    "through the session manager and answers 503 when it fails.",
    bad_example=(
        '@app.get("/health/ready")\nasync def ready() -> dict:\n    return {"status": "ready"}  # TODO'
    ),
    good_example=(
        '@app.get("/health/ready")\nasync def ready() -> ReadinessResponse:\n'
        '    await sessionmanager.ping()  # SELECT 1\n    return ReadinessResponse(status="ready")'
    ),
    phases=("health",),
    reports_setup_failure=True,
)
def check_health_endpoints(context: CheckContext) -> Iterator[Finding]:
    options = context.options
    results = _probe(context, "FR107")
    health = results.in_phase("health")
    liveness = [e for e in health if e.request.path == options.health_path]
    readiness = [e for e in health if e.request.path == options.readiness_path]
    if not liveness:
        yield Finding(
            message=f"the app has no `GET {options.health_path}` route"
            + _health_alias_note(context.facts, LIVENESS_ALIASES, "fastapi_rules_health_path")
        )
    else:
        first = liveness[0]
        if not first.ok or not first.is_json:
            yield Finding(
                message=f"{first.request.shown} {first.outcome}"
                + ("" if first.is_json else " without a JSON body"),
                location=_route_location_of(context.facts, first.target),
            )
    if not readiness:
        yield Finding(
            message=f"the app has no readiness route (`GET {options.readiness_path}`)"
            + _health_alias_note(context.facts, READINESS_ALIASES, "fastapi_rules_readiness_path")
        )
        return
    ready = readiness[0]
    location = _route_location_of(context.facts, ready.target)
    if not ready.ok:
        yield Finding(message=f"{ready.request.shown} {ready.outcome}", location=location)
    elif results.engines and ready.count == 0:
        yield Finding(
            message=f"{ready.request.shown} answers 200 without running any SQL: it does not "
            "check that the database is reachable",
            location=location,
        )


def _health_alias_note(facts: AppFacts, aliases: tuple[str, ...], setting: str) -> str:
    """When the app serves a health route under a name the rulebook does not use (``/readyz``):
    the setting that makes FR107 probe it on purpose; empty otherwise."""
    served = [path for path in aliases if any(r.method == "GET" and r.path == path for r in facts.routes)]
    if not served:
        return ""
    return (
        f"; it has `GET {served[0]}`, not the rulebook's path: to probe that one on purpose, set "
        f"the ini key {setting} = {served[0]}"
    )


def _route_location_of(facts: AppFacts, target: str) -> Location | None:
    for route in facts.routes:
        if route.target == target:
            return route.location
    return None


# -- FR205 delete-returns-204 (static and runtime halves) -------------------------------------------


def _runtime_delete(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR205")
    writes = [e for e in results.for_target(route.target, "write")]
    if not writes:
        raise RuleSkipped(f"the probes sent no DELETE to {route.target}")
    exchange = writes[0]
    if not exchange.ok:
        raise RuleSkipped(f"the probe's {exchange.request.shown} {exchange.outcome}; nothing to judge")
    if exchange.status != 204:
        yield Finding(
            message=f"{exchange.request.shown} answered {exchange.status}, not 204",
            location=route.location,
        )
    elif exchange.body:
        yield Finding(
            message=f"{exchange.request.shown} answered 204 with a body ({exchange.body_excerpt(60)!r})",
            location=route.location,
        )


@rule(
    code="FR205",
    name="delete-returns-204",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #16",
    summary="DELETE declares 204 and its response has an empty body.",
    rationale="204 No Content tells clients there is nothing to parse; a 200 with `null` or the "
    "deleted object makes every client special-case deletes.",
    fix="Declare `status_code=status.HTTP_204_NO_CONTENT` and return None.",
    applies_to=_method_route("DELETE"),
    bad_example='@router.delete("/{post_id}")\nasync def delete_post(...) -> dict:\n    return {"ok": True}',
    good_example='@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT)\n'
    "async def delete_post(...) -> None: ...",
    phases=("writes",),
    needs_route_data=True,
    judges_built_requests=True,
)
def check_delete_returns_204(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    declared = route.declared_status
    if declared != 204:
        yield Finding(
            message=f"DELETE endpoint `{route.name}` declares status {declared}, not 204",
            location=route.location,
        )
        return
    yield from _runtime_delete(context)


# -- FR210 bad-input-is-422 --------------------------------------------------------------------------


@rule(
    code="FR210",
    name="bad-input-is-422",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rules #14, #16",
    summary="Malformed bodies and wrongly typed parameters answer 422, never 500; odd but schema-valid "
    "values (a `str` id that is no id, empty strings, `{}` for a free-form `dict` body, a body with "
    "only its required fields) answer 2xx or 4xx, never 5xx.",
    rationale=(
        "Bad input is the client's error: a 500 pages the on-call engineer, hides the real message "
        "from the client, and often means code ran on data nobody validated. What the app "
        "validates itself (a `str` id it converts, a `dict` body it indexes) gets every value "
        "FastAPI lets through."
    ),
    fix="Declare bodies and parameters with types (Pydantic models, `int`, `UUID`) and let FastAPI "
    "validate them; keep the RequestValidationError handler free of code that can fail.",
    applies_to=any_route,
    bad_example=(
        "@app.exception_handler(RequestValidationError)\nasync def handler(request, exc):\n"
        "    body = await request.json()  # raises on malformed JSON: 500\n\n"
        '@router.get("/{item_id}")\nasync def get_item(item_id: str):\n'
        "    return await service.get(int(item_id))  # 'abc' -> ValueError: 500"
    ),
    good_example=(
        "@app.exception_handler(RequestValidationError)\nasync def handler(request, exc):\n"
        '    return JSONResponse(status_code=422, content={"error": "validation_error", ...})\n\n'
        "@router.get(\"/{item_id}\")\nasync def get_item(item_id: int):  # FastAPI answers 422 to 'abc'"
    ),
    phases=("bad-input", "edge", "edge-writes"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_bad_input_is_422(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR210")
    exchanges = results.for_target(route.target, ("bad-input", EDGE_PHASE))
    if not exchanges:
        raise RuleSkipped(
            f"{route.target} takes no typed parameter, string parameter or body to send bad or odd input to"
        )
    valid = _happy(results, route.target)
    if valid and all(exchange.server_error for exchange in valid) and any(e.server_error for e in exchanges):
        # The bad input carries what the valid request carried (credentials included); when the
        # valid request fails the same way, the 500 is not about the input (a 500 without
        # credentials is FR704's).
        first = valid[0]
        raise RuleSkipped(
            f"the valid request to {route.target} {first.outcome} too, so a 5xx to bad input says "
            "nothing about input handling"
        )
    for exchange in exchanges:
        if not exchange.server_error:
            continue
        if exchange.phase == EDGE_PHASE:
            # Values the route's schema accepts: any 2xx or 4xx is an answer, only a 5xx is a bug.
            message = (
                f"{exchange.request.shown} with {exchange.request.description} {exchange.outcome}, "
                "not a 2xx or 4xx"
            )
        else:
            message = (
                f"{exchange.request.shown} with {exchange.request.description} {exchange.outcome}, not 422"
            )
        yield Finding(message=message, location=route.location)


# -- FR211 missing-resource-is-404 -------------------------------------------------------------------


@rule(
    code="FR211",
    name="missing-resource-is-404",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #16",
    summary="GET/PATCH/DELETE on `/{id}` for an id that does not exist answers 404, never 200 or 500.",
    rationale=(
        "`200 null` makes every client check for null; a 500 reports the client's mistake as an "
        "outage. The service raises a not-found domain error; the handler answers 404."
    ),
    fix="Raise a NotFoundError (a DomainError with status 404) in the service when the repository "
    "returns None.",
    applies_to=lambda route, options: (
        route.method in ("GET", "PATCH", "DELETE") and route.path.rstrip("/").endswith("}")
    ),
    bad_example="async def get_user(user_id: int, service: UserServiceDep) -> UserResponse | None:\n"
    "    return await service.repository.get_by_id(user_id)  # None -> 200 null",
    good_example="user = await self.repository.get_by_id(user_id)\nif user is None:\n"
    '    raise UserNotFoundError(f"User {user_id} not found")',
    phases=("missing",),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_missing_resource_is_404(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR211")
    exchanges = results.for_target(route.target, "missing")
    if not exchanges:
        raise RuleSkipped(
            f"the last path parameter of {route.target} does not map to a table the probes seeded"
        )
    exchange = exchanges[0]
    if exchange.ok:
        body = exchange.body_excerpt(60)
        yield Finding(
            message=f"{exchange.request.shown} (an id that does not exist) answered {exchange.status}"
            + (f" with {body!r}" if body else " with an empty body")
            + ", not 404",
            location=route.location,
        )
    elif exchange.server_error:
        valid = _happy(results, route.target)
        if valid and all(e.server_error for e in valid):
            # The valid request to an existing id failed the same way: the 5xx is not about the
            # missing row (seeded data the app cannot handle, or a broken route: FR210's and the
            # app's own tests' to find).
            raise RuleSkipped(
                f"the valid request to {route.target} (an id that exists) {valid[0].outcome} too, so "
                "a 5xx for an id that does not exist says nothing about the missing-row path"
            )
        yield Finding(
            message=f"{exchange.request.shown} (an id that does not exist) {exchange.outcome}, not 404",
            location=route.location,
        )


# -- FR509 no-n-plus-one -----------------------------------------------------------------------------


@rule(
    code="FR509",
    name="no-n-plus-one",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #12",
    summary="The number of SQL statements of a GET request does not grow with the number of rows "
    "(measured with 3 and with 9 parents).",
    rationale=(
        "One query per row (a lazy relationship read in a loop, or a repository call per item) turns "
        "a page of 100 rows into 101 round trips; it passes every test on a small database."
    ),
    fix="Load the related rows in the list query: `selectinload(Parent.children)` for one-to-many, "
    "`joinedload(Child.parent)` for many-to-one.",
    applies_to=_method_route("GET"),
    bad_example="posts = (await session.scalars(select(Post))).all()\nfor post in posts:\n"
    "    post.author = await session.get(User, post.author_id)  # one query per post",
    good_example="posts = (await session.scalars(select(Post).options(joinedload(Post.author)))).all()",
    phases=("gets",),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_no_n_plus_one(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR509")
    small_exchange = results.fewest_statements(route.target, "small")
    # A count that grew is sampled twice at the large size (ProbeRun._wants_second_sample), so that
    # one request that happened to run extra statements does not look like a query per row.
    large_exchange = results.fewest_statements(route.target, ("large", "repeat"))
    if small_exchange is None or large_exchange is None:
        raise RuleSkipped(_unanswered(results, route.target, ("small", "large"), route))
    small_count, large_count = small_exchange.count, large_exchange.count
    if not (small_exchange.ok and large_exchange.ok):
        shown = small_exchange.request.shown
        if small_exchange.outcome == large_exchange.outcome:
            raise RuleSkipped(
                f"{shown} {small_exchange.outcome} at both data sizes: no rows to measure"
                + _auth_note(results, route, small_exchange)
            )
        raise RuleSkipped(
            f"{shown} {small_exchange.outcome} with {_seed_words(results, 'small')} and "
            f"{large_exchange.outcome} with {_seed_words(results, 'large')}: no rows to measure"
        )
    if large_count - small_count < N_PLUS_ONE_GROWTH:
        return
    shape, repeats, statement = _repeated_statement(small_exchange, large_exchange)
    hint = _eager_load_hint(context.facts, statement, large_exchange)
    message = (
        f"{route.target} runs {small_count} SQL statements with {_seed_words(results, 'small')} and "
        f"{large_count} with {_seed_words(results, 'large')}: the statement `{shape}` runs "
        f"{repeats} times"
    )
    yield Finding(
        message=message,
        location=route.location,
        fix=hint
        or "Load the related rows in the list query (selectinload for one-to-many, joinedload for "
        "many-to-one) instead of one query per row.",
    )


def _seed_words(results: ProbeResults, phase: str) -> str:
    size = SMALL if phase == "small" else LARGE
    return f"{size} parent rows"


def _repeated_statement(small: Exchange, large: Exchange) -> tuple[str, int, Any]:
    large_shapes = collections.Counter(s.shape for s in large.statements)
    small_shapes = collections.Counter(s.shape for s in small.statements)
    shape, _growth = max(
        large_shapes.items(), key=lambda item: (item[1] - small_shapes.get(item[0], 0), item[1])
    )
    statement = next(s for s in large.statements if s.shape == shape)
    text = statement.short
    return text, large_shapes[shape], statement


def _eager_load_hint(facts: AppFacts, statement: Any, exchange: Exchange) -> str | None:
    """Name the relationship the repeated statement loads, and the eager load that avoids it."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import RelationshipDirection

    if statement is None or not statement.tables:
        return None
    repeated_table = statement.tables[0]
    filtered = set(statement.filter_columns)
    other_tables = {t for s in exchange.statements if s is not statement for t in s.tables}
    candidates: list[tuple[int, str, str]] = []
    try:
        classes = list(facts.mapped_classes)
    except Exception:  # noqa: BLE001
        return None
    for cls in classes:
        mapper: Any = sa_inspect(cls, raiseerr=False)
        if mapper is None:
            continue
        for relationship in mapper.relationships:
            target = relationship.mapper.local_table
            if getattr(target, "name", None) != repeated_table:
                continue
            remote = {f"{c.table.name}.{c.name}" for c in relationship.remote_side}
            if filtered and not (remote & filtered):
                continue
            many_to_one = relationship.direction is RelationshipDirection.MANYTOONE
            loader = "joinedload" if many_to_one else "selectinload"
            parent_table = getattr(mapper.local_table, "name", "")
            score = 2 if parent_table in other_tables else 1
            candidates.append((score, f"{cls.__name__}.{relationship.key}", loader))
    if not candidates:
        return None
    candidates.sort(key=lambda item: -item[0])
    _score, attribute, loader = candidates[0]
    kind = "many-to-one" if loader == "joinedload" else "one-to-many"
    return (
        f"Load `{attribute}` eagerly in the query that lists the rows: "
        f"`.options({loader}({attribute}))` ({kind}), instead of one query per row."
    )


# -- FR510 query-budget --------------------------------------------------------------------------------


@rule(
    code="FR510",
    name="query-budget",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #12",
    summary="No request runs more SQL statements than a budget (default 10; per route in the ini).",
    rationale=(
        "Each statement is a network round trip: a request that needs dozens is slow under load even "
        "when it does not grow with the data."
    ),
    fix="Combine queries (joins, eager loads, one aggregate query), or raise this route's budget "
    "with `fastapi_rules_query_budgets = GET /path = N` when the work is necessary.",
    applies_to=any_route,
    bad_example="stats = {k: await repo.count(k) for k in kinds}  # one query per kind",
    good_example="stats = await repo.count_by_kind()  # one GROUP BY query",
    phases=("gets", "writes"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_query_budget(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR510")
    exchanges = [
        e
        for e in _happy(results, route.target)
        if e.error is None and e.status is not None and e.status < 500
    ]
    if not exchanges:
        raise RuleSkipped(_unanswered(results, route.target, route=route))
    worst = max(exchanges, key=lambda e: e.count)
    budget = context.options.query_budget_for(route.method, route.path)
    if worst.count > budget:
        yield Finding(
            message=f"{worst.request.shown} ran {worst.count} SQL statements, over the budget of {budget}",
            location=route.location,
        )
    elif not any(e.ok for e in exchanges):
        # A refusal (401 before the current user was loaded, 404, 422) runs a few statements and
        # stops: it shows nothing about what the route's work costs.
        raise RuleSkipped(_unanswered(results, route.target, route=route))


# -- FR704 auth-challenge --------------------------------------------------------------------------


def _has_challenge(route: RouteFacts, options: RulesOptions) -> bool:
    """Behind a bearer scheme, or a dependency of its own that reads the credentials."""
    try:
        return bool(challenge_schemes(route)) or credential_reader(route) is not None
    except Exception:  # noqa: BLE001 - an exotic dependency tree: not a protected route
        return False


@rule(
    code="FR704",
    name="auth-challenge",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #21",
    summary="Routes behind an OAuth2/bearer scheme answer 401 with `WWW-Authenticate: Bearer` "
    "without a token or with a garbage one; never 500. Routes whose own dependency reads the "
    "credentials (an `Authorization`/API-key header or a token cookie) never answer 5xx without them, "
    "and a 401 they send names its scheme in `WWW-Authenticate`.",
    rationale=(
        "RFC 6750 clients refresh or re-login on 401 + WWW-Authenticate; a 500 or a 403 for a bad "
        "token breaks that, and a decoder crash on garbage input is an outage anyone can trigger."
    ),
    fix="Catch the JWT library's errors in the current-user dependency and raise an authentication "
    "error that the handler answers with 401 and `WWW-Authenticate: Bearer`.",
    applies_to=_has_challenge,
    bad_example="payload = jwt.decode(token, key, algorithms=[ALG])  # DecodeError -> 500",
    good_example="try:\n    payload = jwt.decode(token, key, algorithms=[ALG])\n"
    "except jwt.InvalidTokenError as exc:\n    raise InvalidTokenError() from exc  # 401 + WWW-Authenticate",
    phases=("credentials",),
    reports_setup_failure=True,
    judges_built_requests=True,
)
def check_auth_challenge(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR704")
    exchanges = results.for_target(route.target, "no-credentials") + results.for_target(
        route.target, "garbage-token"
    )
    if not exchanges:
        raise RuleSkipped(f"the probes could not build a request for {route.target}")
    reader = _token_reader(context.facts, route)
    own_reader = None if reader is not None or challenge_schemes(route) else credential_reader(route)
    for exchange in exchanges:
        challenge = exchange.headers.get("www-authenticate", "")
        if own_reader is not None:
            # No scheme declares what the route expects: judge what no scheme may do (a crash, a
            # 401 that names no scheme), not which of 401 and 403 it chose.
            if exchange.server_error:
                problem = f"{exchange.outcome}: `{own_reader.name}` reads {own_reader.carrier} and crashed"
            elif exchange.status == 401 and not challenge:
                problem = "answered 401 without a `WWW-Authenticate` header (RFC 7235 requires one)"
            else:
                continue
            yield Finding(
                message=f"{exchange.request.shown} with {exchange.request.description} {problem}",
                location=context.facts.location_of(own_reader.call) or route.location,
                fix=f"Make `{own_reader.name}` answer a missing or invalid credential with 401 and a "
                "`WWW-Authenticate` header naming the scheme (catch the token library's errors), or "
                "declare the scheme with `fastapi.security` (`OAuth2PasswordBearer`, `APIKeyHeader`).",
            )
            continue
        if exchange.status == 401 and "bearer" in challenge.lower():
            continue
        if exchange.status == 401:
            problem = "answered 401 without `WWW-Authenticate: Bearer`"
        else:
            problem = f"{exchange.outcome}, not 401"
        message = f"{exchange.request.shown} with {exchange.request.description} {problem}"
        if reader is None:
            yield Finding(message=message, location=route.location)
            continue
        # One dependency usually decides this answer for every protected route: name it and point
        # at it, so seventeen items show one cause in one place.
        name, location = reader
        yield Finding(
            message=f"{message} (the token is read by `{name}`)",
            location=location or route.location,
            fix=f"Make `{name}` raise an authentication error that the app answers with 401 and "
            "`WWW-Authenticate: Bearer`, for a missing token and for one that does not decode "
            "(catch the JWT library's errors).",
        )


def _token_reader(facts: AppFacts, route: RouteFacts) -> tuple[str, Location | None] | None:
    """The dependency that reads the route's bearer token, as the app runs it (its overrides applied)."""
    from fastapi.security import HTTPBearer
    from fastapi.security.oauth2 import OAuth2

    overrides = getattr(facts, "initial_dependency_overrides", None) or {}
    with contextlib.suppress(Exception):
        for consumer, scheme in iter_schemes(route):
            if isinstance(scheme, OAuth2 | HTTPBearer):
                call = overrides.get(consumer.call, consumer.call)
                name = getattr(call, "__qualname__", None) or getattr(call, "__name__", None)
                if name:
                    return str(name), facts.location_of(call)
    return None


# -- FR705 passwords-hashed ---------------------------------------------------------------------------

_BCRYPT = re.compile(r"^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$")
_ARGON2 = re.compile(r"^\$argon2(id|i|d)\$")


def _creates_with_password(route: RouteFacts, options: RulesOptions) -> bool:
    from pydantic import BaseModel

    if route.method != "POST":
        return False
    try:
        if RequestBuilder.body_kind(route) != "json":
            return False
        annotation = plain_annotation(RequestBuilder.body_field(route).field_info.annotation)
    except Exception:  # noqa: BLE001
        return False
    if not is_subclass(annotation, BaseModel):
        return False
    return any(PASSWORD_FIELD.match(name) for name in annotation.model_fields)


@rule(
    code="FR705",
    name="passwords-hashed",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #21",
    summary="After a create call carrying a `password`, no column holds the plain password and the "
    "stored value is a bcrypt or argon2 hash.",
    rationale="A database dump, a backup or an SQL injection must not hand out users' passwords.",
    fix="Hash with bcrypt (or argon2) before storing: `bcrypt.hashpw(password.encode(), "
    "bcrypt.gensalt())`, run in a thread (`asyncio.to_thread`).",
    applies_to=_creates_with_password,
    bad_example="User(**data.model_dump())  # password stored as sent",
    good_example="User(**data.model_dump(exclude={'password'}),\n"
    "     hashed_password=await hash_password(data.password))",
    phases=("writes", "password-scan"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_passwords_hashed(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR705")
    checks = [c for c in results.password_checks if c.target == route.target]
    if not checks:
        raise RuleSkipped(f"the probes could not send {route.target} a body with a known password")
    check = checks[0]
    if check.skipped:
        raise RuleSkipped(check.skipped)
    for place in check.plain_found_in:
        yield Finding(
            message=f"the plain password sent to {route.target} is stored in column `{place}`",
            location=route.location,
        )
    for place, value in check.stored:
        if place in check.plain_found_in:
            continue
        if not (_BCRYPT.match(value) or _ARGON2.match(value)):
            shown = value[:12] + "..." if len(value) > 12 else value
            yield Finding(
                message=f"column `{place}` of the row created by {route.target} holds {shown!r}, "
                "not a bcrypt or argon2 hash",
                location=route.location,
            )


# -- FR806 overrides-restored -------------------------------------------------------------------------


@rule(
    code="FR806",
    name="overrides-restored",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="Rule #18",
    summary="At the end of the session, `app.dependency_overrides` is as it was when the app was "
    "loaded: the tests left no override behind.",
    rationale=(
        "An override a test forgets to remove leaks into every later test: they pass against a fake "
        "database or a fake user, whatever the real code does."
    ),
    fix="Restore overrides in the fixture that sets them: `yield client` then "
    "`app.dependency_overrides.clear()` (or `pop(dep)`).",
    bad_example="app.dependency_overrides[get_db] = override_get_db  # never removed",
    good_example="app.dependency_overrides[get_db] = override_get_db\nyield client\n"
    "app.dependency_overrides.clear()",
)
def check_overrides_restored(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    current = getattr(facts.app, "dependency_overrides", None)
    if current is None:
        raise RuleSkipped("the app has no dependency_overrides (not a FastAPI app)")
    initial = getattr(facts, "initial_dependency_overrides", {})
    for call, replacement in list(current.items()):
        if call in initial and initial[call] is replacement:
            continue
        verb = "is now overridden" if call not in initial else "has a different override"
        yield Finding(
            message=f"dependency `{code_of(call)}` {verb} by `{code_of(replacement)}`, left behind by "
            "the test session",
            location=facts.location_of(replacement),
        )
    for call in initial:
        if call not in current:
            yield Finding(
                message=f"the override of `{code_of(call)}` that the app set up was removed by the "
                "test session",
                location=facts.location_of(call),
            )


# -- FR108 docs-hidden-in-production -------------------------------------------------------------------


@rule(
    code="FR108",
    name="docs-hidden-in-production",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    background=start_production_child,
    section="main.py template",
    summary="With the production environment set, `/docs`, `/redoc` and `/openapi.json` (and the "
    "documentation paths the app declares, sub-apps included) answer 404.",
    rationale=(
        "The interactive docs and the schema map every route, parameter and model of the API for "
        "anyone who finds them; production has no reason to serve them."
    ),
    fix="Pass `docs_url=None, redoc_url=None, openapi_url=None` to FastAPI when "
    '`settings.ENVIRONMENT == "production"`.',
    bad_example="app = FastAPI(lifespan=lifespan)  # /docs everywhere",
    good_example=(
        'production = settings.ENVIRONMENT == "production"\n'
        'app = FastAPI(docs_url=None if production else "/docs",\n'
        '              redoc_url=None if production else "/redoc",\n'
        '              openapi_url=None if production else "/openapi.json")'
    ),
)
def check_docs_hidden_in_production(context: CheckContext) -> Iterator[Finding]:
    facts = production_facts(context.facts, context.options)
    declared = declared_docs_paths(context.facts.app)
    for path in sorted({*DOCS_KINDS, *declared}):
        status = facts.docs_status.get(path)
        if status is None:
            if path not in declared and path in facts.docs_errors:
                continue  # a path the app never serves its docs at: its failure is another matter
            error = facts.docs_errors.get(path, "no answer")
            yield Finding(
                message=f"with {facts.env_text}, GET {path} failed ({error}) instead of answering 404"
            )
        elif status != 404 and facts.docs_served.get(path, True):
            yield Finding(message=f"with {facts.env_text}, GET {path} answers {status}, not 404")


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


# -- FR402 no-blocking-at-runtime ------------------------------------------------------------------------


@rule(
    code="FR402",
    name="no-blocking-at-runtime",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rules #8, #9",
    summary="While serving the probes, no blocking call runs on the event loop thread and no request "
    "stalls the loop for over 100 ms, repeatedly.",
    rationale=(
        "One blocking call or CPU-bound computation on the loop freezes every request the worker "
        "serves, not only its own."
    ),
    fix="Use async libraries for I/O; run CPU-bound or unavoidable blocking code with "
    "`await asyncio.to_thread(fn, ...)` (or `run_in_executor`).",
    applies_to=any_route,
    bad_example="hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())  # ~250 ms on the loop",
    good_example="hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt())",
    phases=("gets", "writes", "write-repeats"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_no_blocking_at_runtime(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR402")
    stall = results.stall
    if stall is not None and stall.target == route.target:
        yield Finding(
            message=f"{stall.request} blocked the event loop for over {stall.seconds:g} s, at "
            f"{_short_frame(context.facts, stall.where)}: a blocking call in async code stops every "
            "other request of the process (the probes stopped there)",
            location=_frame_location(context.facts, stall.where) or route.location,
            fix="Make the call async (an async client, asyncio.sleep), or run it in a thread with "
            "`await asyncio.to_thread(...)`; a sync route (`def`) runs in the threadpool.",
        )
        return
    lags = results.stalls.get(route.target)
    if lags is None:
        if route.method == "DELETE":
            raise RuleSkipped(
                "the event loop is not watched on DELETE requests: a DELETE is sent once (its row is "
                "gone after it), and a loop stall counts only when it repeats"
            )
        raise RuleSkipped(f"the probes sent no valid request to {route.target} with the event loop watched")
    reported: set[tuple[str, str]] = set()
    for call in results.blocking_calls:
        if call.target != route.target or (call.call, call.where) in reported:
            continue
        reported.add((call.call, call.where))
        yield Finding(
            message=f"{call.call.removeprefix('Blocking call to ')} ran on the event loop while serving "
            f"{route.target} (at {_short_frame(context.facts, call.where)})",
            location=_frame_location(context.facts, call.where) or route.location,
        )
    slow = [lag for lag in lags if lag >= STALL_THRESHOLD]
    if len(slow) >= 2:
        # No measured duration in the message: it differs on every run (the JSON report must not).
        yield Finding(
            message=f"{route.target} stalled the event loop for over {STALL_THRESHOLD * 1000:.0f} ms on "
            f"{len(slow)} of {len(lags)} requests: CPU-bound or blocking work runs on the loop",
            location=route.location,
        )


# -- FR511 survives-connection-loss --------------------------------------------------------------------------


@rule(
    code="FR511",
    name="survives-connection-loss",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="Rule #19, database.py template",
    summary="After PostgreSQL drops every connection (`pg_terminate_backend`), the next request "
    "still succeeds; runs only against a real PostgreSQL.",
    rationale=(
        "Failovers, restarts and idle timeouts kill pooled connections; without `pool_pre_ping` the "
        "first request after each one fails with a 500."
    ),
    fix="Create the engine with `pool_pre_ping=True` (and a `pool_recycle` below the server's idle timeout).",
    bad_example="create_async_engine(url, pool_size=5)",
    good_example="create_async_engine(url, pool_size=5, pool_recycle=3600, pool_pre_ping=True)",
    phases=("connection-loss",),
    reports_setup_failure=True,
)
def check_survives_connection_loss(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR511")
    if results.connection_loss is None:
        raise RuleSkipped(results.connection_loss_skipped or "the probe could not run")
    warm, after = results.connection_loss
    if after.ok:
        return
    engine = results.engines[0] if results.engines else None
    yield Finding(
        message=f"after the database dropped every connection, {after.request.shown} {after.outcome} "
        f"(it answered {warm.status} before)",
        location=_where_location(context.facts, engine.where) if engine else None,
    )


# -- FR802 structured-logging ----------------------------------------------------------------------------


@rule(
    code="FR802",
    name="structured-logging",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    background=start_logging_child,
    section="Rule #24",
    summary="structlog is configured once the app has started, and renders JSON in production.",
    rationale=(
        "Log aggregators index JSON fields (request id, user, path); console-formatted lines in "
        "production are text to grep, and an unconfigured structlog prints its development format."
    ),
    fix="Call a `configure_logging()` that runs `structlog.configure(...)` in the lifespan, with "
    '`JSONRenderer()` when `settings.LOG_FORMAT == "json"` (production).',
    bad_example="logger = structlog.get_logger()  # never configured",
    good_example="structlog.configure(processors=[..., structlog.processors.JSONRenderer()], ...)",
)
def check_structured_logging(context: CheckContext) -> Iterator[Finding]:
    try:
        facts = logging_facts(context.facts, context.options)
    except LoggingProbeError as exc:
        # Nothing was found wrong: a warning rule must not fail the run because production mode
        # could not start (the production-mode rules do the same); an error rule reports it.
        if context.options.effective_rule(registry.get_rule("FR802")).severity is Severity.WARNING:
            raise RuleSkipped(f"production logging could not be checked: {exc}") from None
        raise AppStartupError(str(exc), exc.output or None) from None
    env = describe_env(facts.env)
    if not facts.structlog_installed:
        yield Finding(message="structlog is not installed in the app's environment")
        return
    if not facts.configured:
        yield Finding(message=f"with {env}, structlog is not configured after the app started")
        return
    if facts.line is None:
        yield Finding(
            message=f"with {env}, a structlog warning event did not reach stdout or stderr (no handler "
            "renders structlog's events)"
        )
    elif not facts.is_json:
        shown = facts.line if len(facts.line) <= 100 else facts.line[:97] + "..."
        yield Finding(message=f"with {env}, log events are not rendered as JSON: {shown!r}")


# -- FR803 errors-are-logged --------------------------------------------------------------------------------


@rule(
    code="FR803",
    name="errors-are-logged",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template, Rule #24",
    summary="The generic error handler logs the unhandled exception with the request's path and method.",
    rationale=(
        "The generic handler hides the error from the client; if it does not log it, with the "
        "traceback and the request it came from, nobody ever sees it."
    ),
    fix='In the `Exception` handler: `logger.error("unhandled_exception", path=request.url.path, '
    "method=request.method, exc_info=exc)` before answering 500.",
    bad_example=(
        "async def handler(request, exc):\n"
        '    return JSONResponse(status_code=500, content={"error": "internal_server_error"})'
    ),
    good_example=(
        "async def handler(request, exc):\n"
        '    logger.error("unhandled_exception", path=request.url.path,\n'
        "                 method=request.method, exc_info=exc)\n"
        "    return JSONResponse(...)"
    ),
    phases=("synthetic-error",),
)
def check_errors_are_logged(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    if Exception not in facts.exception_handlers and 500 not in facts.exception_handlers:
        raise RuleSkipped("the app has no handler for Exception (FR105 reports that)")
    results = _probe(context, "FR803")
    exchange = results.synthetic
    if exchange is None:
        raise RuleSkipped(results.synthetic_skipped or "no synthetic error was injected")
    handler = facts.exception_handlers.get(Exception) or facts.exception_handlers.get(500)
    location = facts.location_of(handler)
    path = exchange.request.path.split("?")[0]
    method = exchange.request.method
    shown = exchange.request.shown
    errors = [r for r in results.synthetic_logs if r.level in ("error", "exception", "critical", "fatal")]
    if not errors:
        yield Finding(
            message=f"the generic handler `{code_of(handler)}` logged nothing at error level for an "
            f"unhandled exception in {shown}",
            location=location,
        )
        return
    marker = results.synthetic_marker

    def mentions(record: Any, value: str) -> bool:
        return value in record.text or any(value == v for v in record.fields.values())

    with_request = [r for r in errors if mentions(r, path) and mentions(r, method)]
    if not with_request:
        yield Finding(
            message=f"the generic handler logged the unhandled exception in {shown} without "
            "the request's path and method",
            location=location,
        )
        return
    if not any(r.has_exception or (marker and marker in r.text) for r in with_request):
        yield Finding(
            message=f"the generic handler logged the error in {shown} without the exception "
            "(no exc_info, no exception text)",
            location=location,
        )
