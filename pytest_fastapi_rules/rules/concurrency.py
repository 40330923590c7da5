"""FR4xx: concurrency rules: nothing blocks the event loop, and the app's async code stays async.

FR401 and FR403 read the app's source (blocking calls in async endpoints and dependencies, and
sessions shared across concurrent tasks); FR402 watches the event loop during the probe run.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from pytest_fastapi_rules.probing.blocking import STALL_THRESHOLD
from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, RuleSkipped, Scope, Severity, rule
from pytest_fastapi_rules.rules.common import any_route
from pytest_fastapi_rules.rules.probe_support import _frame_location, _probe, _short_frame
from pytest_fastapi_rules.source.index import SourceIndex, _index
from pytest_fastapi_rules.source.inference import resolve_callee
from pytest_fastapi_rules.source.parsing import (
    MISSING,
    FunctionInfo,
    _quote,
    _shadowed,
    dotted_text,
    iter_body,
)
from pytest_fastapi_rules.source.sessions import (
    SESSION_ATTRIBUTES,
    db_session_names,
    self_attribute_is_session,
    session_key,
)
from pytest_fastapi_rules.sqla import (
    is_scoped_session,
    is_sync_engine,
    is_sync_session_factory,
    is_sync_session_like_class,
)

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
