"""Predicates and helpers shared by several rule modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions


def is_api_route(route: RouteFacts, options: RulesOptions) -> bool:
    """A route of the public API: not infrastructure (health, metrics) and shown in the schema."""
    return route.include_in_schema and not options.is_infra_path(route.path)


def any_route(route: RouteFacts, options: RulesOptions) -> bool:
    return True


def code_of(obj: object) -> str:
    """A short, readable name for an object in a message: ``module.qualname``."""
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{module}.{name}" if module else str(name)


def start_production_child(facts: AppFacts, options: RulesOptions) -> None:
    """``background`` of the rules that read the app in production mode (FR108, FR503, FR802)."""
    from pytest_fastapi_rules.production import start_production_child as start

    start(facts, options)
