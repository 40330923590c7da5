"""Project rules: the files around the code (FR801 stack versions, FR804 Dockerfile).

The project root is the nearest folder at or above the app's package that holds a
``pyproject.toml``, a ``requirements.txt`` or a ``Dockerfile``, without leaving pytest's rootdir.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_fastapi_rules.dockerfile import Instruction, parse_dockerfile
from pytest_fastapi_rules.facts import AppFacts
from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    Location,
    RuleSkipped,
    Scope,
    Severity,
    rule,
)
from pytest_fastapi_rules.source import settings_classes
from pytest_fastapi_rules.sqla import is_any_engine

_PROJECT_MARKERS = ("pyproject.toml", "requirements.txt", "Dockerfile")


def project_root(facts: AppFacts) -> Path | None:
    """The nearest folder at or above the app's top-level package holding a project file.

    Never above pytest's rootdir: a project file of an enclosing checkout is not this project's.
    """
    module = facts.loaded.module
    top = sys.modules.get(module.__name__.split(".")[0], module)
    paths = list(getattr(top, "__path__", None) or [])
    file = getattr(top, "__file__", None)
    start = Path(paths[0]) if paths else (Path(file).parent if file else None)
    if start is None:
        return None
    start = start.resolve()
    root = facts.root.resolve()
    if start != root and root not in start.parents:
        return None
    current = start
    while True:
        if any((current / marker).is_file() for marker in _PROJECT_MARKERS):
            return current
        if current == root:
            return None
        current = current.parent


def _display(facts: AppFacts, path: Path) -> str:
    return facts.relative(path)


# -- FR801: declared dependencies ----------------------------------------------------------------------


@dataclass
class Declared:
    """One runtime dependency the project declares, and where."""

    name: str
    text: str
    file: Path
    line: int
    column: int


@dataclass
class Dependencies:
    declared: list[Declared] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def find(self, name: str) -> Declared | None:
        wanted = canonical(name)
        return next((d for d in self.declared if canonical(d.name) == wanted), None)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_DEV_REQUIREMENTS = re.compile(r"(?i)(dev|test|lint|doc|ci|local)")


def _load_toml(path: Path) -> dict[str, Any] | None:
    try:
        import tomllib as toml_reader
    except ImportError:  # Python 3.10
        try:
            import tomli as toml_reader  # type: ignore[no-redef,import-not-found,unused-ignore]
        except ImportError:
            return None
    try:
        return toml_reader.loads(read_text(path))
    except (OSError, ValueError):
        return None


def read_text(path: Path) -> str:
    """A project file's text whatever its encoding: UTF-8 (with or without a BOM), UTF-16 or UTF-32
    by their BOM (Windows editors save requirements files so), UTF-16 without one (NUL bytes),
    else Latin-1, which reads any bytes. Raises ``OSError`` only."""
    import codecs

    data = path.read_bytes()
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        encoding = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
        return data.decode(encoding, errors="replace")
    return data.decode("latin-1")


def _applies_here(requirement: str) -> bool:
    """Whether a requirement applies to this environment: its marker (``; sys_platform ==
    'win32'``) evaluated by ``packaging``; a line ``packaging`` cannot parse is kept."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return True
    return parsed.marker is None or parsed.marker.evaluate()


def _locate(lines: list[str], name: str, quoted: bool) -> tuple[int, int]:
    """(line, column), 1-based, of a dependency's name in a file: quoted in a TOML array, or
    at the start of a line (a Poetry table key)."""
    prefix = r"[\"']" if quoted else r"^\s*"
    pattern = re.compile(prefix + "(" + re.escape(name) + r")(?![A-Za-z0-9_.-])", re.IGNORECASE)
    for number, line in enumerate(lines, start=1):
        match = pattern.search(line)
        if match:
            return number, match.start(1) + 1
    return 1, 1


def declared_dependencies(root: Path) -> Dependencies:
    """Runtime dependencies: ``[project.dependencies]``, ``[tool.poetry.dependencies]``, and the
    ``requirements*.txt`` / ``requirements/*.txt`` files at the root that are not for development,
    tests, linting or docs. Optional dependencies and dependency groups are not runtime
    dependencies."""
    found = Dependencies()
    pyproject = root / "pyproject.toml"
    data = _load_toml(pyproject) if pyproject.is_file() else None
    if data is not None:
        lines = read_text(pyproject).splitlines()
        found.files.append(pyproject)
        for requirement in (data.get("project") or {}).get("dependencies") or []:
            match = _REQUIREMENT_NAME.match(str(requirement))
            if match and _applies_here(str(requirement)):
                line, column = _locate(lines, match.group(1), quoted=True)
                found.declared.append(Declared(match.group(1), str(requirement), pyproject, line, column))
        poetry = ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
        for name in poetry:
            if name.lower() == "python":
                continue
            line, column = _locate(lines, name, quoted=False)
            found.declared.append(Declared(name, f"{name} = {poetry[name]!r}", pyproject, line, column))
    candidates = sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt"))
    for requirements in candidates:
        if _DEV_REQUIREMENTS.search(requirements.stem.replace("requirements", "")):
            continue
        try:
            lines = read_text(requirements).splitlines()
        except OSError:
            continue
        found.files.append(requirements)
        for number, raw in enumerate(lines, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text or text.startswith("-"):
                continue
            match = _REQUIREMENT_NAME.match(text)
            if match and _applies_here(text):
                column = len(raw) - len(raw.lstrip()) + 1
                found.declared.append(Declared(match.group(1), text, requirements, number, column))
    return found


# -- FR801: installed versions ---------------------------------------------------------------------

#: (distribution, minimum, required even when not installed): the rulebook's stack, read as minimums.
_STACK: tuple[tuple[str, str, bool], ...] = (
    ("fastapi", "0.121.2", True),
    ("pydantic", "2.10", True),
    ("pydantic-settings", "2.6", False),
    ("sqlalchemy", "2.0", False),
    ("httpx", "0.28", False),
    ("structlog", "24.4", True),
)
_POSTGRES_DEPENDENCIES = frozenset({"asyncpg", "psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"})


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _older(installed: str, minimum: str) -> bool | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) < Version(minimum)
    except InvalidVersion:
        return None


def uses_postgresql(facts: AppFacts, dependencies: Dependencies) -> str | None:
    """Why the app counts as using PostgreSQL (a declared driver, a settings URL, an engine), or None."""
    for declared in dependencies.declared:
        if canonical(declared.name) in _POSTGRES_DEPENDENCIES:
            return f"the project declares `{declared.name}`"
    for _, value in facts.own_globals():
        url = _database_url(value)
        if url and url.startswith("postgres"):
            return f"an engine connects to `{url.split('://')[0]}`"
    for cls in settings_classes(facts):
        for name, info in (getattr(cls, "model_fields", {}) or {}).items():
            default = info.default
            if isinstance(default, str) and default.startswith("postgres"):
                return f"settings field `{cls.__name__}.{name}` defaults to PostgreSQL"
    return None


def _database_url(value: Any) -> str | None:
    if is_any_engine(value):
        return str(value.url.drivername)
    return None


@rule(
    code="FR801",
    name="stack-versions",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROJECT,
    section="Mandatory stack",
    summary="Installed fastapi (>=0.121.2), pydantic (>=2.10), pydantic-settings (>=2.6), sqlalchemy "
    "(>=2.0), httpx (>=0.28), structlog, and asyncpg when PostgreSQL is used, meet the rulebook's "
    "versions read as minimums; no `requests` among the runtime dependencies.",
    rationale=(
        "The rulebook's templates rely on these versions (lifespan, Pydantic v2, SQLAlchemy 2.0 "
        "async, structlog); `requests` is a blocking client that has no place in an async app."
    ),
    fix="Upgrade the package (the versions are minimums: newer majors pass); replace `requests` by `httpx`.",
    bad_example='dependencies = ["fastapi>=0.95", "requests>=2.31"]',
    good_example='dependencies = ["fastapi[standard]>=0.121.2", "httpx>=0.28", "structlog>=24.4"]',
)
def check_stack_versions(context: CheckContext) -> Iterator[Finding]:
    """Versions come from ``importlib.metadata`` (what runs), dependencies from the project root's
    ``pyproject.toml`` (PEP 621 or Poetry) and runtime ``requirements*.txt``. pydantic-settings,
    sqlalchemy and httpx are judged only when installed (an app without a database needs no
    SQLAlchemy); fastapi, pydantic and structlog must be installed; asyncpg when the project declares
    a PostgreSQL driver or an engine or settings default points at PostgreSQL."""
    facts = context.facts
    root = project_root(facts)
    dependencies = declared_dependencies(root) if root is not None else Dependencies()

    def where(distribution: str) -> tuple[Location | None, str]:
        declared = dependencies.find(distribution)
        if declared is not None:
            return (
                Location(_display(facts, declared.file), declared.line, declared.column),
                f": `{declared.text}`",
            )
        if dependencies.files:
            return Location(_display(facts, dependencies.files[0]), 1, 1), ""
        return None, ""

    for distribution, minimum, required in _STACK:
        version = installed_version(distribution)
        location, excerpt = where(distribution)
        if version is None:
            if required:
                yield Finding(
                    message=f"`{distribution}` is not installed (the rulebook's stack asks for "
                    f">= {minimum}){excerpt}",
                    location=location,
                    fix=f"Add `{distribution}>={minimum}` to the project's dependencies.",
                )
            continue
        if _older(version, minimum):
            yield Finding(
                message=f"installed `{distribution}` {version} is older than the rulebook's "
                f"{minimum}{excerpt}",
                location=location,
                fix=f"Upgrade to `{distribution}>={minimum}`.",
            )
    postgres = uses_postgresql(facts, dependencies)
    if postgres is not None and installed_version("asyncpg") is None:
        location, excerpt = where("asyncpg")
        yield Finding(
            message=f"PostgreSQL is used ({postgres}) but `asyncpg` is not installed{excerpt}",
            location=location,
            fix="Install `asyncpg>=0.30` and connect with `postgresql+asyncpg://`.",
        )
    requests = dependencies.find("requests")
    if requests is not None:
        yield Finding(
            message=f"`requests` is a runtime dependency of the project: `{requests.text}`",
            location=Location(_display(facts, requests.file), requests.line, requests.column),
            fix="Use `httpx` (its `AsyncClient`) instead of `requests`, and drop the dependency.",
        )


# -- FR804: Dockerfile -------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    alias: str | None
    start: Instruction
    instructions: list[Instruction] = field(default_factory=list)


def _stages(instructions: list[Instruction]) -> tuple[list[Stage], dict[str, str]]:
    stages: list[Stage] = []
    arguments: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.arguments.partition("=")
            arguments[name.strip()] = default.strip().strip("\"'")
            continue
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            base = _substitute(words[0], arguments) if words else ""
            alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=base, alias=alias, start=instruction))
            continue
        if stages:
            stages[-1].instructions.append(instruction)
    return stages, arguments


def _substitute(text: str, arguments: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = arguments.get(name.split(":-")[0])
        if value:
            return value
        if ":-" in name:
            return name.split(":-", 1)[1]
        return match.group(0)

    return re.sub(r"\$\{([^}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


_DEPRECATED_IMAGE = re.compile(r"(^|/)tiangolo/(uvicorn-gunicorn|uvicorn-gunicorn-fastapi|gunicorn-uvicorn)")
_OFFICIAL_PYTHON_SLIM = re.compile(
    r"^(docker\.io/)?(library/)?python:[^@\s]*slim[^@\s]*(@sha256:[0-9a-f]+)?$", re.IGNORECASE
)
_ROOT_USERS = frozenset({"root", "0", "0:0", "root:root"})
_SERVER = re.compile(r"\bfastapi\b[\"',\s\]]*run\b|\buvicorn\b", re.IGNORECASE)


def _chain(stages: list[Stage], stage: Stage) -> list[Stage]:
    """The stage and the earlier stages it is built FROM (by alias), nearest first."""
    chain = [stage]
    by_alias = {s.alias.lower(): s for s in stages if s.alias}
    current = stage
    while current.base.lower() in by_alias and len(chain) < len(stages):
        current = by_alias[current.base.lower()]
        if current in chain:
            break
        chain.append(current)
    return chain


def dockerfile_problems(
    text: str, scripts: dict[str, str] | None = None
) -> list[tuple[Instruction | None, str]]:
    """What FR804 finds in one Dockerfile: (instruction to point at, message) pairs.

    ``scripts`` maps file names to contents for ``CMD ["./start.sh"]``-style entry points. A
    Dockerfile without CMD/ENTRYPOINT gets its command from the orchestrator and is not judged on it.
    """
    instructions = parse_dockerfile(text)
    stages, _ = _stages(instructions)
    if not stages:
        return [(None, "has no FROM instruction")]
    problems: list[tuple[Instruction | None, str]] = []
    for stage in stages:
        if _DEPRECATED_IMAGE.search(stage.base):
            problems.append((stage.start, f"is based on the deprecated image `{stage.base}`"))
    final = stages[-1]
    chain = _chain(stages, final)
    root_base = chain[-1].base
    if len(stages) < 2:
        problems.append((final.start, "is a single-stage build (no separate builder stage)"))
    if not _DEPRECATED_IMAGE.search(root_base) and not _OFFICIAL_PYTHON_SLIM.match(root_base):
        problems.append((final.start, f"runs on `{root_base}`, not an official `python:*-slim` image"))
    runtime = [instruction for stage in reversed(chain) for instruction in stage.instructions]
    users = [i for i in runtime if i.keyword == "USER"]
    if not users:
        problems.append((final.start, "runs as root (no USER instruction in the final stage)"))
    else:
        user = (users[-1].arguments.split() or ["root"])[0].lower()
        if user in _ROOT_USERS:
            problems.append((users[-1], f"runs as root (`USER {users[-1].arguments}`)"))
    checks = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    if not checks or checks[-1].arguments.split()[:1] == ["NONE"]:
        problems.append((final.start, "has no HEALTHCHECK"))
    # No CMD/ENTRYPOINT at all: the orchestrator (compose, Kubernetes) passes the command; not judged.
    commands = [i for i in runtime if i.keyword in ("CMD", "ENTRYPOINT")]
    if (
        commands
        and not any(_starts_server(command, scripts or {}) for command in commands)
        and _judgeable(commands, scripts or {})
    ):
        problems.append((commands[-1], "does not start the app with `fastapi run` (or uvicorn)"))
    return problems


def _command_words(instruction: Instruction) -> list[str]:
    arguments = instruction.arguments
    if arguments.startswith("["):
        try:
            value = json.loads(arguments)
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    try:
        return shlex.split(arguments)
    except ValueError:
        return arguments.split()


def _script_of(instruction: Instruction, scripts: dict[str, str]) -> str | None:
    for word in _command_words(instruction):
        name = Path(word).name
        if name.endswith((".sh", ".bash")) or name in scripts:
            return scripts.get(name, "")
    return None


def _starts_server(instruction: Instruction, scripts: dict[str, str]) -> bool:
    if _SERVER.search(" ".join(_command_words(instruction))):
        return True
    script = _script_of(instruction, scripts)
    return script is not None and _SERVER.search(script) is not None


def _judgeable(commands: list[Instruction], scripts: dict[str, str]) -> bool:
    """A script entry point we cannot read is not judged (it may well run uvicorn)."""
    return not any(_script_of(command, scripts) == "" for command in commands)


_DEV_DOCKERFILE = re.compile(r"(?i)(^|[._-])(dev|devel|development|test|tests|local|debug|ci)([._-]|$)")


def dockerfiles(root: Path) -> list[Path]:
    """``Dockerfile``, ``Dockerfile.<x>`` and ``<x>.Dockerfile`` at the root, development ones left out."""
    found = []
    for path in sorted(root.iterdir()):
        name = path.name
        if not path.is_file():
            continue
        lowered = name.lower()
        if lowered == "dockerfile" or lowered.startswith("dockerfile.") or lowered.endswith(".dockerfile"):
            qualifier = re.sub(r"(?i)dockerfile", "", name)
            if _DEV_DOCKERFILE.search(qualifier):
                continue
            found.append(path)
    return found


def _scripts(root: Path, text: str) -> dict[str, str]:
    """Contents of the shell scripts a Dockerfile names, found at or below the project root."""
    scripts: dict[str, str] = {}
    for name in set(re.findall(r"[\w./-]+\.(?:sh|bash)\b", text)):
        base = Path(name).name
        for candidate in [root / name.lstrip("./"), *root.glob(f"*/{base}"), *root.glob(f"*/*/{base}")]:
            if candidate.is_file():
                try:
                    scripts[base] = candidate.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                break
    return scripts


@rule(
    code="FR804",
    name="dockerfile",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROJECT,
    section="Rule #23",
    summary="Where a Dockerfile exists: not based on `tiangolo/uvicorn-gunicorn-fastapi`, multi-stage, "
    "official `python:*-slim` base, runs as a non-root `USER`, has a `HEALTHCHECK`, starts with "
    "`fastapi run` (or uvicorn).",
    rationale=(
        "The tiangolo image is deprecated; a multi-stage build on the official slim image keeps "
        "compilers out of the runtime image; root in a container is root on a kernel exploit; a "
        "HEALTHCHECK lets the orchestrator restart a hung worker."
    ),
    fix="Follow the rulebook's Dockerfile: builder stage + `FROM python:3.12-slim`, `USER appuser`, "
    '`HEALTHCHECK ...`, `CMD ["fastapi", "run", "src/main.py"]`.',
    bad_example="FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11\nCOPY ./app /app",
    good_example="FROM python:3.12-slim AS builder\n...\nFROM python:3.12-slim\n...\nUSER appuser\n"
    'HEALTHCHECK CMD python -c "..."\nCMD ["fastapi", "run", "src/main.py"]',
)
def check_dockerfile(context: CheckContext) -> Iterator[Finding]:
    """The Dockerfile(s) at the project root (``Dockerfile``, ``Dockerfile.prod``, ``api.Dockerfile``;
    development ones such as ``Dockerfile.dev`` are left out). The final stage is judged through the
    stages it is built FROM; ``ARG`` defaults are substituted in FROM lines; an entry-point script
    is read when it is in the project, and not judged when it is not. Instructions are read as
    BuildKit reads them (`pytest_fastapi_rules.dockerfile`): a ``USER`` or ``HEALTHCHECK`` line
    inside a heredoc body is a file's or a script's text, not an instruction."""
    facts = context.facts
    root = project_root(facts)
    if root is None:
        raise RuleSkipped("no project root (pyproject.toml, requirements.txt or Dockerfile) above the app")
    files = dockerfiles(root)
    if not files:
        raise RuleSkipped(f"no Dockerfile at the project root ({_display(facts, root) or '.'})")
    for path in files:
        try:
            text = read_text(path)
        except OSError as exc:
            yield Finding(
                message=f"`{path.name}` cannot be read: {exc}", location=Location(_display(facts, path))
            )
            continue
        for instruction, problem in dockerfile_problems(text, _scripts(root, text)):
            excerpt = f": `{_short(instruction.text)}`" if instruction is not None else ""
            yield Finding(
                message=f"`{path.name}` {problem}{excerpt}",
                location=Location(
                    _display(facts, path),
                    instruction.line if instruction is not None else 1,
                    instruction.column if instruction is not None else 1,
                ),
            )


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
