"""Predicates and helpers shared by several rule modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.security import OAuth2PasswordRequestForm

from pytest_fastapi_rules import production
from pytest_fastapi_rules.facts import is_subclass

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
