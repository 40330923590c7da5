"""What one probe run observed: plain data that every probe rule reads (computed once per session)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pytest_fastapi_rules.probing.counting import Escape, Statement
from pytest_fastapi_rules.probing.errors import stable_text
from pytest_fastapi_rules.probing.requests import ProbeRequest

#: FR509: statements a GET request must add with three times the rows to look like one query per
#: row (a real N+1 adds one per extra parent, six here; one more is a cache effect).
N_PLUS_ONE_GROWTH = 2


@dataclass
class Exchange:
    """One request the probes sent and what came back."""

    phase: str
    target: str
    request: ProbeRequest
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: The exception the app raised instead of answering (with raise_app_exceptions off: none).
    error: str | None = None
    #: The app's own exception behind a 5xx answer: ``TypeError: ... at app/api/tasks.py:47``
    #: (caught as it left the app, or from a log record that carried it).
    app_error: str | None = None
    statements: list[Statement] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.statements)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def server_error(self) -> bool:
        return self.error is not None or (self.status is not None and self.status >= 500)

    @property
    def measurable(self) -> bool:
        """Whether the app answered without a server error, so its statement count means something."""
        return self.status is not None and not self.server_error

    @property
    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_json(self) -> bool:
        return "json" in self.headers.get("content-type", "") and self.json is not None

    @property
    def outcome(self) -> str:
        """``answered 404``; a 5xx names the app's exception: ``answered 500 (TypeError: ... at f.py:4)``."""
        if self.error is not None:
            return f"raised {self.error}"
        if self.app_error and self.status is not None and self.status >= 500:
            return f"answered {self.status} ({self.app_error})"
        return f"answered {self.status}"

    def body_excerpt(self, limit: int = 160) -> str:
        text = stable_text(self.body.decode("utf-8", errors="replace").strip().replace("\n", " "))
        return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class EngineReport:
    """An isolated engine the app used during the probes, and how shutdown left it (FR103)."""

    where: str
    requested: str
    checkouts: int = 0
    checkins: int = 0
    disposed: bool = False

    @property
    def used(self) -> bool:
        return self.checkouts > 0

    @property
    def checked_out(self) -> int:
        return max(self.checkouts - self.checkins, 0)


@dataclass
class SessionCheck:
    """FR306: what the session dependency did on success and when the request failed."""

    route: str
    dependency: str
    committed_on_success: bool | None = None
    rolled_back_on_error: bool | None = None
    leaked_on_success: int = 0
    leaked_on_error: int = 0
    skipped: str | None = None
    detail: str = ""


@dataclass
class PasswordCheck:
    """FR705: after a create call carrying a password, where the password ended up."""

    target: str
    plain_found_in: list[str] = field(default_factory=list)
    stored: list[tuple[str, str]] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class BlockingCall:
    """FR402: a blocking call made on the event loop thread while a request was served."""

    target: str
    call: str
    where: str


@dataclass
class LogRecordSeen:
    """FR803: a log event emitted while the synthetic error was handled."""

    level: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    has_exception: bool = False


@dataclass
class PhaseFailure:
    """A phase of the probe run that crashed: the plugin's own error, charged to its rules only."""

    phase: str
    #: The rules whose verdicts read that phase.
    codes: tuple[str, ...]
    #: What crashed, for messages: "the probe phase 'health'", "building the requests of GET /x".
    #: ``ExceptionType: message`` in one line.
    summary: str
    traceback: str
    what: str = ""

    def __post_init__(self) -> None:
        if not self.what:
            self.what = f"the probe phase {self.phase!r}"


@dataclass
class LoopStall:
    """A request during which the app blocked the event loop past the request timeout: the probe
    run stopped there (the app's lifespan and engines lived on the blocked loop)."""

    target: str
    request: str
    seconds: float
    #: ``file:line in function`` of the loop thread's innermost frame: the blocking call.
    where: str
    stack: str = ""


class ProbePhaseError(Exception):
    """A rule's verdict needs a phase of the probe run that crashed (the plugin's own bug).

    Raised by the rule's item; reported as an internal error of the plugin, with the phase's
    traceback shown once, never as a finding about the app.
    """

    def __init__(self, failure: PhaseFailure) -> None:
        super().__init__(f"{failure.what} crashed: {failure.summary}")
        self.failure = failure


@dataclass
class ProbeResults:
    """Everything the probe run observed."""

    database: str = ""
    #: Where the probe database lives and why (``placement.DatabaseChoice.described``).
    database_choice: str = ""
    #: Why the probes run on SQLite although the app uses another database (None: they do not).
    database_fallback: str | None = None
    #: ``{table name: why}``: tables the probes could not create or seed (``seeding.Seeder.broken``).
    broken_tables: dict[str, str] = field(default_factory=dict)
    #: ``{target: table names}``: the tables each route's path parameters are bound to.
    route_tables: dict[str, list[str]] = field(default_factory=dict)
    #: Phases that crashed, by name (``registry.phase_rules`` says which rules each one feeds).
    phase_failures: dict[str, PhaseFailure] = field(default_factory=dict)
    #: ``{target: failure}``: routes whose requests the plugin could not build (its own bug).
    request_failures: dict[str, PhaseFailure] = field(default_factory=dict)
    #: The request that blocked the event loop and stopped the run, if one did.
    stall: LoopStall | None = None
    #: ``{target: why}``: routes whose requests the app's own code kept from being built (a
    #: validator that never finishes on a generated body).
    requests_given_up: dict[str, str] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    startup_seconds: float = 0.0
    shutdown_seconds: float | None = None
    shutdown_error: str | None = None
    engines: list[EngineReport] = field(default_factory=list)
    escapes: list[Escape] = field(default_factory=list)
    restore_failures: list[str] = field(default_factory=list)
    has_orm: bool = False
    seeded_by_hook: bool = False
    #: Routes probed with the current-user override / configured headers / not authenticated.
    auth_overridden: list[str] = field(default_factory=list)
    auth_unsupported: dict[str, str] = field(default_factory=dict)
    auth_headers_used: bool = False
    #: Targets whose endpoint handed a mapped instance to FastAPI without a response model (FR203).
    orm_returns: dict[str, list[str]] = field(default_factory=dict)
    session_checks: list[SessionCheck] = field(default_factory=list)
    session_dependency: str | None = None
    password_checks: list[PasswordCheck] = field(default_factory=list)
    synthetic: Exchange | None = None
    synthetic_marker: str = ""
    synthetic_logs: list[LogRecordSeen] = field(default_factory=list)
    synthetic_skipped: str | None = None
    #: Whether the synthetic request reached the dependency that raises (a middleware may answer
    #: before it: then the answer says nothing about the app's handling of the exception).
    synthetic_raised: bool = False
    blocking_calls: list[BlockingCall] = field(default_factory=list)
    #: Loop stalls (seconds) per target of the requests sent with the loop watched, GC time removed.
    stalls: dict[str, list[float]] = field(default_factory=dict)
    connection_loss: tuple[Exchange, Exchange] | None = None
    connection_loss_skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    _by_target: dict[str, list[Exchange]] = field(default_factory=dict, repr=False, compare=False)
    _indexed: int = field(default=0, repr=False, compare=False)

    def for_target(self, target: str, phase: str | tuple[str, ...] | None = None) -> list[Exchange]:
        """The exchanges sent to ``target`` (in ``phase``, or one of several), in the order sent.

        Every route's items ask this, so the exchanges are indexed by target (extended as the run
        appends more) instead of scanned per route, which was quadratic in the number of routes.
        """
        if self._indexed != len(self.exchanges):
            if self._indexed > len(self.exchanges):
                self._by_target, self._indexed = {}, 0
            for exchange in self.exchanges[self._indexed :]:
                self._by_target.setdefault(exchange.target, []).append(exchange)
            self._indexed = len(self.exchanges)
        sent = self._by_target.get(target, [])
        if phase is None:
            return list(sent)
        phases = (phase,) if isinstance(phase, str) else phase
        return [e for e in sent if e.phase in phases]

    def fewest_statements(self, target: str, phase: str | tuple[str, ...]) -> Exchange | None:
        """The answer of ``target`` in ``phase`` that ran the fewest SQL statements, among those
        whose count means something (:attr:`Exchange.measurable`); FR509 compares these, and the
        probe run asks the same question to decide whether a route needs a second sample."""
        measurable = [exchange for exchange in self.for_target(target, phase) if exchange.measurable]
        return min(measurable, key=lambda exchange: exchange.count, default=None)

    def in_phase(self, phase: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.phase == phase]

    def failed_phase(self, code: str, target: str | None = None) -> PhaseFailure | None:
        """The first crashed phase that feeds rule ``code``, or the failure to build the requests
        of ``target`` when the rule judges that route by them; None when neither happened."""
        for failure in self.phase_failures.values():
            if code in failure.codes:
                return failure
        route_failure = self.request_failures.get(target) if target is not None else None
        return route_failure if route_failure is not None and code in route_failure.codes else None

    def broken_table_of(self, target: str) -> tuple[str, str] | None:
        """``(table, why)`` of a broken table the route needs, or None.

        A route needs a table its path parameters are bound to, a table its requests ran SQL on, or
        a table the app's error for it names (``no such table: x``, ``relation "x" does not exist``).
        """
        if not self.broken_tables:
            return None
        needed = list(self.route_tables.get(target, ()))
        for exchange in self.for_target(target):
            for statement in exchange.statements:
                needed.extend(statement.tables)
            error = f"{exchange.app_error or ''} {exchange.error or ''}"
            for table in self.broken_tables:
                if f"table: {table}" in error or f'"{table}"' in error or f"'{table}'" in error:
                    needed.append(table)
        for table in needed:
            if table in self.broken_tables:
                return table, self.broken_tables[table]
        return None
