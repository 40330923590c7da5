"""Every rule of the plugin: the rule modules, imported on first use, read from the registry.

The plugin, the items and the reports ask here for the rules. ``registry.py`` holds the declarations
and sits below the rule modules, which import it to declare themselves; this module sits above them.
"""

from __future__ import annotations

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.registry import Rule


def load_rules() -> None:
    """Import the rule modules, which register their rules (once; later calls cost a dict lookup)."""
    # Deferred on purpose: the rules import FastAPI, SQLAlchemy and the probes, which a pytest run
    # without --fastapi-app never needs (the plugin imports this module when pytest starts).
    from pytest_fastapi_rules import rules  # noqa: F401


def all_rules() -> list[Rule]:
    """Every rule, sorted by code."""
    load_rules()
    return registry.all_rules()


def get_rule(code: str) -> Rule:
    """The rule of ``code`` (KeyError for an unknown code)."""
    load_rules()
    return registry.get_rule(code)
