"""The README's rule table and the catalog come from the registry and stay in sync with it."""

from __future__ import annotations

from pathlib import Path

from pytest_fastapi_rules.catalog import all_rules
from pytest_fastapi_rules.reporting import readme_with_rule_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_rule_table_matches_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_with_rule_table(text) == text, (
        "README.md's rule table is stale: run `python -m pytest_fastapi_rules.reporting README.md`"
    )


def test_every_rule_is_fully_declared() -> None:
    for rule in all_rules():
        assert rule.summary and rule.rationale and rule.fix, rule.code
        assert rule.section, rule.code
        assert rule.bad_example and rule.good_example, (
            f"{rule.code} has no bad/good example for --fastapi-rules-explain"
        )
