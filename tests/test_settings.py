"""The settings: each declared once (``options.RulesOptions``), and what is made of the declarations:
pytest's options and ini keys with one help text, and a run's values (command line over ini over
default)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_fastapi_rules.catalog import all_rules
from pytest_fastapi_rules.options import RulesOptions, resolve_options
from pytest_fastapi_rules.registry import Rule
from pytest_fastapi_rules.settings import OptionsError, declared_settings

SETTINGS = declared_settings(RulesOptions)


def test_every_setting_is_fully_declared() -> None:
    keys = [declared.key for _name, declared in SETTINGS]
    assert len(keys) == len(set(keys))
    codes = {rule.code for rule in all_rules()}
    for _name, declared in SETTINGS:
        assert declared.key.startswith("fastapi_"), declared.key
        assert declared.help.strip().endswith((".", ")")), declared.key
        unknown = set(declared.rules) - codes
        assert not unknown, f"{declared.key} names rules that do not exist: {sorted(unknown)}"


def test_help_shows_every_flag_and_ini_key_with_the_one_help_text(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    # Whitespace removed: argparse and pytest wrap the two copies at different widths.
    output = re.sub(r"\s+", "", result.stdout.str())
    for _name, declared in SETTINGS:
        text = re.sub(r"\s+", "", declared.described())
        if declared.option:
            assert f"{declared.option}{'=' + str(declared.flag) if declared.takes_value else ''}{text}" in (
                output
            ), declared.key
        if declared.ini:
            assert f"{declared.key}({declared.ini}):{text}" in output, declared.key


def _no_catalog() -> Iterator[Rule]:
    raise AssertionError("the rules were imported though no setting names a rule code")


def test_the_command_line_wins_over_the_ini_which_wins_over_the_default(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nfastapi_app = from_ini:app\nfastapi_rules_startup_timeout = 5\n"
        "fastapi_rules_json = ini.json\nfastapi_rules_max_page_size = 50\n"
    )
    config = pytester.parseconfig(
        "--fastapi-app=from_cli:app", "--fastapi-rules-startup-timeout=7", "--fastapi-rules-json="
    )
    options = resolve_options(config, _no_catalog)
    assert (options.app_spec, options.startup_timeout) == ("from_cli:app", 7.0)
    # A blank value on the command line (`--fastapi-rules-json=$UNSET`) counts as not given.
    assert options.json_path == config.rootpath / "ini.json"
    assert options.max_page_size == 50
    assert (options.request_timeout, options.base_url) == (30.0, "http://localhost")
    assert options.sources == {
        "fastapi_app": "command line",
        "fastapi_rules_startup_timeout": "command line",
        "fastapi_rules_json": "ini",
        "fastapi_rules_max_page_size": "ini",
    }


def test_a_relative_path_is_taken_from_where_it_was_given(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfastapi_rules_sarif = reports/ini.sarif\n")
    elsewhere = pytester.mkdir("elsewhere")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(elsewhere)
        config = pytester.parseconfig(
            f"--rootdir={pytester.path}", "--fastapi-app=a:app", "--fastapi-rules-json=cli.json"
        )
    options = resolve_options(config, _no_catalog)
    assert options.json_path == elsewhere / "cli.json"
    assert options.sarif_path == Path(pytester.path) / "reports" / "ini.sarif"


def test_rule_codes_are_checked_against_the_catalog_only_when_a_setting_names_some(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfastapi_rules_severity =\n    FR5 = warning\n")
    options = resolve_options(pytester.parseconfig("--fastapi-rules-select=FR5"), all_rules)
    database_rules = [rule.code for rule in all_rules() if rule.code.startswith("FR5")]
    assert database_rules and sorted(options.severity_overrides) == database_rules
    with pytest.raises(AssertionError, match="the rules were imported"):
        resolve_options(pytester.parseconfig("--fastapi-rules-select=FR5"), _no_catalog)
    with pytest.raises(OptionsError, match="--fastapi-rules-ignore: 'FR9' matches no rule"):
        resolve_options(pytester.parseconfig("--fastapi-rules-ignore=FR9"), all_rules)


def test_a_directly_built_options_object_has_every_setting_at_its_default(tmp_path: Path) -> None:
    options = RulesOptions(app_spec="src.main:app", app_dir=tmp_path)
    assert options.production_env == {"ENVIRONMENT": "production"}
    assert options.version_prefix.pattern.startswith("^/api/v")
    assert options.infra_paths[:2] == ("/", "/health")
    assert options.github_annotations is False
    assert options.production_env is not RulesOptions(app_spec=None, app_dir=tmp_path).production_env
