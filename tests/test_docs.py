"""The README's generated tables (rules, settings) and the catalog stay in sync with their sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_fastapi_rules.catalog import all_rules
from pytest_fastapi_rules.reporting import README_TABLES, readme_with_table

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("name", sorted(README_TABLES))
def test_readme_tables_match_their_sources(name: str) -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text, name) == text, (
        f"README.md's {name} is stale: run `python -m pytest_fastapi_rules.reporting README.md`"
    )


def test_every_rule_is_fully_declared() -> None:
    for rule in all_rules():
        assert rule.summary and rule.rationale and rule.fix, rule.code
        assert rule.section, rule.code
        assert rule.bad_example and rule.good_example, (
            f"{rule.code} has no bad/good example for --fastapi-rules-explain"
        )
