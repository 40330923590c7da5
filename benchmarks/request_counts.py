"""How many requests the probe run sends, by phase, to a generated app (or any app).

Seconds are noisy on a shared machine; request counts are not, and they are what the probes' cost
grows with (a request is most of the probe run, see README.md). Runs the plugin in this process
on the app with every probe request counted where it is sent (``ProbeRun.send``), and prints the
counts per phase, the total and the requests per route.

Usage: ``python benchmarks/request_counts.py --routes 100`` (an app from ``generate_app.py``), or
``python benchmarks/request_counts.py --app-dir sample_apps/blog --app src.main:app --show edge``
(each request of that phase printed with its answer); extra
arguments after ``--`` go to pytest (``-- --fastapi-rules-edge-requests=0``).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def count(
    app_dir: Path, app: str, extra: list[str], show: str | None = None
) -> tuple[collections.Counter[str], int]:
    """``(requests per phase, routes)`` of one plugin run on ``app`` in ``app_dir``; with ``show``,
    each request of that phase is printed with its answer."""
    import pytest

    from pytest_fastapi_rules.probing import runner

    sent: collections.Counter[str] = collections.Counter()
    routes: list[int] = []
    shown: list[str] = []
    original_send = runner.ProbeRun.send
    original_execute = runner.ProbeRun.execute

    def send(self: Any, requests: list[Any], watch_loop: bool = False) -> Any:
        for _request, phase, _target in requests:
            sent[phase] += 1
        exchanges = original_send(self, requests, watch_loop)
        for exchange in exchanges:
            if exchange.phase == show:
                request = exchange.request
                shown.append(f"{request.shown} with {request.description}: {exchange.outcome}")
        return exchanges

    def execute(self: Any) -> Any:
        routes.append(len(self.routes))
        return original_execute(self)

    runner.ProbeRun.send = send  # type: ignore[method-assign]
    runner.ProbeRun.execute = execute  # type: ignore[method-assign]
    previous = Path.cwd()
    os.chdir(app_dir)
    try:
        pytest.main([f"--fastapi-app={app}", "-p", "no:cacheprovider", "-q", "--no-header", "-rN", *extra])
    finally:
        os.chdir(previous)
        runner.ProbeRun.send = original_send  # type: ignore[method-assign]
        runner.ProbeRun.execute = original_execute  # type: ignore[method-assign]
    print("\n".join(shown))
    return sent, routes[0] if routes else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routes", type=int, help="generate an app of this many routes (generate_app.py)")
    parser.add_argument("--app-dir", type=Path, help="an existing app's folder")
    parser.add_argument("--app", default="app.main:app")
    parser.add_argument("--show", metavar="PHASE", help="print each request of this phase and its answer")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fastapi-rules-counts-"))
    try:
        if args.routes:
            from generate_app import generate

            app_dir = generate(work / f"app{args.routes}", args.routes)
            os.environ.setdefault("API_KEY", "benchmark-key")
            os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{app_dir / 'configured.db'}"
        elif args.app_dir:
            app_dir = args.app_dir.resolve()
        else:
            parser.error("give --routes N or --app-dir DIR")
        sent, routes = count(app_dir, args.app, args.pytest_args, args.show)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(sent.values())
    for phase, number in sent.most_common():
        print(f"{phase:<20} {number:>7}")
    print(f"{'total':<20} {total:>7}  ({total / max(routes, 1):.2f} per route, {routes} routes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
