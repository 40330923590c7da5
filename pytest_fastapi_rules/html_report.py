"""The conformance map (``--fastapi-rules-html=PATH``): one self-contained HTML file.

A matrix of the app's routes by rule family (FR1xx ... FR8xx), each cell the worst outcome of the
family's rules on that route, the app-level rules apart, and a summary at the top. Every cell opens
(a ``<details>`` element: no script, no network) to its rules' outcomes, each finding's message,
fix and ``file:line``. Built from the same results as the JSON report, on the process that writes
the reports.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pytest_fastapi_rules.catalog import all_rules, get_rule
from pytest_fastapi_rules.reporting import OUTCOME_ORDER, fix_of

_SYMBOL = {
    "error": "E",
    "failed": "✗",
    "warning": "!",
    "baselined": "b",
    "suppressed": "n",
    "skipped": "-",
    "passed": "✓",
}
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
td.cell { min-width: 3em; }
.error, .failed { background: #fdd; } .warning { background: #ffd; }
.baselined, .suppressed { background: #eef; } .skipped { background: #f4f4f4; } .passed { background: #dfd; }
details summary { cursor: pointer; font-weight: bold; }
ul { margin: 0.3em 0; padding-left: 1.2em; } code { font-size: 12px; }
"""


def _worst(outcomes: list[str]) -> str:
    """The first outcome in :data:`OUTCOME_ORDER` (worst first) that any of ``outcomes`` is."""
    return min(outcomes, key=lambda o: OUTCOME_ORDER.index(o) if o in OUTCOME_ORDER else len(OUTCOME_ORDER))


def _entry(result: dict[str, Any]) -> str:
    """One rule's result inside a cell: outcome, message, and each finding with fix and place."""
    e = html.escape
    head = f"<b>{e(result['code'])} {e(result['name'])}</b>: {e(result['outcome'])}"
    findings = []
    for finding in result["findings"]:
        location = finding.get("location")
        where = ""
        if location:
            line = f":{location['line']}" if location.get("line") else ""
            where = f" <code>{e(location['file'])}{line}</code>"
        fix_text = fix_of(result["code"], finding)
        fix = f"<br>fix: {e(fix_text)}" if fix_text else ""
        findings.append(f"<li>{e(finding['message'])}{where}{fix}</li>")
    if not findings and result.get("message"):
        findings.append(f"<li>{e(result['message'])}</li>")
    return head + (f"<ul>{''.join(findings)}</ul>" if findings else "")


def _cell(results: list[dict[str, Any]]) -> str:
    if not results:
        return '<td class="cell"></td>'
    worst = _worst([r["outcome"] for r in results])
    body = "".join(f"<div>{_entry(r)}</div>" for r in results)
    return (
        f'<td class="cell {worst}" title="{worst}"><details><summary>{_SYMBOL.get(worst, "?")} '
        f"{len(results)}</summary>{body}</details></td>"
    )


def render(results: list[dict[str, Any]], app_spec: str | None) -> str:
    """The whole HTML document for ``results`` (the JSON report's entries)."""
    e = html.escape
    families = sorted({rule.family for rule in all_rules()})
    by_route: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    app_level: list[dict[str, Any]] = []
    for result in sorted(results, key=lambda r: (r["target"], r["code"])):
        if result["target"] == "app":
            app_level.append(result)
        else:
            by_route[result["target"]][get_rule(result["code"]).family].append(result)
    counts = Counter(r["outcome"] for r in results)
    summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOME_ORDER if counts.get(o))
    rows = []
    for target in sorted(by_route, key=lambda t: (t.split(" ", 1)[-1], t)):
        cells = "".join(_cell(by_route[target].get(family, [])) for family in families)
        rows.append(f"<tr><th><code>{e(target)}</code></th>{cells}</tr>")
    app_rows = "".join(
        f'<tr class="{e(r["outcome"])}"><th>{e(r["code"])} {e(r["name"])}</th><td>{_entry(r)}</td></tr>'
        for r in sorted(app_level, key=lambda r: r["code"])
    )
    header = "".join(f"<th>{e(family)}</th>" for family in families)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>FastAPI conformance map: {e(app_spec or "")}</title>
<style>{_STYLE}</style></head>
<body>
<h1>FastAPI conformance map</h1>
<p id="summary">App <code>{e(app_spec or "")}</code>: {len(results)} checks: {e(summary)}.
{len(by_route)} routes, {len(app_level)} app-level checks.</p>
<h2>Routes by rule family</h2>
<table id="routes"><thead><tr><th>route</th>{header}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>App-level rules</h2>
<table id="app"><tbody>{app_rows}</tbody></table>
</body></html>
"""


def write_html(path: Path, results: list[dict[str, Any]], app_spec: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results, app_spec), encoding="utf-8")
