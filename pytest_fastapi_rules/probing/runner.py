"""The probe run: one orchestrator that exercises the app once per session; every probe rule reads it.

The first probe item calls :func:`probe_results`; the run happens then, once, and its
:class:`ProbeResults` (or the error that prevented it) is cached on the session's ``AppFacts``, so
every other probe item reads the same observations. The run, in order:

1. stops the app if the core had started it (its lifespan ran against the app's own configuration
   for rules that read engine settings), creates the isolated database, and installs the
   redirection and the SQL guard (``database.py``, ``counting.py``);
2. starts the app's lifespan anew under the redirection (timed: FR102), creates the schema from the
   ORM metadata, seeds it at the small size and plans authentication (``auth.py``);
3. sends each GET route's valid request at the small size, reseeds at the large size, sends them
   again (FR509, FR510) while watching the loop (FR402: stalls timed, blocking calls recorded),
   once more for a route whose count grew or whose request stalled (a second sample before a
   verdict), then the negative requests (missing ids FR211, bad input FR210 and the odd but
   schema-valid values of the read routes, ``edges.py``, no or garbage credentials FR704, page size
   over the bound FR207, a preflight from an unlisted origin FR701),
   the health routes (FR107), the session-lifecycle and synthetic-error injections (FR306, FR105,
   FR803) while the data is still as seeded, then the writes (POST, PUT, PATCH, DELETE: FR205,
   FR705; the loop watched except for DELETE), the odd values of the write routes (FR210: after
   the writes, whose rows they could change), the connection-loss probe on PostgreSQL (FR511,
   after a reseed), and a second sample of a write that stalled. Every request is sent as few
   times as its rules need: the floor of the benchmark sends one per route, and the requests are
   most of the run;
4. stops the lifespan (timed, FR102), looks at the engines it used (FR103), and restores everything:
   create functions, swapped references, factory binds, dependency overrides, listeners; disposes
   every engine it created and drops the isolated database, in ``finally``.

Every coroutine runs on the plugin's app loop (``AppRuntime.run``), bounded by a timeout, so an
``AsyncEngine`` only ever sees one loop and an interrupted run leaves at most one request running.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.discovery import record_while_running
from pytest_fastapi_rules.facts import MemoKey, is_subclass, plain_annotation
from pytest_fastapi_rules.options import DEFAULT_EDGE_REQUESTS
from pytest_fastapi_rules.probing import auth as auth_mod
from pytest_fastapi_rules.probing.blocking import STALL_THRESHOLD, BlockingCallRecorder, LoopWatch
from pytest_fastapi_rules.probing.column_values import declared_types
from pytest_fastapi_rules.probing.counting import SqlMonitor, not_recording, recording
from pytest_fastapi_rules.probing.database import (
    OverrideSet,
    Redirector,
)
from pytest_fastapi_rules.probing.edges import EDGE_PHASE, edge_requests
from pytest_fastapi_rules.probing.errors import ErrorCapture, exception_detail, stable_text
from pytest_fastapi_rules.probing.lifecycle import (
    check_connection_loss,
    check_session_lifecycle,
    connection_loss_applies,
    send_synthetic_error,
)
from pytest_fastapi_rules.probing.metadata import metadatas_of, schemas_of, sorted_tables
from pytest_fastapi_rules.probing.placement import (
    IsolatedDatabase,
    PendingDatabase,
    ProbeDatabaseError,
    forget,
    placement_of,
)
from pytest_fastapi_rules.probing.requests import ProbeRequest, RequestBuilder
from pytest_fastapi_rules.probing.results import (
    N_PLUS_ONE_GROWTH,
    BlockingCall,
    EngineReport,
    Exchange,
    LoopStall,
    PasswordCheck,
    PhaseFailure,
    ProbeResults,
)
from pytest_fastapi_rules.probing.seeding import (
    LARGE,
    SMALL,
    Seeder,
    SeedError,
    SeedResult,
    column_type,
    holds_plain_text,
    schema_hints,
)
from pytest_fastapi_rules.probing.shards import Shard
from pytest_fastapi_rules.runtime import AppStartupError, LoopStalled
from pytest_fastapi_rules.tracebacks import raise_again

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions

#: The methods whose requests change data: their edge requests are sent after the writes.
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
#: Seconds one probe request may take before it counts as hung.
REQUEST_TIMEOUT = 30.0
#: Liveness and readiness paths common in the wild that the rulebook does not name: FR107 probes
#: only the configured ones (the rulebook's by default) and names these in its finding.
READINESS_ALIASES = ("/health/readiness", "/ready", "/readyz", "/readiness")
LIVENESS_ALIASES = ("/healthz", "/health/live", "/livez")
UNLISTED_ORIGIN = "https://fastapi-rules-unlisted-origin.example"
GARBAGE_TOKEN = "fastapi-rules.garbage.token"
#: The error answers FR106 compares, each from the phase that asks for it, in the run's order: the 404
#: to a missing id, the 422 to bad input, the 401 without credentials.
ENVELOPE_SAMPLES: tuple[tuple[str, int], ...] = (
    ("missing", 404),
    ("bad-input", 422),
    ("no-credentials", 401),
)
#: The phase of a valid request sent to a route of another shard for an app-level probe's choice.
OTHER_SHARD_PHASE = "large-other-shard"

#: The session's probe results (or the failure that stopped the run), per shard.
_RESULTS: MemoKey[dict[Shard | None, ProbeResults | BaseException]] = MemoKey("probe results")
log = logging.getLogger(__name__)


class ProbeRunStalled(Exception):
    """A request blocked the event loop: the run cannot go on (see :class:`LoopStall`)."""

    def __init__(self, stall: LoopStall) -> None:
        super().__init__(f"{stall.request} blocked the event loop at {stall.where}")
        self.stall = stall


class ProbeSetupError(Exception):
    """The probes cannot run (database, seeding, isolation); the message is for the user.

    ``cause`` is the same problem in a few words (``table 'user', column 'id': SQLite does not
    support ...``): one probe item reports the whole message as an error, the others are skipped
    with a reason that quotes ``cause`` and points at that item.
    """

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause or _first_clause(message)


def _first_clause(message: str, limit: int = 160) -> str:
    """The first sentence of a message, short enough for a one-line skip reason."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    end = re.search(r"\.(\s|$)", line)
    if end:
        line = line[: end.start()]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def probe_results(facts: AppFacts, options: RulesOptions, shard: Shard | None = None) -> ProbeResults:
    """The probe run's observations, computed by the first caller and cached for the session.

    ``shard`` is the part of the run an xdist worker does (``probing/shards.py``); None is the
    whole run. Raises :class:`~pytest_fastapi_rules.runtime.AppStartupError` when the lifespan
    fails, and :class:`ProbeSetupError` when the isolated database cannot be set up; both are
    cached too, so every probe item reports the same cause.
    """
    per_facts = facts.memo(_RESULTS, dict)
    cached = per_facts.get(shard)
    if cached is None:
        try:
            cached = ProbeRun(facts, options, shard).execute()
        except ProbeSetupError as exc:
            cached = exc
        except ProbeDatabaseError as exc:
            cached = ProbeSetupError(str(exc), exc.cause)
        except SeedError as exc:
            cached = ProbeSetupError(str(exc))
        except Exception as exc:  # noqa: BLE001 - AppStartupError and the plugin's own bugs alike
            cached = exc
        per_facts[shard] = cached
    if isinstance(cached, BaseException):
        raise_again(cached)
    return cached


def _one_line(exc: BaseException) -> str:
    """``ExceptionType: first line of its message``, without what changes from run to run."""
    lines = stable_text(str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _headers(response: httpx.Response) -> dict[str, str]:
    return {key.lower(): value for key, value in response.headers.items()}


class ProbeRun:
    """One run of the probes against the app (see the module docstring for the phases)."""

    def __init__(self, facts: AppFacts, options: RulesOptions, shard: Shard | None = None) -> None:
        self.facts = facts
        self.options = options
        self.shard = shard
        #: The routes this run probes one by one (all of them, or its shard's).
        self.routes = [r for r in facts.routes if shard is None or shard.holds(r.target)]
        #: Whether this run also does the app-level probes (startup, health, CORS, injections).
        self.app_level = shard is None or shard.runs_app_level
        self.runtime = facts.runtime
        self.results = ProbeResults()
        roots = []
        for module in facts.own_modules:
            file = getattr(module, "__file__", None)
            if file:
                roots.append(str(__import__("pathlib").Path(file).resolve().parent))
        self.own_roots = tuple(sorted(set(roots)))
        self.monitor = SqlMonitor(self.own_roots)
        self.errors = ErrorCapture(self.own_roots, facts.relative)
        self.database: IsolatedDatabase | None = None
        self.pending: PendingDatabase | None = None
        self.redirector: Redirector | None = None
        self.plugin_engine: AsyncEngine | None = None
        self.overrides = OverrideSet(getattr(facts.app, "dependency_overrides", {}))
        self.seeder: Seeder | None = None
        self.seed: SeedResult | None = None
        self.auth: auth_mod.AuthPlan | None = None
        self.builder: RequestBuilder | None = None
        self._pool_counts: dict[int, EngineReport] = {}
        self._blocking: BlockingCallRecorder | None = None
        self._serialize_patch: Any = None
        #: Seconds a request may take, and the app may block the loop (``fastapi_rules_request_timeout``).
        self.request_timeout = float(getattr(options, "request_timeout", REQUEST_TIMEOUT))
        #: ``(target, request)`` being sent now: read from this thread when the loop stops beating.
        self.in_flight: tuple[str, str] | None = None

    # -- the whole run ----------------------------------------------------------------------------

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run ``coro`` on the app's loop; a blocked loop stops the run (:class:`ProbeRunStalled`)."""
        limit = self.request_timeout
        try:
            return self.runtime.run(
                coro, timeout=timeout if timeout is not None else limit * 4, stall_limit=limit
            )
        except LoopStalled as exc:
            target, shown = self.in_flight or ("app", "the app's own background work")
            raise ProbeRunStalled(LoopStall(target, shown, exc.seconds, exc.where, exc.stack)) from None

    def execute(self) -> ProbeResults:
        results = self.results
        try:
            mapped = list(self.facts.mapped_classes)
        except Exception:  # noqa: BLE001 - SQLAlchemy missing or unreadable registries
            mapped = []
        metadatas = metadatas_of(mapped)
        results.has_orm = bool(metadatas)
        if self.runtime.started:
            self.runtime.stop()
        placement = placement_of(
            self.facts, self.options.db_url, self.options.sources.get("fastapi_rules_db_url")
        )
        self.pending = PendingDatabase(placement, self.monitor.allow, schemas_of(metadatas))
        try:
            self.redirector = Redirector(self.pending, self.monitor)
            self.monitor.install()
            self.redirector.patch_creation()
            self.redirector.redirect_existing(
                self.facts, self.options.engine_paths, self.options.session_factory_paths
            )
            self._patch_serialization()
            self.overrides.reset_to(
                getattr(self.facts, "initial_dependency_overrides", self.overrides.snapshot)
            )
            started = time.perf_counter()
            try:
                self.runtime.start()
            except AppStartupError as exc:
                if placement.failure is not None:
                    # The app's engine was created on a server the user named and cannot be used:
                    # that is the cause, not the app's startup code.
                    raise ProbeSetupError(str(placement.failure), placement.failure.cause) from None
                choice = placement.choice
                if choice is not None and choice.server is None and choice.fallback:
                    raise AppStartupError(
                        f"{exc.message} (The probes started the app on SQLite because {choice.fallback}.)",
                        exc.app_traceback,
                    ) from None
                raise
            results.startup_seconds = time.perf_counter() - started
            self.redirector.redirect_existing(
                self.facts, self.options.engine_paths, self.options.session_factory_paths
            )
            self._redirect_lifespan_state()
            # The engines and factories FR501, FR502 and FR504 judge, from this start, not one of their own.
            options = self.options
            record_while_running(
                self.facts, options.engine_paths, options.session_factory_paths, self.redirector.original_of
            )
            # The database exists once the app's first engine needed it; else it is made now.
            self.database = self.pending.get()
            results.database = self.database.stable_description
            if placement.choice is not None:
                results.database_choice = placement.choice.described
                results.database_fallback = placement.choice.fallback
            self.plugin_engine = self.database.create_plugin_engine()
            self.monitor.allow(self.plugin_engine.sync_engine)
            self.seeder = Seeder(
                metadatas,
                self.options.seed_hook,
                hints=self._schema_hints(metadatas),
                declared=declared_types(mapped),
                dialect=self.plugin_engine.sync_engine.dialect,
                row_factories=self._row_factories(),
            )
            results.seeded_by_hook = bool(self.options.seed_hook)
            if metadatas:
                where = (
                    "the probes' temporary SQLite database"
                    if self.database.backend == "sqlite"
                    else self.database.stable_description
                )
                self.run(self.seeder.create_schema(self.plugin_engine, where))
            self._plan()
            try:
                self._phases()
            except SeedError as exc:
                raise ProbeSetupError(str(exc), _first_clause(str(exc))) from None
            except ProbeRunStalled as exc:
                results.stall = exc.stall
            finally:
                results.broken_tables = self._broken_tables()
                results.request_failures = self._request_failures()
                results.requests_given_up = dict(self.builder.given_up) if self.builder else {}
            if results.stall is None:
                with self._phase("shutdown"):
                    self._shutdown()
        finally:
            self._cleanup()
        results.escapes = list(self.monitor.escapes)
        return results

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Run one phase; a crash is recorded against the rules it feeds (the rules that declare
        the phase, ``registry.phase_rules``) instead of ending the run, so every other rule still
        reports."""
        try:
            yield
        except (SeedError, ProbeRunStalled):
            raise
        except Exception as exc:
            import traceback

            log.debug("probe phase %s crashed", name, exc_info=True)
            self.results.phase_failures[name] = PhaseFailure(
                phase=name,
                codes=registry.phase_rules().get(name, ()),
                summary=_one_line(exc),
                traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            )

    def _request_failures(self) -> dict[str, PhaseFailure]:
        """The routes whose requests the builder could not make, as failures of their own rules."""
        import traceback

        failures: dict[str, PhaseFailure] = {}
        for target, exc in (self.builder.failures if self.builder is not None else {}).items():
            failures[target] = PhaseFailure(
                phase=f"requests:{target}",
                codes=registry.route_request_rules(),
                what=f"building the probe requests of {target}",
                summary=_one_line(exc),
                traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            )
        return failures

    def _broken_tables(self) -> dict[str, str]:
        """The seeder's broken tables, each reason saying on which database and why SQLite."""
        if self.seeder is None or not self.seeder.broken:
            return {}
        fallback = self.results.database_fallback
        suffix = f" (the probes run on SQLite because {fallback})" if fallback else ""
        return {table: why + suffix for table, why in self.seeder.broken.items()}

    def _row_factories(self) -> dict[str, str]:
        """``fastapi_rules_row_factories`` by table name (the ini names a table or a mapped class)."""
        by_class = {name: table for table, name in self._class_names().items()}
        return {by_class.get(name, name): path for name, path in self.options.row_factories.items()}

    def _phases(self) -> None:
        with self._phase("gets"):
            self._seed(SMALL)
            self._send_gets("small")
            self._seed(LARGE)
            self._send_gets("large")
            self._send_repeats(self._routes("GET"))
        with self._phase("missing"):
            self._send_missing()
        with self._phase("bad-input"):
            self._send_bad_inputs()
        with self._phase("edge"):
            # Reads only: they change no data, so the phases below still see it as seeded.
            self._send_edges(*(m for m in self._methods() if m not in WRITE_METHODS))
        with self._phase("page-bound"):
            self._send_page_bounds()
        with self._phase("credentials"):
            self._send_unauthenticated()
        if self.app_level:
            with self._phase("envelope"):
                self._send_envelope_samples()
            with self._phase("preflight"):
                self._send_preflight()
            with self._phase("health"):
                self._send_health()
            # Before the writes change the data (rows deleted, rows created by the app with its
            # own values): the injections' routes answered 2xx on this, the seeded state.
            with self._phase("session-lifecycle"):
                self._check_session_lifecycle()
            with self._phase("synthetic-error"):
                self._send_synthetic_error()
        with self._phase("writes"):
            self._send_writes()
        with self._phase("edge-writes"):
            # After the writes: an odd request that the app accepts creates, changes or deletes a
            # row, which must not take the row the writes' own verdicts (FR205, FR705) work on.
            self._send_edges(*WRITE_METHODS)
        if self.app_level:
            # Last, as an app that does not survive it would fail whatever came after; on the
            # seeded state again, where its route answered 2xx.
            with self._phase("connection-loss"):
                if connection_loss_applies(self):
                    self._seed(LARGE)
                self._check_connection_loss()
        with self._phase("write-repeats"):
            stalled_writes = [r for r in self._routes("POST", "PUT", "PATCH") if self._wants_second_sample(r)]
            if stalled_writes:
                self._seed(LARGE)
                self._send_repeats(stalled_writes)

    # -- setup ------------------------------------------------------------------------------------

    def _redirect_lifespan_state(self) -> None:
        assert self.redirector is not None
        with contextlib.suppress(Exception):
            state = self.runtime.lifespan_state
            for key, value in list(state.items()):
                self.redirector.redirect_object(state, key, value, f"lifespan state[{key!r}]")

    def _track_engines(self) -> None:
        """Count pool checkouts/checkins of every isolated engine (FR103: leaks after shutdown)."""
        from sqlalchemy import event

        assert self.redirector is not None
        for redirected in self.redirector.engines:
            key = id(redirected.sync_engine)
            if key in self._pool_counts:
                continue
            report = EngineReport(where=redirected.where, requested=redirected.requested)
            self._pool_counts[key] = report

            def checkout(*_args: Any, report: EngineReport = report) -> None:
                report.checkouts += 1

            def checkin(*_args: Any, report: EngineReport = report) -> None:
                report.checkins += 1

            event.listen(redirected.sync_engine, "checkout", checkout)
            event.listen(redirected.sync_engine, "checkin", checkin)

    def _own_session(self) -> Any:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert self.plugin_engine is not None
        return AsyncSession(self.plugin_engine, expire_on_commit=False)

    def _class_names(self) -> dict[str, str]:
        """``{table name: ORM class name}`` of the app's mapped classes."""
        class_names: dict[str, str] = {}
        with contextlib.suppress(Exception):
            from sqlalchemy import inspect as sa_inspect

            for cls in self.facts.mapped_classes:
                table: Any = getattr(sa_inspect(cls), "local_table", None)
                if table is not None:
                    class_names[str(table.name)] = cls.__name__
        return class_names

    def _schema_hints(self, metadatas: list[Any]) -> Any:
        """What the app's own schemas demand of the seeded text columns (see ``seeding.schema_hints``)."""
        try:
            models = list(self.facts.own_pydantic_models)
            return schema_hints(models, self._class_names(), sorted_tables(metadatas))
        except Exception:  # noqa: BLE001 - hints only improve the seed; never block the probes
            return {}

    def _plan(self) -> None:
        facts = self.facts
        tables = self.seeder.tables if self.seeder else []
        class_names = self._class_names()
        mapped: list[type] = []
        with contextlib.suppress(Exception):
            mapped = list(facts.mapped_classes)
        self.auth = auth_mod.plan_auth(
            facts.routes, self.options.auth_headers, self._own_session, not_recording, mapped
        )
        self.results.auth_headers_used = bool(self.options.auth_headers)
        self.results.auth_unsupported = dict(self.auth.unsupported)
        for override in self.auth.overrides:
            self.overrides.set(override.call, override.replacement)
        self.builder = RequestBuilder(tables, class_names, self.options.auth_headers)
        for route in self.routes:
            with contextlib.suppress(Exception):
                bound = [b.table.name for b in self.builder.bindings(route) if b.table is not None]
                if bound:
                    self.results.route_tables[route.target] = bound
        for route in facts.routes:
            if auth_mod.rejects_anonymous(route) and (self.auth.overrides or self.auth.headers):
                self.results.auth_overridden.append(route.target)
        session_calls = {
            id(d.call): d.call for route in facts.routes for d in auth_mod.session_dependants(route)
        }
        if session_calls:
            call = next(iter(session_calls.values()))
            self.results.session_dependency = getattr(call, "__qualname__", repr(call))

    def _seed(self, size: int) -> None:
        assert self.seeder is not None and self.builder is not None and self.auth is not None
        if self.seeder.tables and self.plugin_engine is not None:
            self.seed = self.run(self.seeder.seed(self.plugin_engine, size))
        else:
            self.seed = SeedResult(size=size)
        self.builder.seed = self.seed
        from sqlalchemy import inspect as sa_inspect

        for override in self.auth.overrides:
            with contextlib.suppress(Exception):
                table: Any = sa_inspect(override.model).local_table
                key = self.seed.first_pk(table.name)
                self.auth.user_keys[override.model] = key[0] if key and len(key) == 1 else key
        for override in list(self.auth.overrides):
            if override.view is not None:
                self._check_user_view(override)
        self._track_engines()

    def _check_user_view(self, override: auth_mod.UserOverride) -> None:
        """Build the Pydantic user once from the seeded row; an override that cannot is dropped
        (the routes then answer as to an anonymous caller) and the reason kept for the skips."""
        assert self.auth is not None
        key = self.auth.user_keys.get(override.model)

        async def build() -> Any:
            with not_recording():
                async with self._own_session() as session:
                    return await auth_mod.load_user(session, override.model, key, override.view)

        try:
            problem = "" if key is not None and self.run(build()) is not None else "no seeded row"
        except ProbeRunStalled:
            raise
        except Exception as exc:  # noqa: BLE001 - the app's model refused the seeded row
            problem = exception_detail(exc)
        if not problem:
            return
        view = getattr(override.view, "__name__", "?")
        self.auth.overrides.remove(override)
        self.overrides.unset(override.call)
        self.auth.unsupported[override.name] = (
            f"it returns `{view}`, which the plugin could not build from a seeded "
            f"`{override.model.__name__}` row ({problem})"
        )
        self.results.auth_unsupported = dict(self.auth.unsupported)

    # -- sending ----------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        # The app's exceptions are recorded by the wrapper (``errors.py``), and the 500 answer kept.
        app = self.errors.wrap(self.runtime.asgi_app)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url=self.options.base_url, follow_redirects=False)

    async def _send_one(
        self, client: httpx.AsyncClient, request: ProbeRequest, phase: str, target: str
    ) -> Exchange:
        import asyncio

        exchange = Exchange(phase=phase, target=target, request=request)
        kwargs: dict[str, Any] = {"params": request.params or None, "headers": request.headers or None}
        if request.content is not None:
            kwargs["content"] = request.content
        elif request.form is not None:
            kwargs["data"] = request.form
        elif request.json_body is not None:
            kwargs["json"] = request.json_body
        started = time.perf_counter()
        token = _CURRENT_TARGET.set(target)
        self.in_flight = (target, request.shown)
        try:
            with recording() as statements, self.errors.request() as app_errors:
                try:
                    response = await asyncio.wait_for(
                        client.request(request.method, request.path, **kwargs), self.request_timeout
                    )
                except Exception as exc:  # noqa: BLE001 - the app's failure is an observation
                    exchange.error = f"{type(exc).__name__}: {stable_text(str(exc))}"
                except (asyncio.CancelledError, GeneratorExit):
                    raise
                except BaseException as exc:  # noqa: BLE001 - SystemExit & co. raised by the app's code
                    text = stable_text(str(exc))
                    exchange.error = (
                        f"{type(exc).__name__}{': ' + text if text else ''} (a BaseException the app "
                        "raised while handling the request; it would stop a server's worker)"
                    )
                else:
                    exchange.status = response.status_code
                    exchange.headers = _headers(response)
                    exchange.body = response.content
            exchange.statements = list(statements.statements)
            if app_errors:
                exchange.app_error = app_errors[-1][1]
        finally:
            _CURRENT_TARGET.reset(token)
        exchange.seconds = time.perf_counter() - started
        return exchange

    def send(self, requests: list[tuple[ProbeRequest, str, str]], watch_loop: bool = False) -> list[Exchange]:
        """Send ``(request, phase, target)`` in order, on the app loop; record and return them.

        With ``watch_loop``, how long each request held the loop, and the blocking calls it made
        there, are recorded too (FR402, ``blocking.py``).
        """
        if not requests:
            return []
        detector = self._blocking_recorder() if watch_loop else None

        async def go() -> list[Exchange]:
            sent: list[Exchange] = []
            async with self._client() as client:
                if detector is None:
                    for request, phase, target in requests:
                        sent.append(await self._send_one(client, request, phase, target))
                    return sent
                async with LoopWatch() as watch:
                    for request, phase, target in requests:
                        calls_before = len(detector.calls)
                        exchange, lag = await watch.timed(self._send_one(client, request, phase, target))
                        self.results.stalls.setdefault(target, []).append(lag)
                        for call, where in detector.calls[calls_before:]:
                            self.results.blocking_calls.append(BlockingCall(target, call, where))
                        sent.append(exchange)
            return sent

        with detector.watching() if detector is not None else contextlib.nullcontext():
            exchanges: list[Exchange] = self.run(go(), timeout=self.request_timeout * (len(requests) + 2))
        self.results.exchanges.extend(exchanges)
        return exchanges

    def _blocking_recorder(self) -> BlockingCallRecorder:
        if self._blocking is None:
            self._blocking = BlockingCallRecorder.for_run(self)
            if self._blocking.unavailable:
                self.results.notes.append(
                    f"{self._blocking.unavailable}: FR402 relies on loop-stall timing only"
                )
        return self._blocking

    def _wants_second_sample(self, route: RouteFacts) -> bool:
        """Whether one answer of ``route`` would decide a verdict that needs two.

        A stall counts only when it repeats (FR402), and a statement count that grew with the data
        (FR509) is judged on the least of two samples at the large size: a cache filled by one
        request is not a query per row. Every other route keeps its single sample, which could
        not turn into a finding with a second one.
        """
        lags = self.results.stalls.get(route.target, [])
        if len(lags) == 1 and lags[0] >= STALL_THRESHOLD:
            return True
        if route.method != "GET":
            return False
        small = self.results.fewest_statements(route.target, "small")
        large = self.results.fewest_statements(route.target, "large")
        return small is not None and large is not None and large.count - small.count >= N_PLUS_ONE_GROWTH

    def _send_repeats(self, routes: list[RouteFacts]) -> None:
        """A second sample of the valid request of each route that wants one (see above)."""
        assert self.builder is not None
        batch: list[tuple[ProbeRequest, str, str]] = []
        for route in routes:
            if not self._wants_second_sample(route):
                continue
            request = self.builder.happy(route)
            if request is not None:
                batch.append((request, "repeat", route.target))
        self.send(batch, watch_loop=True)

    def large_answers(self, route: RouteFacts) -> list[Exchange]:
        """The route's answers to its valid request at the large data size.

        The app-level probes choose a route to work on among all the app's routes, by these. A
        route of another shard (``probing/shards.py``) was not probed here: its valid request is
        sent now, once, at the same data size, so that the choice is the one a whole run makes.
        """
        answers = self.results.for_target(route.target, "large")
        if answers or self.shard is None or self.shard.holds(route.target) or self.builder is None:
            return answers
        answers = self.results.for_target(route.target, OTHER_SHARD_PHASE)
        if not answers:
            request = self.builder.happy(route)
            answers = self.send([(request, OTHER_SHARD_PHASE, route.target)]) if request else []
        return answers

    def _routes(self, *methods: str) -> list[RouteFacts]:
        """This run's routes (see ``self.routes``) with one of ``methods`` (any when none)."""
        return [route for route in self.routes if not methods or route.method in methods]

    def _send_gets(self, phase: str) -> None:
        assert self.builder is not None
        batch: list[tuple[ProbeRequest, str, str]] = []
        for route in self._routes("GET"):
            request = self.builder.happy(route)
            if request is None:
                continue
            batch.append((request, phase, route.target))
        self.send(batch, watch_loop=phase == "large")

    def _missing(self, route: RouteFacts) -> list[ProbeRequest]:
        """The route's valid request with an id that does not exist (FR211), for the routes that
        read, update or delete one row."""
        assert self.builder is not None
        if route.method not in ("GET", "PATCH", "DELETE"):
            return []
        request = self.builder.missing(route)
        return [request] if request is not None else []

    def _send_missing(self) -> None:
        self.send(
            [
                (request, "missing", route.target)
                for route in self._routes()
                for request in self._missing(route)
            ]
        )

    def _send_bad_inputs(self) -> None:
        assert self.builder is not None
        batch = []
        for route in self._routes():
            for request in self.builder.bad_inputs(route):
                batch.append((request, "bad-input", route.target))
        self.send(batch)

    def _methods(self) -> list[str]:
        """The methods of this run's routes, in the order they first appear."""
        return list(dict.fromkeys(route.method for route in self.routes))

    def _send_edges(self, *methods: str) -> None:
        """FR210's odd but schema-valid requests (``edges.py``) to the routes with ``methods``, at
        most ``fastapi_rules_edge_requests`` per route; DELETEs children before parents, as the
        writes are, so that an odd DELETE the app accepts does not cascade into the next route's row."""
        assert self.builder is not None

        limit = int(getattr(self.options, "edge_requests", DEFAULT_EDGE_REQUESTS))
        if limit <= 0 or not methods:
            return
        batch: list[tuple[ProbeRequest, str, str]] = []
        for method in methods:
            routes = self._routes(method)
            if method == "DELETE":
                routes.sort(key=self._deletion_order)
            for route in routes:
                for request in edge_requests(self.builder, route, limit):
                    batch.append((request, EDGE_PHASE, route.target))
        self.send(batch)

    def _send_page_bounds(self) -> None:
        assert self.builder is not None

        batch = []
        for route in self._routes("GET"):
            request = self.builder.happy(route)
            if request is None:
                continue
            for model_field in self.builder.params(route, "query"):
                name = getattr(model_field, "alias", model_field.name)
                bounds = _bounds(model_field.field_info)
                plain = plain_annotation(model_field.field_info.annotation)
                if not is_subclass(plain, int) or is_subclass(plain, bool):
                    continue
                if "le" in bounds and _is_page_size(name):
                    over = ProbeRequest(
                        **{**request.__dict__, "params": {**request.params, name: bounds["le"] + 1}}
                    )
                    over.description = f"`{name}`={bounds['le'] + 1}, over its bound le={bounds['le']}"
                    batch.append((over, "page-bound", route.target))
                if "ge" in bounds and bounds["ge"] == 0 and _is_offset(name):
                    under = ProbeRequest(**{**request.__dict__, "params": {**request.params, name: -1}})
                    under.description = f"`{name}`=-1, under its bound ge=0"
                    batch.append((under, "page-bound", route.target))
        self.send(batch)

    def _unauthenticated(self, route: RouteFacts) -> list[tuple[ProbeRequest, str]]:
        """``(request, phase)``: the route's valid request without credentials, and with garbage.

        For routes behind a bearer scheme, and routes whose own dependency reads the credentials
        (``auth.credential_reader``); a garbage bearer token only where the ``Authorization``
        header is what is read.
        """
        assert self.builder is not None
        if auth_mod.challenge_schemes(route):
            bearer = True
        else:
            reader = auth_mod.credential_reader(route)
            if reader is None:
                return []
            bearer = reader.authorization
        request = self.builder.happy(route)
        if request is None:
            return []
        bare = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        requests = [
            (
                ProbeRequest(**{**request.__dict__, "headers": bare, "description": "no credentials"}),
                "no-credentials",
            )
        ]
        if bearer:
            garbage = {**bare, "Authorization": f"Bearer {GARBAGE_TOKEN}"}
            requests.append(
                (
                    ProbeRequest(
                        **{**request.__dict__, "headers": garbage, "description": "a garbage bearer token"}
                    ),
                    "garbage-token",
                )
            )
        return requests

    @contextlib.contextmanager
    def _without_auth_overrides(self) -> Iterator[None]:
        """The app's own authentication, not the current-user override, for credential probes."""
        assert self.auth is not None
        for override in self.auth.overrides:
            self.overrides.unset(override.call)
        try:
            yield
        finally:
            for override in self.auth.overrides:
                self.overrides.set(override.call, override.replacement)

    def _send_unauthenticated(self) -> None:
        batch = [
            (request, phase, route.target)
            for route in self._routes()
            for request, phase in self._unauthenticated(route)
        ]
        with self._without_auth_overrides():
            self.send(batch)

    def _send_preflight(self) -> None:
        assert self.builder is not None
        if not self.facts.middleware_named("CORSMiddleware"):
            return
        gets = [r for r in self.facts.routes if r.method == "GET"]
        routes = [r for r in gets if "{" not in r.path] or gets
        if not routes:
            return
        route = routes[0]
        happy = self.builder.happy(route)
        request = ProbeRequest(
            method="OPTIONS",
            path=happy.path if happy is not None else route.path,
            headers={"Origin": UNLISTED_ORIGIN, "Access-Control-Request-Method": "GET"},
            description=f"a CORS preflight from {UNLISTED_ORIGIN}",
            template=route.path,
        )
        self.send([(request, "preflight", "app")])

    def _send_envelope_samples(self) -> None:
        """FR106's samples when the run is split: the answers the whole run would have had.

        FR106 takes the first 404 to a missing id, 422 to bad input and 401 without credentials,
        routes in the app's order. A shard holds only some routes: for each of the three, the
        requests of the other routes that come before the first such answer are sent here too, so
        the samples, and the verdict, are those of a run on one worker. A walk covers one phase:
        an app that never answers 401 costs the other shard's no-credentials requests, not every
        negative request it has.
        """
        if self.shard is None:
            return
        requests_of = dict(self._negative_requests())
        for phase, status in ENVELOPE_SAMPLES:
            requests = requests_of[phase]
            for route in self.facts.routes:
                if self.shard.holds(route.target):
                    answers = self.results.for_target(route.target, phase)
                else:
                    batch = [(r, phase, route.target) for r in requests(route)]
                    with (
                        self._without_auth_overrides()
                        if phase == "no-credentials"
                        else contextlib.nullcontext()
                    ):
                        answers = self.send(batch)
                if any(exchange.status == status for exchange in answers):
                    break

    def _negative_requests(self) -> list[tuple[str, Callable[[RouteFacts], list[ProbeRequest]]]]:
        """The negative requests FR106 samples, by phase (see :data:`ENVELOPE_SAMPLES`)."""
        assert self.builder is not None
        return [
            ("missing", self._missing),
            ("bad-input", self.builder.bad_inputs),
            (
                "no-credentials",
                lambda route: [r for r, phase in self._unauthenticated(route) if phase == "no-credentials"],
            ),
        ]

    def _send_health(self) -> None:
        batch = []
        for path in (self.options.health_path, self.options.readiness_path):
            if any(route.path == path and route.method == "GET" for route in self.facts.routes):
                batch.append(
                    (
                        ProbeRequest(method="GET", path=path, headers=dict(self.options.auth_headers)),
                        "health",
                        f"GET {path}",
                    )
                )
        self.send(batch)

    def _send_writes(self) -> None:
        """The writes, in one batch per method; one carrying a password alone, between snapshots
        of the password columns (FR705). The loop is watched (FR402), except for DELETE: a deleted row
        cannot be deleted again, so a DELETE never has the second sample a stall finding needs."""
        assert self.builder is not None
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            routes = self._routes(method)
            if method == "DELETE":
                routes.sort(key=self._deletion_order)
            batch: list[tuple[ProbeRequest, str, str]] = []
            for route in routes:
                whole = method == "DELETE" and route.path.rstrip("/").endswith("}")
                request = self.builder.happy(route, pick="last" if whole else "first")
                if request is None:
                    continue
                if not request.password:
                    batch.append((request, "write", route.target))
                    continue
                self.send(batch, watch_loop=method != "DELETE")
                batch = []
                with self._phase("password-scan"):
                    before = self._password_snapshot()
                (exchange,) = self.send([(request, "write", route.target)], watch_loop=True)
                with self._phase("password-scan"):
                    self._check_password(route, exchange, request.password, before)
            self.send(batch, watch_loop=method != "DELETE")

    def _deletion_order(self, route: RouteFacts) -> int:
        """Children before parents: deleting a user first would cascade to the post DELETE wants."""
        assert self.builder is not None
        tables = self.builder.tables
        bindings = self.builder.bindings(route)
        table = bindings[-1].table if bindings else None
        return -tables.index(table) if table is not None and table in tables else 0

    # -- FR705 --------------------------------------------------------------------------------------

    def _password_columns(self) -> list[tuple[Any, Any]]:
        """The columns a plaintext password could be stored in: those that hold text.

        A column typed otherwise (a UUID, a number, an app's ``TypeDecorator`` that converts its
        values) cannot hold the password as given, and binding the password to it would make its
        type raise; such columns are left out, and the scan compares text with text only.
        """
        from sqlalchemy import String

        return [
            (table, column)
            for table in self._scanned_tables()
            for column in table.columns
            if isinstance(column_type(column), String) and holds_plain_text(column.type)
        ]

    def _scanned_tables(self) -> list[Any]:
        """The tables that exist on the probe database (a broken one may not)."""
        return self.seeder.usable_tables if self.seeder else []

    def _password_snapshot(self) -> dict[str, set[Any]]:
        """Primary keys per table, to tell the rows a create call adds."""
        from sqlalchemy import select

        async def snap() -> dict[str, set[Any]]:
            assert self.plugin_engine is not None
            keys: dict[str, set[Any]] = {}
            async with self.plugin_engine.connect() as connection:
                for table in self._scanned_tables():
                    columns = list(table.primary_key.columns)
                    if columns:
                        keys[table.name] = {tuple(row) for row in await connection.execute(select(*columns))}
            return keys

        return dict(self.run(snap()))

    def _check_password(
        self, route: RouteFacts, exchange: Exchange, plain: str, before: dict[str, set[Any]] | None
    ) -> None:
        from sqlalchemy import Text, select, type_coerce

        check = PasswordCheck(target=route.target)
        self.results.password_checks.append(check)
        if not exchange.ok:
            check.skipped = f"the call {exchange.outcome}, so nothing was stored"
            return

        async def inspect_db() -> None:
            assert self.plugin_engine is not None
            async with self.plugin_engine.connect() as connection:
                for table, column in self._password_columns():
                    # Compared as text, so the password is never bound through the column's type.
                    as_text = type_coerce(column, Text)
                    hits = await connection.execute(
                        select(as_text).where(as_text.contains(plain, autoescape=True)).limit(1)
                    )
                    if hits.first() is not None:
                        check.plain_found_in.append(f"{table.name}.{column.name}")
                for table in self._scanned_tables():
                    secret_columns = [c for c in table.columns if _looks_like_password_column(c.name)]
                    keys = list(table.primary_key.columns)
                    if not secret_columns or not keys:
                        continue
                    rows = await connection.execute(select(*keys, *secret_columns))
                    old = (before or {}).get(table.name, set())
                    for row in rows:
                        key = tuple(row[: len(keys)])
                        if key in old:
                            continue
                        for column, value in zip(secret_columns, row[len(keys) :], strict=False):
                            check.stored.append(
                                (f"{table.name}.{column.name}", str(value) if value is not None else "")
                            )

        self.run(inspect_db())

    # -- FR306 --------------------------------------------------------------------------------------

    def _check_session_lifecycle(self) -> None:
        check_session_lifecycle(self)

    # -- FR105 / FR803 ------------------------------------------------------------------------------

    def _send_synthetic_error(self) -> None:
        send_synthetic_error(self)

    # -- FR511 --------------------------------------------------------------------------------------

    def _check_connection_loss(self) -> None:
        check_connection_loss(self)

    # -- FR203 --------------------------------------------------------------------------------------

    def _patch_serialization(self) -> None:
        """Watch what endpoints without a response model hand to FastAPI (mapped instances?)."""
        import fastapi.routing

        original = getattr(fastapi.routing, "serialize_response", None)
        if original is None:
            return
        orm_returns = self.results.orm_returns

        async def serialize_response(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("field") is None:
                content = kwargs.get("response_content")
                names = _mapped_names(content)
                target = _CURRENT_TARGET.get()
                if names and target:
                    orm_returns.setdefault(target, [])
                    for name in names:
                        if name not in orm_returns[target]:
                            orm_returns[target].append(name)
            return await original(*args, **kwargs)

        serialize_response.__wrapped__ = original  # type: ignore[attr-defined]
        fastapi.routing.serialize_response = serialize_response
        self._serialize_patch = (fastapi.routing, original)

    # -- shutdown and cleanup -----------------------------------------------------------------------

    def _shutdown(self) -> None:
        started = time.perf_counter()
        error = self.runtime.stop()
        self.results.shutdown_seconds = time.perf_counter() - started
        self.results.shutdown_error = error
        self.results.engines = [report for report in self._pool_counts.values() if report.used]
        if self.redirector is not None:
            disposed = {id(r.sync_engine): r.disposed for r in self.redirector.engines}
            for key, report in self._pool_counts.items():
                report.disposed = disposed.get(key, False)

    def _cleanup(self) -> None:
        failures: list[str] = []
        if self.runtime.started:
            with contextlib.suppress(Exception):
                self.runtime.stop()
        self.overrides.restore()
        if self._serialize_patch is not None:
            module, original = self._serialize_patch
            module.serialize_response = original
        if self.redirector is not None:
            failures.extend(self.redirector.restore())
        self.monitor.remove()

        async def dispose() -> None:
            if self.redirector is not None:
                # After a stall the engines' connections belong to the abandoned loop: let go of
                # them without closing (closing would wait on that loop).
                await self.redirector.dispose_all(close=self.results.stall is None)
            if self.plugin_engine is not None:
                await self.plugin_engine.dispose()
            if self.database is not None:
                await self.database.drop()

        try:
            self.run(dispose(), timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported; atexit retries the drop
            failures.append(f"cleanup: {type(exc).__name__}: {exc}")
        else:
            if self.database is not None:
                forget(self.database)
        self.results.restore_failures = failures


# -- helpers ---------------------------------------------------------------------------------------

import contextvars  # noqa: E402

_CURRENT_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pytest_fastapi_rules_target", default=None
)


def _mapped_names(content: Any) -> list[str]:
    """Names of the SQLAlchemy-mapped classes of ``content`` (an instance or a list of them)."""
    items: list[Any] = []
    if isinstance(content, list | tuple | set):
        items = list(content)[:20]
    elif isinstance(content, dict):
        items = list(content.values())[:20]
    else:
        items = [content]
    names = []
    for item in items:
        if hasattr(type(item), "__mapper__") and hasattr(item, "_sa_instance_state"):
            name = type(item).__name__
            if name not in names:
                names.append(name)
    return names


def _bounds(field_info: Any) -> dict[str, int]:
    bounds: dict[str, int] = {}
    for item in getattr(field_info, "metadata", []) or []:
        for attr in ("ge", "le", "gt", "lt"):
            value = getattr(item, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                if attr == "lt":
                    bounds["le"] = value - 1
                elif attr == "gt":
                    bounds["ge"] = value + 1
                else:
                    bounds[attr] = value
    return bounds


_PAGE_SIZE_NAMES = {
    "limit",
    "size",
    "page_size",
    "pagesize",
    "per_page",
    "perpage",
    "page-size",
    "per-page",
    "count",
    "take",
    "first",
    "max_results",
}
_OFFSET_NAMES = {"offset", "skip", "start", "from"}


def _is_page_size(name: str) -> bool:
    return name.lower() in _PAGE_SIZE_NAMES


def _is_offset(name: str) -> bool:
    return name.lower() in _OFFSET_NAMES


def _looks_like_password_column(name: str) -> bool:
    lowered = name.lower()
    return "password" in lowered or lowered in {"passwd", "pwd", "password_hash", "pass_hash"}


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _is_async(call: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(call)


__all__ = ["ProbeResults", "ProbeRun", "ProbeSetupError", "probe_results", "secrets"]
