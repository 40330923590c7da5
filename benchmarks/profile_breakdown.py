"""Where a plugin run's wall time goes, from a pyinstrument profile of its main thread.

Record the profile with the project's Python (pyinstrument installed there, not in the plugin):
``pyinstrument -r session -o run.pyisession -m pytest --fastapi-app=MODULE:ATTR -q``, then
``python benchmarks/profile_breakdown.py run.pyisession`` prints the seconds of each part of the run.

pyinstrument samples the main thread only. That is enough for wall time: the lifespan and the probe
requests run on the plugin's event loop thread (``runtime.py``) while the main thread waits for
them inside the plugin's own frames (``AppRuntime.start``, ``ProbeRun.send``), so the wait is charged
to the part that caused it. Each sample goes to the innermost frame of the stack that names a part
below; samples under none of them are pytest's own (its start, and its protocol for every item).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from pyinstrument.session import Session

FACTS = "facts (the app's, its source's; some built lazily by rules)"

#: (part, the module path suffix, the functions of that module, or None for all of them but its
#: module body: importing a module is charged to whoever imports it), checked innermost frame
#: first; the first matching entry of a frame wins, so the more specific comes first.
PARTS: list[tuple[str | None, str, frozenset[str] | None]] = [
    # The hand-over to the loop thread: neutral (part None), the caller's part is the one waiting.
    (None, "pytest_fastapi_rules/probing/runner.py", frozenset({"run"})),
    (None, "pytest_fastapi_rules/runtime.py", frozenset({"run", "_wait"})),
    ("import the app", "pytest_fastapi_rules/loading.py", frozenset({"load_app"})),
    ("lifespan (start and stop)", "pytest_fastapi_rules/runtime.py", frozenset({"start", "stop"})),
    ("probes: seeding", "pytest_fastapi_rules/probing/runner.py", frozenset({"_seed"})),
    ("probes: seeding", "pytest_fastapi_rules/probing/seeding.py", None),
    ("probes: requests (sending)", "pytest_fastapi_rules/probing/runner.py", frozenset({"send"})),
    ("probes: building requests", "pytest_fastapi_rules/probing/requests.py", None),
    ("probes: building requests", "pytest_fastapi_rules/probing/edges.py", None),
    ("probes: isolated database", "pytest_fastapi_rules/probing/placement.py", None),
    ("probes: isolated database", "pytest_fastapi_rules/probing/sqlite_fit.py", None),
    ("probes: isolated database", "pytest_fastapi_rules/probing/database.py", None),
    (FACTS, "pytest_fastapi_rules/facts.py", None),
    (FACTS, "pytest_fastapi_rules/source.py", None),
    (
        "facts (the app's, its source's; some built lazily by rules)",
        "pytest_fastapi_rules/discovery.py",
        None,
    ),
    (
        "facts (the app's, its source's; some built lazily by rules)",
        "pytest_fastapi_rules/session.py",
        frozenset({"facts"}),
    ),
    ("probes: the rest of the run", "pytest_fastapi_rules/probing/runner.py", None),
    ("waiting for the production-mode child", "pytest_fastapi_rules/childproc.py", None),
    ("rules", "pytest_fastapi_rules/items.py", frozenset({"runtest"})),
    ("collection (the rule items)", "pytest_fastapi_rules/items.py", frozenset({"collect"})),
    ("importing the rule modules", "pytest_fastapi_rules/catalog.py", frozenset({"load_rules"})),
    ("reports", "pytest_fastapi_rules/reporting.py", None),
    ("reports", "pytest_fastapi_rules/html_report.py", None),
]
PYTEST = "pytest (its start, and its protocol for every item)"


def part_of(frame: Any) -> str | None:
    """The part a frame names, if any (None for no part, or a neutral frame)."""
    path = (frame.file_path or "").replace("\\", "/")
    name = (frame.function or "").rpartition(".")[2]
    for part, suffix, functions in PARTS:
        if path.endswith(suffix) and (name in functions if functions else name != "<module>"):
            return part
    return None


def breakdown(root: Any) -> Counter[str]:
    """Seconds per part: each frame's own time goes to the innermost part on its stack."""
    seconds: Counter[str] = Counter()
    stack: list[tuple[Any, str]] = [(root, PYTEST)]
    while stack:
        frame, inherited = stack.pop()
        part = part_of(frame) or inherited
        children = frame.children
        seconds[part] += frame.time - sum(child.time for child in children)
        stack.extend((child, part) for child in children)
    return seconds


def main(path: str) -> int:
    session = Session.load(path)
    root = session.root_frame()
    if root is None:
        raise SystemExit(f"{path}: no samples")
    seconds = breakdown(root)
    print(f"{'part':<54} {'s':>7} {'%':>5}")
    for part, value in seconds.most_common():
        print(f"{part:<54} {value:>7.2f} {100 * value / root.time:>5.1f}")
    print(f"{'total (main thread, wall)':<54} {root.time:>7.2f}  (CPU {session.cpu_time:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
