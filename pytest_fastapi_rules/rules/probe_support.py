"""Access to the probe run for the rules that read it, and the helpers those rules share.

Every probe rule and every runtime half reads the observations of one probe run
(``probing.runner.probe_results``), done once per session by the first probe item: the app's
lifespan is run anew, on an isolated database, with real requests sent in-process and their SQL
counted (see ``pytest_fastapi_rules/probing``). :func:`_probe` gives a rule's item that run, or turns
a run that could not happen into one reported cause (not one red item per route).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.facts import unwrap_callable
from pytest_fastapi_rules.probing.auth import rejects_anonymous
from pytest_fastapi_rules.probing.results import ProbePhaseError
from pytest_fastapi_rules.probing.runner import ProbeSetupError, probe_results
from pytest_fastapi_rules.probing.shards import Shard, shard_index
from pytest_fastapi_rules.registry import (
    COLLECTOR_NAME,
    CheckContext,
    Location,
    RuleSkipped,
    Scope,
    UserSetupError,
)
from pytest_fastapi_rules.rules.places import location_of_where
from pytest_fastapi_rules.runtime import AppStartupError

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions
    from pytest_fastapi_rules.probing.results import Exchange, ProbeResults


# -- access to the probe run ------------------------------------------------------------------------


def raised_synthetic(results: ProbeResults) -> Exchange:
    """The probes' synthetic-error request (FR105, FR803), when its raising dependency ran: a
    middleware that answered first (Netflix/dispatch's db middleware, for an unknown schema) shows
    nothing of how the app handles an unexpected exception. Skips with the reason otherwise."""
    exchange = results.synthetic
    if exchange is None:
        raise RuleSkipped(results.synthetic_skipped or "no synthetic error was injected")
    if not results.synthetic_raised:
        raise RuleSkipped(
            f"the synthetic exception was never raised: {exchange.request.shown} {exchange.outcome} "
            "before it reached the dependency that raises (a middleware answered first)"
        )
    return exchange


def _probe(context: CheckContext, code: str) -> ProbeResults:
    """The probe run's results, for the item of rule ``code`` (and ``context.route``).

    When the probes cannot run at all (their database cannot be set up, the app reached a database
    the plugin could not redirect), ONE item reports the cause as a "cannot check" error (see
    :func:`_setup_error_item`) and every other probe item is skipped with a one-line reason that
    names that item: one cause, one red item, not one per route. A phase of the run that crashed
    errors only the rules it feeds (the rules that declare it in ``phases``), and a route that needs
    a table the probes could not create or seed is skipped with that table and the reason, by the
    rules whose verdict depends on its data (``needs_route_data``).
    """
    target = context.route.target if context.route is not None else None
    try:
        results = probe_results(
            context.facts, context.options, Shard.of(target, context.options.probe_shards)
        )
    except ProbeSetupError as exc:
        _setup_failure(
            context,
            code,
            f"the probes cannot run: {exc}",
            f"the probes could not set up their database ({exc.cause})",
        )
    if results.escapes:
        escape = results.escapes[0]
        _setup_failure(
            context,
            code,
            f"during the probes the app tried to reach {escape.url} (from {escape.where}), which the "
            "plugin could not redirect to the isolated database; it refused the access, so the "
            "probe results are incomplete. Name that engine or session factory in the ini keys "
            "fastapi_rules_engines / fastapi_rules_session_factories (module:attribute).",
            f"the probe results are incomplete: the app reached {escape.url}, which the plugin "
            "could not redirect",
        )
    if results.stall is not None and not (code == "FR402" and target == results.stall.target):
        _stalled(context, code, results)
    failure = results.failed_phase(code, target)
    if failure is not None:
        raise ProbePhaseError(failure)
    if target is not None and registry.get_rule(code).needs_route_data:
        given_up = results.requests_given_up.get(target)
        if given_up is not None:
            raise RuleSkipped(f"the probes sent nothing to {target}: {given_up}")
        broken = results.broken_table_of(target)
        if broken is not None:
            table, why = broken
            raise RuleSkipped(f"{target} needs table {table!r}, which the probes could not use: {why}")
    return results


def _stalled(context: CheckContext, code: str, results: ProbeResults) -> NoReturn:
    """The probe run stopped at a request that blocked the loop: FR402 reports that route; every
    other probe item is skipped pointing at it (or, when FR402 is not run, at the setup item)."""
    stall = results.stall
    assert stall is not None
    what = (
        f"the probes stopped when {stall.request} blocked the event loop for over {stall.seconds:g} s "
        f"(at {_short_frame(context.facts, stall.where)})"
    )
    reporter = registry.get_rule("FR402")
    route = next((r for r in context.facts.routes if r.target == stall.target), None)
    if (
        route is not None
        and context.options.rule_is_selected("FR402")
        and (reporter.applies_to is None or reporter.applies_to(route, context.options))
        and not context.options.route_ignored(route.method, route.path, "FR402")
    ):
        raise RuleSkipped(f"{what}: see {COLLECTOR_NAME}::FR402[{stall.target}]")
    _setup_failure(
        context,
        code,
        f"{what}, so the rest of the probe run has no answers. The app's blocking call:\n{stall.stack}",
        what,
    )


def _setup_error_item(context: CheckContext) -> tuple[str, str | None] | None:
    """``(code, route target or None)`` of the item that reports a probe setup failure.

    Computed from the registry, the selection and the routes, the way the collector orders items, so
    it is the same item whatever order the items run in (pytest-randomly, xdist, ``--lf``). When
    xdist workers share the probe run out (``probing/shards.py``), each shard has its own: a
    failure seen by one worker's part of the run is reported by an item that worker runs.
    """
    options = context.options
    shards = options.probe_shards
    here = shard_index(context.route.target if context.route is not None else None, shards)
    declared_rules = {declared.code: declared for declared in registry.all_rules()}
    for code in registry.setup_reporters():
        declared = declared_rules.get(code)
        if declared is None or not options.rule_is_selected(code):
            continue
        if declared.scope is Scope.APP:
            if here == 0:
                return code, None
            continue
        for route in context.facts.routes:
            if declared.applies_to is not None and not declared.applies_to(route, options):
                continue
            if options.route_ignored(route.method, route.path, code):
                continue
            if shard_index(route.target, shards) != here:
                continue
            return code, route.target
    return None


def _setup_failure(context: CheckContext, code: str, message: str, summary: str) -> NoReturn:
    """Raise the setup failure as this item's error if it is the reporting item, else skip."""
    holder = _setup_error_item(context)
    here = (code, context.route.target if context.route is not None else None)
    if holder is None or holder == here:
        raise UserSetupError(message)
    holder_code, target = holder
    nodeid = f"{COLLECTOR_NAME}::{holder_code}" + (f"[{target}]" if target else "")
    raise RuleSkipped(f"{summary}: see {nodeid}")


def _happy(results: ProbeResults, target: str) -> list[Exchange]:
    return results.for_target(target, ("small", "large", "write"))


def _unanswered(
    results: ProbeResults,
    target: str,
    phases: tuple[str, ...] = ("small", "large", "write"),
    route: RouteFacts | None = None,
) -> str:
    """Why a route gave the probes nothing to measure, for a skip reason.

    When every valid request answered 5xx, the reason names the app's exception and where it was
    raised: that is either a bug in the app or seeded data the app cannot handle, and the user can
    only tell which from the exception (a 500 must never vanish into "no answer").
    """
    sent = results.for_target(target, phases)
    if not sent:
        return f"the probes could build no valid request for {target}"
    failed = [e for e in sent if e.server_error]
    if failed and any(e.ok for e in sent):
        # Some sizes answered and others did not: there is no pair of answers to compare.
        first = next((e for e in failed if e.app_error), failed[0])
        answered = sorted({e.phase for e in sent if e.ok})
        return (
            f"the valid request to {target} answered 2xx in the {', '.join(answered)} phase but "
            f"{first.outcome} in the {first.phase} phase, so there is no pair of answers to compare"
        )
    if len(failed) < len(sent):
        statuses = sorted({str(e.status) for e in sent if not e.server_error})
        note = ""
        if route is not None:
            note = _auth_note(results, route, next(e for e in sent if not e.server_error))
        return f"the probes' valid requests to {target} answered {', '.join(statuses)}, never 2xx{note}"
    first = next((e for e in failed if e.app_error), failed[0])
    return (
        f"every valid probe request to {target} {first.outcome}: an error in the app, or seeded data "
        "the app cannot handle (then name a seed function in fastapi_rules_seed)"
    )


def _auth_note(results: ProbeResults, route: RouteFacts, exchange: Exchange) -> str:
    """Why a protected route refused the probes: they could not stand in for its current user."""
    if exchange.status not in (401, 403) or results.auth_headers_used or not results.auth_unsupported:
        return ""
    try:
        if not rejects_anonymous(route):
            return ""
    except Exception:  # noqa: BLE001 - an exotic dependency tree: say nothing
        return ""

    own = {getattr(unwrap_callable(d.call), "__qualname__", None) for d in route.iter_dependants() if d.call}
    mine = sorted((name, why) for name, why in results.auth_unsupported.items() if name in own)
    if not mine:
        return ""
    name, why = mine[0]
    return (
        f" (the probes could not sign in: `{name}`: {why}; give them credentials with "
        "fastapi_rules_auth_headers, e.g. a token a seed function created)"
    )


def _route_location(route: RouteFacts) -> Location | None:
    return route.location


def _is_probed_route(route: RouteFacts, options: RulesOptions) -> bool:
    return True


def _method_route(*methods: str) -> Callable[[RouteFacts, RulesOptions], bool]:
    def applies(route: RouteFacts, options: RulesOptions) -> bool:
        return route.method in methods

    applies.__name__ = f"routes_{'_'.join(m.lower() for m in methods)}"
    return applies


def _where_location(facts: AppFacts, where: str) -> Location | None:
    """``file:line`` of an engine the probes saw: where it was created, or where the app assigns it.

    Intercepted creations carry ``/path/file.py:12``; engines that existed before the probes carry
    the name they were found under (``app.core.db.engine``), located like the engine rules do.
    """
    path, _, line = where.rpartition(":")
    if path and line.isdigit():
        return Location(file=facts.relative(path), line=int(line))

    try:
        return location_of_where(facts, where)
    except Exception:  # noqa: BLE001 - a best-effort location
        return None


def _short_where(facts: AppFacts, where: str) -> str:
    location = _where_location(facts, where)
    return str(location) if location else where


def _frame_location(facts: AppFacts, where: str) -> Location | None:
    place = where.split(" in ", 1)[0]
    return _where_location(facts, place)


def _short_frame(facts: AppFacts, where: str) -> str:
    place, _, function = where.partition(" in ")
    location = _where_location(facts, place)
    return f"{location} in {function}" if location else where


#: What a runtime half raises when the probes cannot run for it (their database cannot be set up,
#: the app does not start): the rule's static verdict then stands on its own.
PROBES_UNAVAILABLE: tuple[type[BaseException], ...] = (UserSetupError, AppStartupError)
