"""The source pass alone: build the code index and run every source rule, N times, print the median.

The app is imported once; each run starts from fresh facts (the index is cached on them), so every
run parses every module again. Garbage from the previous run is collected before the clock starts.
Wall time and process CPU time are both printed: on a busy machine the CPU time is the stable one.

Usage: ``python benchmarks/source_pass.py APP_DIR MODULE:ATTR [--runs 10] [--env NAME=VALUE ...]``,
e.g. ``python benchmarks/source_pass.py sample_apps/blog src.main:app --env
SECRET_KEY=0123456789abcdef0123456789abcdef --env DATABASE_URL=sqlite+aiosqlite:///:memory:``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app_dir", type=Path)
    parser.add_argument("app")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    for assignment in args.env:
        name, _, value = assignment.partition("=")
        os.environ[name] = value

    from pytest_fastapi_rules.catalog import all_rules
    from pytest_fastapi_rules.facts import AppFacts
    from pytest_fastapi_rules.loading import load_app
    from pytest_fastapi_rules.options import RulesOptions
    from pytest_fastapi_rules.registry import Basis, CheckContext, RuleSkipped
    from pytest_fastapi_rules.runtime import AppRuntime
    from pytest_fastapi_rules.source.index import source_index

    root = args.app_dir.resolve()
    loaded = load_app(args.app, root)
    options = RulesOptions(app_spec=args.app, app_dir=root)
    rules = [rule for rule in all_rules() if rule.basis is Basis.SOURCE]

    walls: list[float] = []
    cpus: list[float] = []
    modules = findings = 0
    for _ in range(args.runs):
        facts = AppFacts(loaded, root=root, runtime=AppRuntime(loaded.app, timeout=10))
        _ = facts.own_modules, facts.own_classes, facts.mapped_classes  # gathered by the core anyway
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        findings = 0
        for rule in rules:
            with contextlib.suppress(RuleSkipped):
                findings += len(list(rule.check(CheckContext(facts=facts, options=options))))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        modules = len(source_index(facts))
    print(
        f"{args.app}: {modules} modules, {len(rules)} source rules, {findings} findings; "
        f"median of {args.runs}: {statistics.median(walls) * 1000:.1f} ms wall, "
        f"{statistics.median(cpus) * 1000:.1f} ms CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
