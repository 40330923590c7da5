"""Inline suppressions: ``# noqa: FR201`` on the line a finding points to, as ruff reads them.

A comment ``# noqa: FR201, FR305`` suppresses those codes for the findings that point at its line.
For a function or a class, the ``def``/``class`` line and its decorator lines are one place: the
comment may sit on any of them (a finding on an endpoint points at its ``def``, where a comment on
``@router.get(...)`` reads more naturally). A bare ``# noqa`` suppresses nothing of ours: it says
nothing about which rule the author meant to silence. Codes of other tools in the same comment
(``# noqa: E501, FR201``) are ignored.

Also here: :func:`add_noqa`, which writes those comments for findings (``--fastapi-rules-add-noqa``),
and :func:`unused_directives`, which finds comments that suppressed nothing (ruff's RUF100).
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: A noqa comment naming codes (FR201, E501): ruff's syntax, a colon then codes split by commas or spaces.
_DIRECTIVE = re.compile(r"#\s*noqa\s*:\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*)", re.IGNORECASE)
_OUR_CODE = re.compile(r"^FR[0-9]{3}$")


@dataclass(frozen=True)
class Directive:
    """One ``# noqa:`` comment naming our codes."""

    file: str
    line: int
    codes: frozenset[str]


@dataclass(frozen=True)
class _FileNoqa:
    #: line -> our codes named by a comment on that line.
    comments: dict[int, frozenset[str]]
    #: line -> every line of its ``def``/``class`` and decorators (absent: the line alone).
    groups: dict[int, tuple[int, ...]]


def _parse_codes(text: str) -> frozenset[str]:
    codes: set[str] = set()
    for match in _DIRECTIVE.finditer(text):
        for code in re.split(r"[\s,]+", match.group("codes").strip()):
            if _OUR_CODE.match(code.upper()):
                codes.add(code.upper())
    return frozenset(codes)


@functools.lru_cache(maxsize=1024)
def _read(path: str, mtime: float) -> _FileNoqa | None:
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    comments: dict[int, frozenset[str]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                codes = _parse_codes(token.string)
                if codes:
                    comments[token.start[0]] = comments.get(token.start[0], frozenset()) | codes
    except (tokenize.TokenError, SyntaxError):
        return None
    groups: dict[int, tuple[int, ...]] = {}
    if comments:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                group = tuple(range(first, node.lineno + 1))
                for line in group:
                    groups[line] = group
    return _FileNoqa(comments, groups)


def _file_noqa(path: Path) -> _FileNoqa | None:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return _read(str(path), mtime)


def directive_for(root: Path, file: str, line: int | None, code: str) -> Directive | None:
    """The comment that suppresses ``code`` for a finding at ``file:line`` (relative to ``root``)."""
    if not line:
        return None
    noqa = _file_noqa(root / file)
    if noqa is None or not noqa.comments:
        return None
    for candidate in noqa.groups.get(line, (line,)):
        codes = noqa.comments.get(candidate)
        if codes and code in codes:
            return Directive(file, candidate, codes)
    return None


def directives_in(root: Path, files: Iterable[str]) -> list[Directive]:
    """Every ``# noqa:`` comment naming our codes in ``files`` (relative to ``root``)."""
    found: list[Directive] = []
    for file in sorted(set(files)):
        noqa = _file_noqa(root / file)
        if noqa is not None:
            found.extend(Directive(file, line, codes) for line, codes in sorted(noqa.comments.items()))
    return found


def unused_directives(root: Path, results: list[dict[str, Any]]) -> list[tuple[Directive, list[str]]]:
    """``(comment, codes it names that suppressed nothing)`` in the files the results point at.

    Only codes whose rule ran in this run count, and not where that rule's item for the same
    place was skipped or errored: a comment for a rule that did not judge the place is not known
    to be unused.
    """
    files = {r["location"]["file"] for r in results if r.get("location")}
    for result in results:
        files.update(f["location"]["file"] for f in result["findings"] if f.get("location"))
    used: set[tuple[str, int, str]] = set()
    unjudged: set[tuple[str, int, str]] = set()
    ran: set[str] = set()
    for result in results:
        code = result["code"]
        if result["outcome"] in ("skipped", "error"):
            location = result.get("location")
            if location and location.get("line"):
                noqa = _file_noqa(root / location["file"])
                lines = noqa.groups.get(location["line"], (location["line"],)) if noqa else ()
                unjudged.update((location["file"], line, code) for line in lines)
            continue
        ran.add(code)
        for finding in result["findings"]:
            location = finding.get("location")
            if finding.get("suppressed") and location:
                directive = directive_for(root, location["file"], location["line"], code)
                if directive is not None:
                    used.add((directive.file, directive.line, code))
    unused: list[tuple[Directive, list[str]]] = []
    for directive in directives_in(root, files):
        codes = sorted(
            code
            for code in directive.codes
            if code in ran
            and (directive.file, directive.line, code) not in used
            and (directive.file, directive.line, code) not in unjudged
        )
        if codes:
            unused.append((directive, codes))
    return unused


def add_noqa(root: Path, findings: Iterable[tuple[str, str, int]]) -> int:
    """Write ``# noqa: CODE`` comments for ``(code, file, line)`` findings; returns how many lines
    changed. A line that already has a ``# noqa:`` comment gets the missing codes added to it;
    nothing else in the files changes (line endings and encoding kept)."""
    wanted: dict[str, dict[int, set[str]]] = {}
    for code, file, line in findings:
        if line:
            wanted.setdefault(file, {}).setdefault(line, set()).add(code)
    changed = 0
    for file, lines in sorted(wanted.items()):
        path = root / file
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        source_lines = text.splitlines(keepends=True)
        for number, codes in sorted(lines.items()):
            if number > len(source_lines):
                continue
            original = source_lines[number - 1]
            body = original.rstrip("\r\n")
            ending = original[len(body) :]
            present = _parse_codes(body)
            missing = sorted(codes - present)
            if not missing:
                continue
            match = _DIRECTIVE.search(body)
            if match is not None:
                body = body[: match.end("codes")] + ", " + ", ".join(missing) + body[match.end("codes") :]
            else:
                body = f"{body}  # noqa: {', '.join(missing)}"
            if body.rstrip().endswith("\\"):
                continue  # a comment would end the line continuation
            candidate = [*source_lines]
            candidate[number - 1] = body + ending
            if not _parses("".join(candidate)):
                continue  # the line is inside a string, or the like: leave it
            source_lines = candidate
            changed += 1
        new_text = "".join(source_lines)
        if new_text != text:
            path.write_bytes(new_text.encode("utf-8"))
    _read.cache_clear()
    return changed


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True
