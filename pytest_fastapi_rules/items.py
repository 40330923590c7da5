"""The pytest items: one per app-level rule, one per (rule, route) for route rules.

The items do not come from a file. A :class:`RulesCollector` is appended to the session's own
collection result (see ``plugin.pytest_make_collect_report``), so it goes through pytest's normal
collection: ``-k``, ``-m``, ``--lf``, ``--co``, ``--deselect`` and xdist all see ordinary items,
and a failure to load the app is reported as an ordinary collection error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import traceback
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ExceptionInfo, TerminalRepr

from pytest_fastapi_rules.baseline import fingerprint
from pytest_fastapi_rules.catalog import all_rules
from pytest_fastapi_rules.discovery import DiscoveryError, runtime_facts
from pytest_fastapi_rules.facts import AppFacts, RouteFacts
from pytest_fastapi_rules.loading import AppLoadError
from pytest_fastapi_rules.noqa import directive_for
from pytest_fastapi_rules.options import RulesOptions
from pytest_fastapi_rules.probing.placement import ProbeDatabaseError
from pytest_fastapi_rules.probing.results import ProbePhaseError
from pytest_fastapi_rules.probing.runner import probe_results
from pytest_fastapi_rules.probing.shards import Shard, shard_index
from pytest_fastapi_rules.production.launcher import wait_unfinished
from pytest_fastapi_rules.registry import (
    CheckContext,
    Finding,
    Rule,
    RuleSkipped,
    Scope,
    Severity,
    UserSetupError,
    run_check,
)
from pytest_fastapi_rules.reporting import PROBE_DATABASE_KEY, finding_to_dict
from pytest_fastapi_rules.runtime import AppStartupError
from pytest_fastapi_rules.session import SESSION_KEY, RulesSession

RULEBOOK = "fastapi-rules-ru.md"


class RuleViolation(Exception):
    """Raised by an item whose rule found violations that fail the run."""


class PluginInternalError(Exception):
    """A rule function crashed: a bug in the plugin, never reported as the app's failure."""

    def __init__(self, rule: Rule, original: BaseException) -> None:
        super().__init__(f"{rule.code} crashed: {original!r}")
        self.rule = rule
        self.original = original


def _import_probing_modules() -> None:
    """Import, now, the modules the probe run imports on first use.

    pytest rewrites the modules of its plugins as they are imported (``ast.parse`` in this thread).
    Seen once in CI, done while the plugin's loop thread ran the app: CPython 3.11's ``ast`` module
    raised "AST constructor recursion depth mismatch". Before the app starts, nothing else runs.
    """
    import importlib

    for name in (
        "pytest_fastapi_rules.probing.runner",
        "pytest_fastapi_rules.probing.lifecycle",
        "pytest_fastapi_rules.probing.blocking",
        "pytest_fastapi_rules.probing.isolation",
        "pytest_fastapi_rules.probing.shards",
        "pytest_fastapi_rules.production.facts",
        "pytest_fastapi_rules.production.launcher",
    ):
        importlib.import_module(name)


class SettingError(Exception):
    """A setting names something of the app that does not exist; the message names the key."""


def _check_named_modules(options: RulesOptions) -> None:
    """The modules named by ``fastapi_rules_engines``/``_session_factories`` import, once the app
    did (their attributes may appear only at startup, and are checked then)."""
    import importlib

    for key, paths in (
        ("fastapi_rules_engines", options.engine_paths),
        ("fastapi_rules_session_factories", options.session_factory_paths),
    ):
        for path in paths:
            module_name = path.partition(":")[0]
            try:
                importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - reported as the setting's problem
                raise SettingError(
                    f"{key} = {path}: the module {module_name!r} cannot be imported "
                    f"({type(exc).__name__}: {exc}). Name an object of the app's own code as "
                    "module:attribute, e.g. src.database:engine, or remove the line."
                ) from None


#: What :meth:`RuleItem.prepare_shared_work` has done in this session (``RulesSession.shared_work_done``),
#: beside the probe shards it ran (a :class:`Shard`, or None for the whole run).
_FACTS_LOADED = "the app imported and its facts gathered"
_RUNTIME_FACTS_FOUND = "the engines and session factories found while the app runs"


class RulesCollector(pytest.Collector):
    """Collects the rule items of the app named by ``--fastapi-app``."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        state = self.config.stash[SESSION_KEY]
        facts = state.facts()
        options = state.options
        _check_named_modules(options)
        _import_probing_modules()
        for base_rule in all_rules():
            if not options.rule_is_selected(base_rule.code):
                continue
            rule = options.effective_rule(base_rule)
            if rule.scope is Scope.APP:
                yield self._item(rule.code, rule=rule, route=None)
                continue
            try:
                routes = [
                    route
                    for route in facts.routes
                    if rule.applies_to is None or rule.applies_to(route, options)
                ]
            except Exception as exc:  # noqa: BLE001 - a broken predicate is the plugin's bug: one error item
                yield self._item(f"{rule.code}[routes]", rule=rule, route=None, internal_error=exc)
                continue
            if not routes:
                yield self._item(
                    f"{rule.code}[no matching routes]",
                    rule=rule,
                    route=None,
                    skip_reason=f"{rule.code} {rule.name}: the app has no route this rule applies to",
                )
            for route in routes:
                yield self._item(f"{rule.code}[{route.target}]", rule=rule, route=route)

    def _item(self, name: str, **kwargs: Any) -> RuleItem:
        # The node id is given as text so that pytest parses "CODE[target]" exactly as it parses
        # the ids it stored (--lf, --deselect), rather than deriving it from the parent.
        return RuleItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}", **kwargs)

    def repr_failure(  # type: ignore[override]
        self, excinfo: ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, AppLoadError):
            return excinfo.value.render()
        if isinstance(excinfo.value, SettingError):
            return str(excinfo.value)
        original = excinfo.value
        formatted = "".join(traceback.format_exception(type(original), original, original.__traceback__))
        return (
            "internal error in pytest-fastapi-rules while collecting the rule items. This is a bug "
            "in the plugin, not a finding about your app: please report it with the traceback "
            f"below.\n\n{formatted}"
        )


@functools.lru_cache(maxsize=512)
def _markers(rule: Rule) -> tuple[pytest.MarkDecorator, ...]:
    """The markers of every item of ``rule``, made once per rule (a large app has thousands of
    items per rule, and making a marker is most of what creating an item costs)."""
    return (
        pytest.mark.fastapi_rules,
        getattr(pytest.mark, rule.code),
        getattr(pytest.mark, rule.family),
        pytest.mark.fastapi_rule(
            code=rule.code, name=rule.name, severity=rule.severity.value, family=rule.family
        ),
    )


class RuleItem(pytest.Item):
    """One rule checked against the app, or against one of its routes."""

    def __init__(
        self,
        *,
        rule: Rule,
        route: RouteFacts | None,
        skip_reason: str | None = None,
        internal_error: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rule = rule
        self.route = route
        self.skip_reason = skip_reason
        self.internal_error = internal_error
        self.findings: list[Finding] = []
        self.baselined: list[Finding] = []
        #: Findings a ``# noqa: CODE`` comment on their line suppresses (``noqa.py``).
        self.suppressed: list[Finding] = []
        for marker in _markers(rule):
            self.add_marker(marker)
        self.extra_keyword_matches.add(rule.name)

        self.user_properties.extend(
            [
                ("fastapi_rule_code", rule.code),
                ("fastapi_rule_name", rule.name),
                ("fastapi_rule_severity", rule.severity.value),
                ("fastapi_rule_target", self.target),
            ]
        )

    @property
    def state(self) -> RulesSession:
        return self.config.stash[SESSION_KEY]

    @property
    def target(self) -> str:
        return self.route.target if self.route is not None else "app"

    def finding_severity(self, finding: Finding) -> Severity:
        if finding.severity is Severity.WARNING or self.rule.severity is Severity.WARNING:
            return Severity.WARNING
        return Severity.ERROR

    def fingerprint(self, finding: Finding) -> str:
        return fingerprint(self.rule.code, self.target, finding)

    def prepare_shared_work(self) -> None:
        """Do, before this item's timed phases, the session's shared work it would otherwise do
        first: start the production-mode children, start the lifespan, run (this shard of) the probe
        run, and wait for the children this rule reads.

        Called outside pytest-timeout's per-item timer (``plugin.pytest_runtest_protocol``): a
        ``--timeout`` then limits what the item itself does, instead of charging whichever item
        runs first (FR102) with the whole session's work. Every failure here is remembered by the
        step that failed and reported by :meth:`runtest`, which goes through the same steps, so
        nothing is raised here.
        """
        if self.internal_error is not None or self.skip_reason:
            return
        state = self.state
        done = state.shared_work_done
        try:
            facts = state.facts()
        except Exception:  # noqa: BLE001 - runtest reports it
            return
        finally:
            done.add(_FACTS_LOADED)
        options = state.options
        rule = self.rule
        if self._starts_background_work():
            self._start_background_work(facts)
        if rule.needs_running_app:
            with contextlib.suppress(Exception):
                runtime_facts(
                    facts,
                    options.engine_paths,
                    options.session_factory_paths,
                    options.db_url,
                    options.sources.get("fastapi_rules_db_url"),
                )
            done.add(_RUNTIME_FACTS_FOUND)
        if rule.uses_probes:
            shard = self._shard(options)
            with contextlib.suppress(Exception):
                probe_results(facts, options, shard)
            done.add(shard)
        if rule.background is not None:
            wait_unfinished()

    def has_shared_work_left(self) -> bool:
        """Whether :meth:`prepare_shared_work` would do anything for this item: only its first
        callers load the app, start the children, find the engines and run the probes (each of
        which keeps its outcome, a failure too), and the items that read the children wait for
        them. The plugin skips the output capture around it otherwise: 35 to 45 us an item, about
        0.5 s at 1,000 routes."""
        if self.internal_error is not None or self.skip_reason:
            return False
        state = self.state
        done = state.shared_work_done
        options = state.options
        rule = self.rule
        return (
            _FACTS_LOADED not in done
            or rule.background is not None
            or self._starts_background_work()
            or (rule.needs_running_app and _RUNTIME_FACTS_FOUND not in done)
            or (rule.uses_probes and self._shard(options) not in done)
        )

    def _shard(self, options: RulesOptions) -> Shard | None:
        """The part of the probe run this item's verdict comes from (None: the whole run)."""
        return Shard.of(self.route.target if self.route is not None else None, options.probe_shards)

    def runtest(self) -> None:
        """Check the rule; the plugin's work is kept out of the user's coverage (``coexistence``)."""
        with self.state.coverage_paused():
            self._runtest()

    def _runtest(self) -> None:
        if self.internal_error is not None:
            raise PluginInternalError(self.rule, self.internal_error)
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        state = self.state
        facts = state.facts()
        options = state.options
        if self._starts_background_work():
            self._start_background_work(facts)
        if self.rule.needs_running_app:
            try:
                runtime_facts(
                    facts,
                    options.engine_paths,
                    options.session_factory_paths,
                    options.db_url,
                    options.sources.get("fastapi_rules_db_url"),
                )
            except (DiscoveryError, ProbeDatabaseError) as exc:
                raise UserSetupError(str(exc)) from None
            except AppStartupError:
                raise
            except Exception as exc:  # the plugin's own bug, never the app's failure
                raise PluginInternalError(self.rule, exc) from exc
        context = CheckContext(facts=facts, options=options, route=self.route)
        try:
            findings = run_check(self.rule, context)
        except RuleSkipped as skipped:
            pytest.skip(f"{self.rule.code} {self.rule.name}: {skipped}")
        except (AppStartupError, UserSetupError, ProbePhaseError):
            raise
        except Exception as exc:
            raise PluginInternalError(self.rule, exc) from exc
        note = options.infra_alias_note(self.route.path) if findings and self.route is not None else None
        if note is not None:
            findings = [dataclasses.replace(f, message=f"{f.message} ({note})") for f in findings]
        self.findings = [self._with_default_location(f) for f in findings]
        root = self.config.rootpath
        self.suppressed = [
            f
            for f in self.findings
            if f.location is not None
            and (
                (options.add_noqa and f.location.line)  # the comment is written at the end of the run
                or directive_for(root, f.location.file, f.location.line, self.rule.code)
            )
        ]
        baseline = state.baseline
        if options.update_baseline:
            self.baselined = [f for f in self.findings if f not in self.suppressed]
        elif baseline is not None:
            self.baselined = [
                f for f in self.findings if f not in self.suppressed and self.fingerprint(f) in baseline
            ]
        new = self.new_findings()
        blocking = [f for f in new if options.strict or self.finding_severity(f) is Severity.ERROR]
        if blocking:
            raise RuleViolation(self.format_findings())

    def _starts_background_work(self) -> bool:
        """Whether this item is the one to start the session's background work: the first probe
        item of the shard that runs the app-level probes, in a process that has not started it."""
        state = self.state
        return (
            self.rule.runs_with_probes
            and not state.background_started
            and self._in_first_shard(state.options)
        )

    def _in_first_shard(self, options: RulesOptions) -> bool:
        """Whether this item's probe shard is the one that runs the app-level probes, and so the
        items that wait for the background work (see ``probing/shards.py``)."""
        return shard_index(self.route.target if self.route else None, options.probe_shards) == 0

    def _start_background_work(self, facts: AppFacts) -> None:
        """Start the background work of every rule this process will run with the probes.

        The first probe item is about to run the probe run (seconds on a large app); the children
        that run the app in production mode start first, so they work on the other core meanwhile.
        Under xdist, the items that wait for them run on this worker too (``xdist_scheduling``).
        """
        state = self.state
        state.background_started = True
        starts = {
            item.rule.background: None
            for item in self.session.items
            if isinstance(item, RuleItem)
            and item.rule.background is not None
            and item.skip_reason is None
            and item.internal_error is None
        }
        for start in starts:
            # A child that cannot even start is reported by its rule, which starts it again.
            with contextlib.suppress(Exception):
                start(facts, state.options)

    def _with_default_location(self, finding: Finding) -> Finding:
        """Every finding points somewhere: its own object, else the route, else the app module."""
        if finding.location is not None:
            return finding
        fallback = self.route.location if self.route is not None else self.state.facts().app_location
        return replace(finding, location=fallback)

    def new_findings(self) -> list[Finding]:
        return [f for f in self.findings if f not in self.baselined and f not in self.suppressed]

    def headline(self) -> str:
        shown = self.new_findings() or self.findings
        first = shown[0]
        target = first.target or self.target
        more = f" (+{len(shown) - 1} more)" if len(shown) > 1 else ""
        return f"{self.rule.code} {self.rule.name}: {target}: {first.message}{more}"

    def format_findings(self) -> str:
        """The failure text, ruff-style: headline first, then one block per new finding."""
        lines = [self.headline()]
        for finding in self.new_findings():
            where = f"{finding.location}: " if finding.location else ""
            severity = self.finding_severity(finding).value
            lines.append("")
            lines.append(
                f"  {where}{self.rule.code} [{severity}] {finding.target or self.target}: {finding.message}"
            )
            lines.append(f"    fix: {finding.fix or self.rule.fix}")
        if self.baselined:
            lines.append("")
            lines.append(f"  ({len(self.baselined)} more finding(s) of this item are in the baseline)")
        if self.suppressed:
            lines.append("")
            lines.append(f"  ({len(self.suppressed)} more finding(s) of this item are suppressed by # noqa)")
        lines.append("")
        lines.append(f"  rule: {self.rule.summary} (rulebook {self.rule.section}, {RULEBOOK})")
        return "\n".join(lines)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        error = excinfo.value
        if isinstance(error, RuleViolation):
            return str(error)
        if isinstance(error, AppStartupError):
            shown_at = self.state.startup_error_shown_at
            if shown_at is None or shown_at == self.nodeid:
                self.state.startup_error_shown_at = self.nodeid
                return (
                    f"{self.rule.code} {self.rule.name}: {self.target}: cannot check, the app did not "
                    f"start.\n\n{error.render()}"
                )
            return (
                f"{self.rule.code} {self.rule.name}: {self.target}: cannot check, the app did not "
                f"start: {error.message.splitlines()[0]} (the app's traceback is shown under {shown_at})"
            )
        if isinstance(error, AppLoadError):
            return f"{self.rule.code} {self.rule.name}: cannot check.\n\n{error.render()}"
        if isinstance(error, UserSetupError):
            return f"{self.rule.code} {self.rule.name}: cannot check: {error}"
        if isinstance(error, ProbePhaseError):
            failure = error.failure
            head = (
                f"{self.rule.code} {self.rule.name}: internal error in pytest-fastapi-rules: "
                f"{failure.what} crashed ({failure.summary}), so {self.target} cannot be "
                f"judged. Only the rules that read it are affected "
                f"({', '.join(failure.codes)}). This is a bug in the plugin, not a finding about "
                f"your app: please report it with the traceback"
            )
            shown = self.state.phase_errors_shown.setdefault(failure.phase, self.nodeid)
            if shown != self.nodeid:
                return f"{head} shown under {shown}."
            return f"{head} below.\n\n{failure.traceback}"
        if isinstance(error, PluginInternalError):
            original = error.original
            formatted = "".join(traceback.format_exception(type(original), original, original.__traceback__))
            return (
                f"{self.rule.code} {self.rule.name}: internal error in pytest-fastapi-rules while "
                f"checking {self.target}. This is a bug in the plugin, not a finding about your "
                "app: please report it with the traceback below, and skip the rule meanwhile "
                f"with --fastapi-rules-ignore={self.rule.code}.\n\n{formatted}"
            )
        return super().repr_failure(excinfo)

    def skip_location(self) -> tuple[str, int | None]:
        """Where a skipped item points: the route's endpoint, else the app, else the collector."""
        location = self.route.location if self.route is not None else None
        if location is None and self.state._facts is not None:
            location = self.state._facts.app_location
        if location is None:
            return str(self.path), None
        return str(self.config.rootpath / location.file), location.line

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        """The route's (or the app's) file and line: what pytest, JUnit XML and CI annotations
        (pytest-github-actions-annotate-failures) point at, instead of the collector."""
        text = f"{self.rule.code} {self.rule.name} {self.target}"
        location = self.route.location if self.route is not None else None
        if location is None and self.state._facts is not None:
            location = self.state._facts.app_location
        if location is None:
            return self.path, None, text
        line = location.line - 1 if location.line else None  # pytest counts lines from 0
        return self.config.rootpath / location.file, line, text

    def outcome_kind(self, excinfo: ExceptionInfo[BaseException] | None) -> str:
        """The report's outcome for a call that raised ``excinfo`` (None: it passed)."""
        if excinfo is None:
            if self.new_findings():
                return "warning"
            if self.baselined:
                return "baselined"
            return "suppressed" if self.suppressed else "passed"
        if isinstance(excinfo.value, RuleViolation):
            return "failed"
        if excinfo.errisinstance(pytest.skip.Exception):
            return "skipped"
        return "error"

    def describe_outcome(self, data: dict[str, Any]) -> None:
        """Carry this run's outcome where other reporters look: user properties (JUnit XML's
        ``<property>``) and, for warned and baselined items, a report section with the findings.

        JUnit XML and pytest-html know only pytest's outcomes, so a warned or baselined item would
        read as a plain pass. pytest writes the properties from the teardown report, which copies
        the item's, so they are set on the item; a rerun (pytest-rerunfailures) replaces them.
        The section is the call's "stdout", the one both show (JUnit XML as ``<system-out>`` with
        ``junit_logging = system-out``; pytest-html in the test's log).
        """
        properties = [
            ("fastapi_rules_outcome", data["outcome"]),
            ("fastapi_rules_message", data["message"]),
        ]
        names = {name for name, _ in properties}
        self.user_properties[:] = [p for p in self.user_properties if p[0] not in names] + properties
        if data["outcome"] in ("warning", "baselined") and self.findings:
            self._report_sections[:] = [
                section for section in self._report_sections if section[:2] != ("call", "stdout")
            ]
            self.add_report_section("call", "stdout", self.findings_text(data["outcome"]))

    def findings_text(self, outcome: str) -> str:
        """Every finding of the item, new and baselined, for reporters that show item output."""
        lines = [f"fastapi-rules: {outcome}: {self.headline()}"]
        for finding in self.findings:
            where = f"{finding.location}: " if finding.location else ""
            kind = "baselined" if finding in self.baselined else self.finding_severity(finding).value
            target = finding.target or self.target
            lines.append(f"  {where}{self.rule.code} [{kind}] {target}: {finding.message}")
            lines.append(f"    fix: {finding.fix or self.rule.fix}")
        return "\n".join(lines) + "\n"

    def report_data(self, excinfo: ExceptionInfo[BaseException] | None) -> dict[str, Any]:
        """This item's result as plain data: the JSON report entry, carried on the test report."""
        outcome = self.outcome_kind(excinfo)
        if self.findings:
            message = self.headline()
        elif outcome == "skipped" and excinfo is not None:
            message = str(getattr(excinfo.value, "msg", excinfo.value))
        elif excinfo is not None and excinfo.errisinstance(pytest.fail.Exception):
            # pytest.fail() from another plugin (pytest-timeout's "Timeout (>1.0s)"): its message,
            # not the first line of a traceback.
            message = f"Failed: {getattr(excinfo.value, 'msg', excinfo.value)}"
        elif excinfo is not None:
            message = str(self.repr_failure(excinfo)).splitlines()[0]
        else:
            message = ""
        location = self.findings[0].location if self.findings else None
        if location is None and self.route is not None:
            location = self.route.location
        data: dict[str, Any] = {
            "code": self.rule.code,
            "name": self.rule.name,
            "severity": self.rule.severity.value,
            "target": self.target,
            "outcome": outcome,
            "message": message,
            "location": {"file": location.file, "line": location.line} if location else None,
            "nodeid": self.nodeid,
            "findings": [
                {
                    **finding_to_dict(f, self.target, self.finding_severity(f).value),
                    "fingerprint": self.fingerprint(f),
                    "baselined": f in self.baselined,
                    "suppressed": f in self.suppressed,
                }
                for f in self.findings
            ],
        }
        placement = getattr(self.state._facts, "database_placement", None)
        choice = getattr(placement, "choice", None)
        if self.rule.runs_with_probes and choice is not None:
            data[PROBE_DATABASE_KEY] = choice.described
        return data
