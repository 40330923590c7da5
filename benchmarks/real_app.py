"""Benchmark the plugin on a real project: its floor and the full plugin run, with medians.

A real project is fetched at a pinned commit outside this repository and never committed; it has its
own virtual environment, with the project and this plugin installed (``pip install -e`` this
checkout). In alternating repetitions (one unmeasured run of each first, for the bytecode caches),
this measures the wall time and the peak memory of:

- the floor of any app (``floor.py --app``): import the app, run its lifespan, one GET per GET route
  without path parameters, in process through httpx's ASGITransport; on the app's own
  configuration, since the floor knows nothing of its database or its auth;
- the full plugin run, ``python -m pytest --fastapi-app=APP -p no:randomly -q`` and the extra
  pytest arguments given (e.g. ``-o testpaths=PACKAGE``, so that the project's own test suite is not
  collected and run beside the rule items).

Both run from the project's directory, with the project's Python and the environment variables
given. The JSON (``--json``) records the plugin's commit, the date, the project and its commit, the
app's routes, how the floor's GETs were answered, the plugin run's item outcomes, the medians and
every sample.

Usage: ``python benchmarks/real_app.py PROJECT_DIR --python PYTHON --app MODULE:ATTR
[--env KEY=VALUE ...] [--pytest-args ARGS] [--repeat 3] [--project NAME] [--project-commit SHA]
[--json benchmarks/results-real-app.json]``

Example, mealie-recipes/mealie (its own ``.venv`` with Python 3.12; ``PRODUCTION`` is a required
setting of its, ``DATA_DIR`` keeps its files out of its checkout; its SQLite database is the
default)::

    .venv/bin/python benchmarks/real_app.py /work/beds/mealie --python /work/beds/mealie/.venv/bin/python \\
        --app mealie.app:app --env PRODUCTION=true --env DATA_DIR=/work/beds/mealie-data \\
        --pytest-args="-o testpaths=mealie" --project mealie-recipes/mealie --project-commit b5643a9...
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import benchmark_env, measure  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("project_dir", type=Path, help="the project's checkout (the runs' directory)")
    parser.add_argument("--python", required=True, help="the project's Python, with the plugin installed")
    parser.add_argument("--app", required=True, help="the app, MODULE:ATTR (as --fastapi-app takes it)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    parser.add_argument("--pytest-args", default="", help="more arguments of the plugin run (one string)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--project", help="the project's name (default: its directory's)")
    parser.add_argument("--project-commit", help="the project's commit (default: git's, if a checkout)")
    parser.add_argument("--json", default=str(HERE / "results-real-app.json"))
    args = parser.parse_args()
    project_dir = args.project_dir.resolve()
    given_env = dict(_key_value(item) for item in args.env)
    env = {**benchmark_env(), **given_env}
    pytest_args = shlex.split(args.pytest_args)
    floor = [args.python, str(HERE / "floor.py"), "--app", args.app]
    plugin = [
        args.python,
        "-m",
        "pytest",
        f"--fastapi-app={args.app}",
        "-p",
        "no:randomly",
        "-q",
        *pytest_args,
    ]
    load_before = os.getloadavg()
    # Unmeasured: bytecode caches, the app's first start (a database created, migrations run), and
    # what the JSON says of the app: its routes, the floor's answers, the plugin run's outcomes.
    floor_summary = _floor_summary(floor, project_dir, env)
    plugin_summary = _plugin_summary(plugin, project_dir, env)
    samples: dict[str, list[tuple[float, float]]] = {"floor": [], "plugin": []}
    for _ in range(args.repeat):
        samples["floor"].append(measure(floor, project_dir, env, ok_codes=(0,))[:2])
        samples["plugin"].append(measure(plugin, project_dir, env)[:2])
    floor_median = statistics.median(seconds for seconds, _ in samples["floor"])
    routes = floor_summary["api_routes"]
    rows = []
    for name, values in samples.items():
        median = statistics.median(seconds for seconds, _ in values)
        rows.append(
            {
                "run": name,
                "median_s": round(median, 3),
                "per_route_ms": round(1000 * median / routes, 2) if routes else None,
                "vs_floor": round(median / floor_median, 2),
                "peak_rss_mib": round(max(peak for _, peak in values), 1),
                "samples_s": [round(seconds, 3) for seconds, _ in values],
                "samples_peak_mib": [round(peak, 1) for _, peak in values],
            }
        )
    result: dict[str, Any] = {
        "commit": _git(HERE, "rev-parse", "HEAD"),
        "plugin_changed_since_commit": bool(
            _git(HERE.parent, "status", "--porcelain", "pytest_fastapi_rules")
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "project": args.project or project_dir.name,
        "project_commit": args.project_commit or _git(project_dir, "rev-parse", "HEAD"),
        "app": args.app,
        "env": given_env,
        "commands": {"floor": _shown(floor, HERE), "plugin": _shown(plugin, HERE)},
        "python": _python_version(args.python),
        "routes": {key: floor_summary[key] for key in ("api_routes", "operations", "parameterless_gets")},
        "floor_answers": floor_summary["answers"],
        "plugin_items": plugin_summary,
        "repeat": args.repeat,
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
    }
    print(f"{result['project']} at {result['project_commit']}: {routes} API routes")
    print(f"the floor's GETs answered {result['floor_answers']}; the plugin's items: {plugin_summary}")
    print(f"{'run':<8} {'median s':>9} {'ms/route':>9} {'x floor':>8} {'peak MiB':>9}  samples")
    for row in rows:
        print(
            f"{row['run']:<8} {row['median_s']:>9.3f} {row['per_route_ms']:>9.2f} {row['vs_floor']:>8.2f} "
            f"{row['peak_rss_mib']:>9.1f}  {row['samples_s']}"
        )
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--env {item!r}: expected KEY=VALUE")
    return key, value


def _floor_summary(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run the floor once and read its summary line (``floor: {...}``)."""
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("floor: ")]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"the floor failed ({completed.returncode}): {' '.join(command)}")
    summary: dict[str, Any] = json.loads(lines[-1].removeprefix("floor: "))
    return summary


def _plugin_summary(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, int]:
    """Run the plugin once with a JSON report; return its items' outcomes (``summary``)."""
    with tempfile.TemporaryDirectory(prefix="fastapi-rules-real-app-") as folder:
        report = Path(folder) / "report.json"
        measure([*command, f"--fastapi-rules-json={report}"], cwd, env)
        summary: dict[str, int] = json.loads(report.read_text())["summary"]
    return summary


def _git(folder: Path, *args: str) -> str | None:
    completed = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    return completed.stdout.strip() if completed.returncode == 0 else None


def _python_version(python: str) -> str:
    command = [python, "-c", "import sys; print(sys.version.split()[0])"]
    completed = subprocess.run(command, capture_output=True, text=True)
    return completed.stdout.strip()


def _shown(command: list[str], here: Path) -> str:
    """The command as the README shows it: this folder's scripts by their name in the repository."""
    return shlex.join(part.replace(str(here), "benchmarks") for part in command)


if __name__ == "__main__":
    raise SystemExit(main())
