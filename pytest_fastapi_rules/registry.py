"""The rule registry: every check is one declaration plus one function.

A rule is declared with :func:`rule` on the function that checks it. The decorator records the
public metadata (code, name, severity, rationale, fix) that the README table, ``--fastapi-rules-list``,
the reports and the failure text are all built from, so adding a rule touches one place.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions


class Severity(enum.Enum):
    """How much a finding matters: errors fail the run, warnings only under ``--fastapi-rules-strict``."""

    ERROR = "error"
    WARNING = "warning"

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"unknown severity {text!r}: use 'error' or 'warning'") from None


class Scope(enum.Enum):
    """Whether a rule yields one item for the whole app or one item per matching route."""

    APP = "app"
    ROUTE = "route"


class Basis(enum.Enum):
    """Where a rule takes its facts from (RULES.md's *basis* column)."""

    APP = "app"
    PROBE = "probe"
    SOURCE = "source"
    PROJECT = "project"
    #: An app rule with a runtime half (``rule(runtime=...)``).
    APP_PROBE = "app+probe"
    APP_SOURCE = "app+source"


@dataclass(frozen=True)
class Location:
    """A place in the user's code that a finding points at."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True)
class Finding:
    """One violation of a rule: what is wrong, where, and (optionally) a more specific fix."""

    message: str
    target: str | None = None
    location: Location | None = None
    fix: str | None = None
    #: A finding may be milder than its rule (e.g. FR504's ``autoflush`` half is a warning).
    severity: Severity | None = None


@dataclass
class CheckContext:
    """What a rule function receives: the app's facts, the options, and the route for route rules."""

    facts: AppFacts
    options: RulesOptions
    route: RouteFacts | None = None

    @property
    def the_route(self) -> RouteFacts:
        """The route under check; only valid for route-scoped rules."""
        assert self.route is not None, "the_route is only set for route-scoped rules"
        return self.route


class RuleSkipped(Exception):
    """Raised by a rule function when the rule does not apply to this app (reported as a skip)."""


class UserSetupError(Exception):
    """The user's configuration prevents the check (e.g. an unresolvable engine path)."""


#: The name of the collector of every item: the first part of every item's node id.
COLLECTOR_NAME = "fastapi-rules"


CheckFunction = Callable[[CheckContext], Iterable[Finding]]
RoutePredicate = Callable[["RouteFacts", "RulesOptions"], bool]
BackgroundStart = Callable[["AppFacts", "RulesOptions"], None]


@dataclass(frozen=True)
class Rule:
    """The public declaration of one check (see RULES.md)."""

    code: str
    name: str
    severity: Severity
    scope: Scope
    basis: Basis
    section: str
    summary: str
    rationale: str
    fix: str
    check: CheckFunction = field(repr=False, compare=False)
    #: For route rules: which routes get an item. Routes that do not match get none.
    applies_to: RoutePredicate | None = field(default=None, repr=False, compare=False)
    #: Whether the app's lifespan must be running (e.g. engines created at startup).
    needs_running_app: bool = False
    #: Starts slow work the check will wait for (a child process running the app in production
    #: mode) in the background, before the probe run, so the two overlap. Called at most once per
    #: process, before the first item that reads the probes; its failures are left to the check.
    background: BackgroundStart | None = field(default=None, repr=False, compare=False)
    #: Short bad/good examples for ``--fastapi-rules-explain``.
    bad_example: str = ""
    good_example: str = ""
    #: The probe run's phases whose observations the check reads: a phase that crashes errors the
    #: items of these rules, with its traceback, and no other (``probing.runner``).
    phases: tuple[str, ...] = ()
    #: Whether the rule always reads the probe run and so may be the item that reports a probe
    #: setup failure: of these, the first collected one (in code order) reports it, once.
    reports_setup_failure: bool = False
    #: Whether its verdict on a route depends on the data the route reads or writes: its items skip
    #: a route that needs a table the probes could not create or seed.
    needs_route_data: bool = False
    #: Whether it judges a route by the requests built for it: a route whose probe requests the
    #: plugin could not build errors this rule's item for that route.
    judges_built_requests: bool = False

    @property
    def family(self) -> str:
        """The rule family marker, e.g. ``FR2xx`` for ``FR201``."""
        return f"{self.code[:3]}xx"

    @property
    def uses_probes(self) -> bool:
        """Whether the check reads the probe run (a probe rule, or an app rule with a runtime half)."""
        return self.basis in (Basis.PROBE, Basis.APP_PROBE)

    @property
    def runs_with_probes(self) -> bool:
        """Whether the item belongs with the probe items: it reads the probes, or it waits for
        background work that is started when the probe run starts (on the same xdist worker)."""
        return self.uses_probes or self.background is not None

    def with_severity(self, severity: Severity) -> Rule:
        return replace(self, severity=severity)


_CODE = re.compile(r"^FR[1-9]\d\d$")
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_REGISTRY: dict[str, Rule] = {}


def rule(
    *,
    code: str,
    name: str,
    severity: Severity,
    scope: Scope,
    basis: Basis,
    section: str,
    summary: str,
    rationale: str,
    fix: str,
    applies_to: RoutePredicate | None = None,
    needs_running_app: bool = False,
    background: BackgroundStart | None = None,
    bad_example: str = "",
    good_example: str = "",
    runtime: CheckFunction | None = None,
    overruled_by: Overrule | None = None,
    unavailable: tuple[type[BaseException], ...] = (),
    phases: tuple[str, ...] = (),
    reports_setup_failure: bool = False,
    needs_route_data: bool = False,
    judges_built_requests: bool = False,
) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as the check of rule ``code``.

    ``runtime`` gives an app rule a runtime half (RULES.md's *app+probe* rules, declared with
    ``basis=Basis.APP_PROBE``): see :func:`_with_runtime_half` for how the halves combine, with
    ``overruled_by`` and ``unavailable``. ``phases``, ``reports_setup_failure``,
    ``needs_route_data`` and ``judges_built_requests`` are what the probe run needs to know of a
    rule that reads it (see :class:`Rule`).
    """
    if not _CODE.match(code):
        raise ValueError(f"rule code {code!r} must look like FR201")
    if not _NAME.match(name):
        raise ValueError(f"rule name {name!r} must be kebab-case")
    if scope is Scope.APP and applies_to is not None:
        raise ValueError(f"{code}: applies_to only makes sense for route rules")
    if runtime is not None and basis is not Basis.APP_PROBE:
        raise ValueError(f"{code}: a rule with a runtime half is declared with basis=Basis.APP_PROBE")
    if runtime is None and (overruled_by is not None or unavailable):
        raise ValueError(f"{code}: overruled_by and unavailable only apply to a runtime half")
    reads_probes = basis in (Basis.PROBE, Basis.APP_PROBE)
    if not reads_probes and (phases or reports_setup_failure or needs_route_data or judges_built_requests):
        raise ValueError(f"{code}: only a rule that reads the probes declares what the probe run feeds it")

    def register(declared_check: CheckFunction) -> CheckFunction:
        check = declared_check
        if runtime is not None:
            check = _with_runtime_half(declared_check, runtime, unavailable, overruled_by)
        existing = _REGISTRY.get(code)
        reloaded = existing is not None and _same_function(existing.check, check)
        if existing is not None and not reloaded:
            raise ValueError(f"rule code {code} registered twice")
        if any(other.name == name and other.code != code for other in _REGISTRY.values()):
            raise ValueError(f"rule name {name} registered twice")
        _REGISTRY[code] = Rule(
            code=code,
            name=name,
            severity=severity,
            scope=scope,
            basis=basis,
            section=section,
            summary=summary,
            rationale=rationale,
            fix=fix,
            check=check,
            applies_to=applies_to,
            needs_running_app=needs_running_app,
            background=background,
            bad_example=bad_example,
            good_example=good_example,
            phases=phases,
            reports_setup_failure=reports_setup_failure,
            needs_route_data=needs_route_data,
            judges_built_requests=judges_built_requests,
        )
        return declared_check

    return register


#: What the app's behaviour says of the static half's findings: why they do not hold (the probes
#: saw the app do what the rule is for another way), or None when behaviour cannot tell.
Overrule = Callable[[CheckContext], str | None]


def _with_runtime_half(
    static: CheckFunction,
    runtime: CheckFunction,
    unavailable: tuple[type[BaseException], ...],
    overruled_by: Overrule | None,
) -> CheckFunction:
    """The check of an app rule with a runtime half (RULES.md's *app+probe* rules).

    The static half runs first; when it finds something, that is the finding (the declaration
    already shows the problem, and one mistake should give one finding), unless ``overruled_by``
    gives a reason the app's behaviour shows otherwise: then the item is skipped with that reason
    (the rule's letter is not met, its purpose is). When the static half finds nothing the runtime
    half runs, and adds nothing when it does not apply (``RuleSkipped``) or when the probes cannot
    run (``unavailable``): the static verdict stands on its own.
    """
    quiet: tuple[type[BaseException], ...] = (RuleSkipped, *unavailable)

    def combined(context: CheckContext) -> list[Finding]:
        findings = list(static(context))
        if findings:
            reason = _overruling(overruled_by, context)
            if reason is not None:
                raise RuleSkipped(reason)
            return findings
        try:
            findings.extend(runtime(context))
        except quiet:
            return findings
        return findings

    for attribute in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(combined, attribute, getattr(static, attribute, None))
    return combined


def _overruling(overruled_by: Overrule | None, context: CheckContext) -> str | None:
    """The behaviour's reason against the static findings; None when there is none or the probes
    could not tell (they could not run, or were skipped): the static findings then stand."""
    if overruled_by is None:
        return None
    try:
        return overruled_by(context)
    except Exception:  # noqa: BLE001 - no behaviour to go by is no reason to drop a finding
        return None


def _same_function(first: CheckFunction, second: CheckFunction) -> bool:
    """Whether ``second`` is ``first`` imported again (a module reload), not a second rule."""
    return (getattr(first, "__module__", None), getattr(first, "__qualname__", None)) == (
        getattr(second, "__module__", None),
        getattr(second, "__qualname__", None),
    )


def all_rules() -> list[Rule]:
    """Every rule registered, sorted by code. The rule modules register themselves when imported:
    the plugin, the items and the reports read the rules from ``catalog``, which imports them."""
    return [_REGISTRY[code] for code in sorted(_REGISTRY)]


def get_rule(code: str) -> Rule:
    return _REGISTRY[code]


def phase_rules() -> dict[str, tuple[str, ...]]:
    """The rules each probe phase feeds, by phase name, in code order (the rules' ``phases``)."""
    fed: dict[str, list[str]] = {}
    for declared in all_rules():
        for phase in declared.phases:
            fed.setdefault(phase, []).append(declared.code)
    return {phase: tuple(codes) for phase, codes in fed.items()}


def route_request_rules() -> tuple[str, ...]:
    """The rules that judge a route by the requests built for it, in code order."""
    return tuple(declared.code for declared in all_rules() if declared.judges_built_requests)


def setup_reporters() -> tuple[str, ...]:
    """The rules that may report a probe setup failure, in collection order (code order)."""
    return tuple(declared.code for declared in all_rules() if declared.reports_setup_failure)


def run_check(rule_: Rule, context: CheckContext) -> list[Finding]:
    """Run a rule's check and materialise its findings."""
    return list(rule_.check(context))
