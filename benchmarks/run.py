"""Benchmark the plugin against the floor on generated apps of 10, 100 and 1,000 routes.

For each size, in one run with alternating repetitions, measures the wall time and peak memory of:
the floor (``floor.py``), the full plugin run, the plugin with only app-level rules, and the full run
under ``pytest -n 2``; and, once, the plugin's cost on a project that does not pass ``--fastapi-app``.
Prints a table of medians and writes it as JSON.

With ``--compare DIR`` (a checkout of another commit of the plugin, e.g. ``git archive REF | tar -x
-C DIR``), that commit's full run and its ``-n 2`` run are measured too, in the same alternation,
importing the plugin from ``DIR`` (``PYTHONPATH``): an A/B of two commits against one floor.

Usage: ``python benchmarks/run.py [--sizes 10,100,1000] [--repeat 3] [--json benchmarks/results.json]
[--compare DIR --compare-label NAME]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate_app import generate  # noqa: E402


def _app_level_codes() -> str:
    from pytest_fastapi_rules.catalog import all_rules
    from pytest_fastapi_rules.registry import Basis

    return ",".join(rule.code for rule in all_rules() if rule.basis is Basis.APP)


def measure(
    command: list[str], cwd: Path, env: dict[str, str], ok_codes: tuple[int, ...] = (0, 1)
) -> tuple[float, float, int]:
    """Run ``command``; return (seconds, peak RSS of any child in MiB, exit code).

    Exit code 1 is a plugin run that found violations (the generated app has some); the floor
    must exit 0 (it fails when a request answers 5xx, so a broken app cannot make it look fast).
    """
    wrapper = [
        sys.executable,
        "-c",
        "import resource, subprocess, sys; "
        "code = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)",
        *command,
    ]
    started = time.perf_counter()
    completed = subprocess.run(wrapper, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    peak_kib = int(completed.stderr.strip().splitlines()[-1])
    if completed.returncode not in ok_codes:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"benchmark command failed ({completed.returncode}): {' '.join(command)}")
    return elapsed, peak_kib / 1024, completed.returncode


def benchmark_env() -> dict[str, str]:
    """This process's environment for the measured runs, without what would skew them.

    Bytecode caches are kept (a warm-up run writes them): the steady state of a developer's or a
    cached CI's runs, for the floor and the plugin alike. ``PYTEST_ADDOPTS`` would change the runs.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=str(HERE / "results.json"))
    parser.add_argument("--compare", help="a checkout of another commit of the plugin, measured alongside")
    parser.add_argument("--compare-label", default="before", help="the name of its rows")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fastapi-rules-bench-"))
    try:
        return _benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _benchmark(args: argparse.Namespace, work: Path) -> int:
    """Generate the apps in ``work``, measure, print the table and write the JSON."""
    sizes = [int(s) for s in args.sizes.split(",")]
    python = sys.executable
    env = {**benchmark_env(), "API_KEY": "benchmark-key"}
    pytest_base = [python, "-m", "pytest", "--fastapi-app=app.main:app", "-p", "no:cacheprovider", "-q"]
    configs = {
        "floor": lambda d: [python, str(HERE / "floor.py"), str(d)],
        "plugin": lambda d: pytest_base,
        "plugin app-level": lambda d: [*pytest_base, f"--fastapi-rules-select={_app_level_codes()}"],
        "plugin -n 2": lambda d: [*pytest_base, "-n", "2"],
    }
    #: Per run name, what its environment adds: the other commit's plugin first on the import path.
    extra_env: dict[str, dict[str, str]] = {}
    if args.compare:
        compared = {"PYTHONPATH": str(Path(args.compare).resolve())}
        label = args.compare_label
        # Each of the other commit's runs right after the same run of this one.
        order = ["floor", "plugin", f"{label} plugin", "plugin -n 2", f"{label} plugin -n 2"]
        order.append("plugin app-level")
        configs[f"{label} plugin"] = configs["plugin"]
        configs[f"{label} plugin -n 2"] = configs["plugin -n 2"]
        configs = {name: configs[name] for name in order}
        extra_env = {name: compared for name in configs if name.startswith(f"{label} ")}
    rows = []
    for size in sizes:
        app_dir = generate(work / f"app{size}", size)
        env_size = {**env, "DATABASE_URL": f"sqlite+aiosqlite:///{app_dir / 'configured.db'}"}
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        warm_up = ["floor", "plugin", *(name for name in configs if name in extra_env)][:3]
        for name in warm_up:  # not counted: bytecode caches
            run_env = {**env_size, **extra_env.get(name, {})}
            measure(configs[name](app_dir), app_dir, run_env, ok_codes=(0,) if name == "floor" else (0, 1))
        for _ in range(args.repeat):
            for name, build in configs.items():
                ok_codes = (0,) if name == "floor" else (0, 1)
                run_env = {**env_size, **extra_env.get(name, {})}
                seconds, peak, _code = measure(build(app_dir), app_dir, run_env, ok_codes)
                samples[name].append((seconds, peak))
        floor = statistics.median(s for s, _ in samples["floor"])
        for name, values in samples.items():
            median = statistics.median(s for s, _ in values)
            rows.append(
                {
                    "routes": size,
                    "run": name,
                    "median_s": round(median, 3),
                    "per_route_ms": round(1000 * median / size, 2),
                    "vs_floor": round(median / floor, 2),
                    "peak_rss_mib": round(max(p for _, p in values), 1),
                    "samples_s": [round(s, 3) for s, _ in values],
                }
            )
    overhead = _no_app_overhead(work, env, args.repeat)
    print(f"{'routes':>6}  {'run':<24} {'median s':>9} {'ms/route':>9} {'x floor':>8} {'peak MiB':>9}")
    for row in rows:
        print(
            f"{row['routes']:>6}  {row['run']:<24} {row['median_s']:>9.3f} {row['per_route_ms']:>9.2f} "
            f"{row['vs_floor']:>8.2f} {row['peak_rss_mib']:>9.1f}"
        )
    print(
        f"without --fastapi-app: pytest on one test {overhead['with_plugin_s']:.3f} s with the plugin "
        f"installed, {overhead['without_plugin_s']:.3f} s with -p no:fastapi_rules (median)"
    )
    measured = {
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "compared": args.compare,
        "rows": rows,
        "no_app_overhead": overhead,
    }
    Path(args.json).write_text(json.dumps(measured, indent=2) + "\n")
    return 0


def _commit() -> str:
    """The commit of this checkout (the plugin measured), marked when its tree has changes."""
    git = ["git", "-C", str(HERE)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" with changes" if dirty.stdout.strip() else "") or "unknown"


def _no_app_overhead(work: Path, env: dict[str, str], repeat: int) -> dict[str, float]:
    project = work / "no-app"
    project.mkdir(exist_ok=True)
    (project / "test_one.py").write_text("def test_one():\n    assert True\n")
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    with_plugin, without_plugin = [], []
    for _ in range(max(repeat, 5)):
        with_plugin.append(measure(base, project, env)[0])
        without_plugin.append(measure([*base, "-p", "no:fastapi_rules"], project, env)[0])
    return {
        "with_plugin_s": round(statistics.median(with_plugin), 3),
        "without_plugin_s": round(statistics.median(without_plugin), 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
