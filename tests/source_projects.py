"""What the tests of the source and project rules share, whichever family a rule belongs to: the
rules such a run selects, writing a project into the sandbox, and where a finding points.

Source and project rules read files the app may never import (a module on disk, pyproject.toml, the
Dockerfile): their tests mutate a copy of the blog, or write a small project, and run those rules
together, so that a change shows in exactly the rule it should.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import OLD_FASTAPI, line_of

#: The source and project rules, every family's: what these tests select together (SELECT_OWN).
OWN_CODES = (
    "FR302",
    "FR303",
    "FR304",
    "FR305",
    "FR307",
    "FR401",
    "FR403",
    "FR602",
    "FR703",
    "FR801",
    "FR804",
)
#: On the old FastAPI line CI also runs, FR801 rightly reports the FastAPI version (see conftest).
CHECKED_CODES = tuple(code for code in OWN_CODES if not (OLD_FASTAPI and code == "FR801"))
SELECT_OWN = "--fastapi-rules-select=" + ",".join(CHECKED_CODES)
#: Variants run every rule but the two that re-import the app in a production child process (docs
#: hidden, JSON logging): ~3 s of each run, and no deviation here touches docs or logging.
ALL_BUT_CHILDREN = "--fastapi-rules-ignore=FR108,FR802"


def column_of(path: Path, pattern: str, text: str) -> int:
    """1-based column of ``text`` on the first line matching ``pattern``."""
    line = path.read_text().splitlines()[line_of(path, pattern) - 1]
    return line.index(text) + 1


def where(finding: dict[str, Any]) -> tuple[str, int, int]:
    """The place a source finding points at: file, line and column."""
    location = finding["location"]
    return location["file"], location["line"], location["column"]


def write(root: Path, files: dict[str, str]) -> None:
    """Write ``{relative path: dedented text}`` under ``root``, creating the folders."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
