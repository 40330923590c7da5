"""pytest's own cost per item: a project whose N items do nothing, timed like the plugin runs.

The plugin makes one item per rule and route (13,446 for the 1,000-route benchmark app); this
script measures what pytest alone spends on that many items (collection, setup, call, teardown,
reports), so the README can say how much of a full run is pytest's and how much the plugin's.

With ``--workers N`` it also runs the same project under ``pytest -n N`` (alternating with the
plain runs): what pytest-xdist itself costs for that many items on this machine, the yardstick for
the plugin's own ``-n`` runs.

Usage: ``python benchmarks/empty_items.py [--items 176,1382,13446] [--repeat 3] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFTEST = """
import pytest


class EmptyItem(pytest.Item):
    def runtest(self):
        pass

    def reportinfo(self):
        return self.path, None, self.name


class EmptyItems(pytest.File):
    def collect(self):
        for index in range({count}):
            name = f"FR{{index % 58:03d}}[GET /d{{index:05d}}/items/{{{{item_id}}}}]"
            yield EmptyItem.from_parent(self, name=name)


def pytest_collect_file(file_path, parent):
    if file_path.name == "items.txt":
        return EmptyItems.from_parent(parent, path=file_path)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", default="176,1382,13446")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="also time `pytest -n WORKERS`")
    args = parser.parse_args()
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTEST_ADDOPTS", None)
    for count in (int(n) for n in args.items.split(",")):
        with tempfile.TemporaryDirectory(prefix="fastapi-rules-empty-items-") as folder:
            project = Path(folder)
            (project / "conftest.py").write_text(CONFTEST.format(count=count))
            (project / "items.txt").write_text("")
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:fastapi_rules",
                "-q",
            ]
            commands = {"plain": command}
            if args.workers:
                commands[f"-n {args.workers}"] = [*command, "-n", str(args.workers)]
            subprocess.run(command, cwd=project, env=env, capture_output=True)  # warm-up: bytecode caches
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.repeat):
                for name, run in commands.items():
                    started = time.perf_counter()
                    completed = subprocess.run(run, cwd=project, env=env, capture_output=True, text=True)
                    samples[name].append(time.perf_counter() - started)
                    if completed.returncode != 0:
                        sys.stderr.write(completed.stdout[-2000:])
                        return 1
        medians = {name: statistics.median(values) for name, values in samples.items()}
        line = f"{count:>6} empty items: {medians['plain']:.2f} s (median of {args.repeat})"
        if args.workers:
            parallel = medians[f"-n {args.workers}"]
            line += f"; -n {args.workers}: {parallel:.2f} s ({parallel / medians['plain']:.2f}x)"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
