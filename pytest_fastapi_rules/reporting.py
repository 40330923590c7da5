"""What the plugin prints and writes: the rule catalog, the terminal summary and the JSON report.

Results travel on the test reports (``report.fastapi_rules``), not on the items, so that they reach
the controller intact under pytest-xdist, where items run in other processes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_fastapi_rules import __version__
from pytest_fastapi_rules.catalog import all_rules, get_rule
from pytest_fastapi_rules.options import RulesOptions
from pytest_fastapi_rules.registry import Finding, Rule
from pytest_fastapi_rules.settings import markdown_table

JSON_SCHEMA_VERSION = 1
REPORT_ATTRIBUTE = "fastapi_rules"
#: The key of an item's report data that carries where the probe database lived (not a result field).
PROBE_DATABASE_KEY = "probe_database"
OUTCOME_ORDER = ("error", "failed", "warning", "baselined", "suppressed", "skipped", "passed")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_URI = "https://github.com/pytest-fastapi-rules/pytest-fastapi-rules"


def finding_to_dict(finding: Finding, default_target: str, severity: str) -> dict[str, Any]:
    location = finding.location
    return {
        "target": finding.target or default_target,
        "message": finding.message,
        "fix": finding.fix,
        "severity": severity,
        "location": (
            {"file": location.file, "line": location.line, "column": location.column} if location else None
        ),
    }


def format_catalog(rules: list[Rule] | None = None) -> str:
    """The ``--fastapi-rules-list`` text: one line per rule, like ``ruff rule --all``."""
    rules = rules if rules is not None else all_rules()
    width = max(len(rule.name) for rule in rules)
    basis_width = max(len(rule.basis.value) for rule in rules)
    lines = [f"{'code':<6} {'name':<{width}} {'severity':<8} {'basis':<{basis_width}} summary"]
    for rule in rules:
        lines.append(
            f"{rule.code:<6} {rule.name:<{width}} {rule.severity.value:<8} "
            f"{rule.basis.value:<{basis_width}} {rule.summary}"
        )
    return "\n".join(lines)


def markdown_rule_table(rules: list[Rule] | None = None) -> str:
    """The README's rule table, generated from the registry (a test keeps them in sync)."""
    rules = rules if rules is not None else all_rules()
    lines = ["| code | name | severity | basis | what it checks |", "|---|---|---|---|---|"]
    for rule in rules:
        summary = rule.summary.replace("|", "\\|")
        lines.append(
            f"| {rule.code} | {rule.name} | {rule.severity.value} | {rule.basis.value} | {summary} |"
        )
    return "\n".join(lines)


def markdown_settings_table() -> str:
    """The README's settings table, made from the settings' declarations (``options.RulesOptions``)."""
    return markdown_table(RulesOptions)


#: The README's generated tables, by the name in their markers (``<!-- rules-table:start -->`` and
#: ``<!-- rules-table:end -->``), each with what makes it; a test keeps the README in sync with them.
README_TABLES: dict[str, Callable[[], str]] = {
    "rules-table": markdown_rule_table,
    "settings-table": markdown_settings_table,
}


def readme_with_table(readme: str, name: str) -> str:
    """``readme`` with the text between the markers of the table ``name`` replaced by that table."""
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    start = readme.index(start_marker) + len(start_marker)
    end = readme.index(end_marker)
    return f"{readme[:start]}\n{README_TABLES[name]()}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_fastapi_rules.reporting README.md``: regenerate the README's tables."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "README.md")
    text = path.read_text(encoding="utf-8")
    for name in README_TABLES:
        text = readme_with_table(text, name)
    path.write_text(text, encoding="utf-8")
    return 0


class ResultCollector:
    """Gathers the rule results from reports, on the process that writes the summary and files."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        #: Where the probes' database lived and why (``placement.DatabaseChoice.described``).
        self.probe_database: str | None = None
        #: ``# noqa`` comments that suppressed nothing, as ``file:line: text`` (set at the end).
        self.unused_noqa: list[str] = []
        #: nodeid -> position in :attr:`results`, so an item reported again replaces its entry.
        self._positions: dict[str, int] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Runs where reports arrive: the xdist controller, or the only process."""
        self.add(report)

    def add(self, report: pytest.TestReport) -> None:
        data = getattr(report, REPORT_ATTRIBUTE, None)
        if data is None:
            return
        if str(report.outcome) == "rerun":  # pytest-rerunfailures: only the last attempt counts
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            data = dict(data)
            database = data.pop(PROBE_DATABASE_KEY, None)
            if database and self.probe_database is None:
                self.probe_database = str(database)
            position = self._positions.get(data["nodeid"])
            if position is not None:
                self.results[position] = data  # an item run again: its last outcome stands
                return
            self._positions[data["nodeid"]] = len(self.results)
            self.results.append(data)

    def sorted_results(self) -> list[dict[str, Any]]:
        return sorted(self.results, key=lambda r: (r["code"], r["target"], r["nodeid"]))

    def write_json(self, path: Path, app_spec: str | None) -> None:
        counts = Counter(result["outcome"] for result in self.results)
        payload = {
            "version": JSON_SCHEMA_VERSION,
            "tool": "pytest-fastapi-rules",
            "app": app_spec,
            "summary": {outcome: counts.get(outcome, 0) for outcome in OUTCOME_ORDER},
            "probe_database": self.probe_database,
            "unused_noqa": self.unused_noqa,
            "results": self.sorted_results(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    def summary_lines(self) -> list[str]:
        """Per rule: counts by outcome, worst first; a single line when everything passed."""
        if not self.results:
            return []
        per_rule: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for result in self.results:
            per_rule[(result["code"], result["name"])][result["outcome"]] += 1
        total = Counter(result["outcome"] for result in self.results)
        if set(total) <= {"passed", "skipped"}:
            return [
                f"fastapi-rules: all {total['passed']} checks passed"
                + (f", {total['skipped']} skipped" if total["skipped"] else "")
                + f" ({len(per_rule)} rules)"
            ]

        def badness(item: tuple[tuple[str, str], Counter[str]]) -> tuple[int, ...]:
            counts = item[1]
            return tuple(-counts.get(o, 0) for o in OUTCOME_ORDER[:4])

        lines = []
        for (code, name), counts in sorted(per_rule.items(), key=lambda i: (badness(i), i[0])):
            parts = [f"{counts[o]} {o}" for o in OUTCOME_ORDER if counts.get(o)]
            lines.append(f"{code} {name}: {', '.join(parts)}")
        return lines

    def warning_lines(self) -> list[str]:
        lines = []
        for result in self.sorted_results():
            if result["outcome"] != "warning":
                continue
            for finding in result["findings"]:
                location = finding["location"]
                where = ""
                if location:
                    where = (
                        f"{location['file']}:{location['line']}: "
                        if location["line"]
                        else f"{location['file']}: "
                    )
                lines.append(
                    f"{where}{result['code']} {result['name']}: {finding['target']}: {finding['message']}"
                )
        return lines


def explain(code: str) -> str | None:
    """The ``--fastapi-rules-explain`` text of one rule, from the registry; None if unknown."""
    rules = {rule.code: rule for rule in all_rules()}
    rule = rules.get(code.strip().upper())
    if rule is None:
        return None
    lines = [
        f"{rule.code} {rule.name} ({rule.severity.value}, {rule.scope.value}-level, "
        f"basis: {rule.basis.value})",
        f"Rulebook: {rule.section}",
        "",
        f"What passes: {rule.summary}",
        "",
        f"Why: {rule.rationale}",
        "",
        f"How to fix: {rule.fix}",
    ]
    if rule.bad_example:
        lines += ["", "Fails:", *("    " + line for line in rule.bad_example.splitlines())]
    if rule.good_example:
        lines += ["", "Passes:", *("    " + line for line in rule.good_example.splitlines())]
    lines += ["", f"Skip it with --fastapi-rules-ignore={rule.code} or a per-route ignore."]
    return "\n".join(lines)


def fix_of(code: str, finding: dict[str, Any]) -> str | None:
    """How to fix a reported finding: its own fix, else its rule's (as the terminal shows it)."""
    return finding.get("fix") or get_rule(code).fix


def _workflow_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _workflow_property(text: str) -> str:
    return _workflow_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(results: list[dict[str, Any]]) -> list[str]:
    """Each finding that fails or warns as a GitHub Actions workflow command, with file and line.

    Baselined findings are left out: they are known and do not fail the run.
    """
    lines: list[str] = []
    for result in results:
        for finding in result["findings"]:
            if finding.get("baselined") or finding.get("suppressed"):
                continue
            command = "error" if finding["severity"] == "error" else "warning"
            properties = []
            location = finding["location"]
            if location:
                properties.append(f"file={_workflow_property(Path(location['file']).as_posix())}")
                if location.get("line"):
                    properties.append(f"line={location['line']}")
                if location.get("column"):
                    properties.append(f"col={location['column']}")
            properties.append(f"title={_workflow_property(result['code'] + ' ' + result['name'])}")
            text = f"{finding['target']}: {finding['message']}"
            fix = fix_of(result["code"], finding)
            if fix:
                text += f"\nfix: {fix}"
            lines.append(f"::{command} {','.join(properties)}::{_workflow_data(text)}")
    return lines


def _sarif_level(severity: str) -> str:
    return "error" if severity == "error" else "warning"


def write_sarif(path: Path, results: list[dict[str, Any]], root: Path) -> None:
    """Write the findings as SARIF 2.1.0: one rule per code, one result per finding."""
    rules = all_rules()
    index = {rule.code: position for position, rule in enumerate(rules)}
    sarif_rules = [
        {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": rule.rationale},
            "help": {"text": f"{rule.fix} (rulebook {rule.section})", "markdown": f"**Fix:** {rule.fix}"},
            "defaultConfiguration": {"level": _sarif_level(rule.severity.value)},
            "properties": {"tags": [rule.family, rule.basis.value], "scope": rule.scope.value},
        }
        for rule in rules
    ]
    sarif_results: list[dict[str, Any]] = []
    for result in results:
        for finding in result["findings"]:
            entry: dict[str, Any] = {
                "ruleId": result["code"],
                "ruleIndex": index[result["code"]],
                "level": _sarif_level(finding["severity"]),
                "message": {"text": f"{finding['target']}: {finding['message']}"},
                "partialFingerprints": {"fastapiRules/v1": finding["fingerprint"]},
                "baselineState": "unchanged" if finding["baselined"] else "new",
            }
            if finding.get("suppressed"):
                entry["suppressions"] = [{"kind": "inSource", "justification": "# noqa comment"}]
            location = finding["location"]
            if location:
                region: dict[str, Any] = {"startLine": location["line"] or 1}
                if location.get("column"):
                    region["startColumn"] = location["column"]
                entry["locations"] = [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": Path(location["file"]).as_posix(),
                                "uriBaseId": "%SRCROOT%",
                            },
                            "region": region,
                        }
                    }
                ]
            sarif_results.append(entry)
    payload = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pytest-fastapi-rules",
                        "version": __version__,
                        "informationUri": TOOL_URI,
                        "rules": sarif_rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.resolve().as_uri() + "/"}},
                "results": sarif_results,
            }
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
