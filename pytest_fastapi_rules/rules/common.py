"""Predicates and helpers shared by several rule modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi.security import OAuth2PasswordRequestForm

from pytest_fastapi_rules.facts import is_subclass
from pytest_fastapi_rules.production import facts as production

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions


def is_api_route(route: RouteFacts, options: RulesOptions) -> bool:
    """A route of the public API: not infrastructure (health, metrics) and shown in the schema."""
    return route.include_in_schema and not options.is_infra_path(route.path)


def any_route(route: RouteFacts, options: RulesOptions) -> bool:
    return True


def takes_password_form(route: RouteFacts) -> bool:
    """The route reads an ``OAuth2PasswordRequestForm`` (a login or token endpoint)."""
    return any(is_subclass(d.call, OAuth2PasswordRequestForm) for d in route.iter_dependants())


def code_of(obj: object) -> str:
    """A short, readable name for an object in a message: ``module.qualname``; a callable instance
    (a library's dependency object, ``FastAPIOAuth20(...)``) by its class, never by its ``repr``,
    whose memory address would change the message, and the finding's fingerprint, on every run."""
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        cls = type(obj)
        return f"{cls.__module__}.{cls.__qualname__}(...) instance"
    return f"{module}.{name}" if module else str(name)


def start_production_child(facts: AppFacts, options: RulesOptions) -> None:
    """``background`` of the rules that read the app in production mode (FR108, FR503, FR802)."""
    production.start_production_child(facts, options)


# -- FR101 ----------------------------------------------------------------------------------------


def _lifespan_parts(context: Any, depth: int = 0) -> Iterator[Any]:
    """The lifespan callables an app's (possibly merged) lifespan context is made of.

    FastAPI's ``include_router`` wraps the app's lifespan and each included router's in a
    ``merged_lifespan`` closure (``original_context``/``nested_context``); older versions do not
    merge. Yields the leaves: the user's lifespan functions and ``_DefaultLifespan`` objects.
    """
    if depth > 64:
        return
    function = getattr(context, "__wrapped__", context)
    code = getattr(function, "__code__", None)
    closure = getattr(function, "__closure__", None)
    if code is not None and closure and getattr(function, "__name__", "") == "merged_lifespan":
        cells = dict(zip(code.co_freevars, closure, strict=False))
        found = False
        for name in ("original_context", "nested_context"):
            cell = cells.get(name)
            if cell is None:
                continue
            try:
                inner = cell.cell_contents
            except ValueError:
                continue
            found = True
            yield from _lifespan_parts(inner, depth + 1)
        if found:
            return
    yield context
