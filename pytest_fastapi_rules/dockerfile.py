"""A small Dockerfile reader with BuildKit's rules for what is an instruction (FR804).

FR804 judges a Dockerfile by its instructions (FROM, USER, HEALTHCHECK, CMD...), so the one thing the
reader must get right is which lines are instructions. BuildKit's parser
(``frontend/dockerfile/parser``) decides that by:

- parser directives (``# escape=...``, ``# syntax=...``) at the very top, read until the first
  line that is not one; ``escape`` sets the escape character (a backslash or a backtick);
- line continuations: a line ending in the escape character (trailing blanks allowed) continues on
  the next; comment lines and empty lines inside a continuation are dropped;
- comments: a line whose first non-blank character is ``#``;
- heredocs (``RUN``, ``COPY`` and ``ADD`` only): each word of the instruction of the form
  ``<<NAME``, ``<<-NAME`` (leading tabs stripped from the body and the terminator), ``<<"NAME"`` or
  ``<<'NAME'`` opens a body that runs from the line after the instruction to a line that is exactly
  ``NAME``; several heredocs on one line are read one after the other. Body lines are file contents
  or a script, never instructions.

Why not a library: ``dockerfile-parse`` (2.0.1) does not understand heredocs, which is the very case
that made FR804 pass a Dockerfile whose ``USER`` and ``HEALTHCHECK`` lines were inside a heredoc body;
the ``dockerfile`` package (3.4.0, a Go binding of BuildKit) reads them but bundles an old BuildKit and
ships no arm64/musl wheels, so it would make the plugin uninstallable where it now installs. The
rules above fit in this module, and FR804 needs nothing else (no variable expansion, no build).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Instructions whose arguments may open heredocs (BuildKit's ``heredocDirectives``).
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
#: A heredoc word: an optional file descriptor, ``<<``, an optional ``-``, and the (maybe quoted) name.
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]+)$")


@dataclass
class Instruction:
    """One instruction: its keyword (upper case), arguments with continuations joined, and where
    it starts (1-based line and column)."""

    keyword: str
    arguments: str
    line: int
    column: int
    text: str


@dataclass(frozen=True)
class Heredoc:
    """A heredoc opened on an instruction line: the terminator, and whether tabs are stripped."""

    name: str
    strip_tabs: bool


def escape_character(lines: list[str]) -> str:
    """The ``# escape=`` directive's character, ``\\`` by default.

    Directives are read only at the top of the file, until the first line that is not one (an
    empty line, a comment or an instruction), as BuildKit does.
    """
    escape = "\\"
    for line in lines:
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
    return escape


def _words(text: str, escape: str) -> list[str]:
    """The instruction's words, split on unquoted blanks, quotes and escapes kept (BuildKit's
    lexer splits the same way before it looks for heredocs)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == escape and quote != "'" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if quote:
            if char == quote:
                quote = ""
            current.append(char)
        elif char in "\"'":
            quote = char
            current.append(char)
        elif char in " \t":
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
        index += 1
    if current:
        words.append("".join(current))
    return words


def heredocs_of(arguments: str, escape: str = "\\") -> list[Heredoc]:
    """The heredocs an instruction's arguments open, in order (``<<EOF``, ``<<-EOF``, ``<<"EOF"``)."""
    found: list[Heredoc] = []
    for word in _words(arguments, escape):
        match = _HEREDOC_WORD.match(word)
        if match is None:
            continue
        name = match.group(3)
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
            name = name[1:-1]
        elif name[0] in "\"'":
            continue  # an unbalanced quote: not a heredoc name
        name = name.replace(escape, "")
        if name:
            found.append(Heredoc(name=name, strip_tabs=match.group(2) == "-"))
    return found


def _continues(line: str, escape: str) -> bool:
    return line.rstrip(" \t").endswith(escape)


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile with their first line; continuations joined, comments,
    directives and heredoc bodies left out."""
    lines = text.splitlines()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    escape = escape_character(lines)
    instructions: list[Instruction] = []
    number = 0
    while number < len(lines):
        raw = lines[number]
        start = number + 1
        number += 1
        stripped = raw.strip()
        if not stripped or _is_comment(stripped):
            continue
        parts = [stripped]
        while _continues(parts[-1], escape) and number < len(lines):
            parts[-1] = parts[-1].rstrip(" \t")[: -len(escape)]
            # BuildKit drops comment and empty lines inside a continuation: the instruction goes on
            # with the next line that is neither.
            while number < len(lines) and (not lines[number].strip() or _is_comment(lines[number])):
                number += 1
            if number < len(lines):
                parts.append(lines[number].strip())
                number += 1
        joined = " ".join(part.strip() for part in parts if part.strip())
        keyword, _, arguments = joined.partition(" ")
        keyword = keyword.upper()
        column = len(raw) - len(raw.lstrip()) + 1
        instructions.append(Instruction(keyword, arguments.strip(), start, column, joined))
        if keyword in HEREDOC_INSTRUCTIONS:
            for heredoc in heredocs_of(arguments, escape):
                number = _skip_body(lines, number, heredoc)
    return instructions


def _skip_body(lines: list[str], number: int, heredoc: Heredoc) -> int:
    """The index of the line after ``heredoc``'s terminator (the end of the file when it has none:
    BuildKit refuses such a file, and its lines are not instructions either way)."""
    while number < len(lines):
        line = lines[number]
        number += 1
        if heredoc.strip_tabs:
            line = line.lstrip("\t")
        if line == heredoc.name:
            break
    return number
