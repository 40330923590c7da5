"""Production mode, the parent's side: the child started once per session, its document read as facts.

The parent runs the child (:mod:`pytest_fastapi_rules.production.__main__`, see the package)::

    python -m pytest_fastapi_rules.production --app SPEC --app-dir DIR

with ``os.environ`` plus the production variables (``fastapi_rules_production_env``, default
``ENVIRONMENT=production``), and reads the one JSON document it prints into :class:`ProductionFacts`
(FR108, FR503) and, apart from it, FR802's part (:mod:`~pytest_fastapi_rules.production.app_logging`).
Anything the app prints goes to the child's stderr, which the parent shows, labelled as the app's
output, when production mode fails.

The parent runs the child at most once per (session, production environment): the result, or the
failure, is cached on the session's :class:`AppFacts`.

Which value means "production" is the app's business: ``ENVIRONMENT=production`` is only the default.
When the user leaves ``fastapi_rules_production_env`` at that default, :func:`production_env` reads
the app's own ``BaseSettings`` classes: a field named like an environment switch (``ENVIRONMENT``,
``ENV``, ``APP_ENV``...) whose type is a ``Literal`` or an ``Enum`` names the accepted spellings, and
the one that reads "production"/"prod" (any case) is used instead (``ENVIRONMENT=Production``).
Messages say which value was used and where it came from.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import re
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.discovery import DiscoveryError
from pytest_fastapi_rules.facts import AppFacts, MemoKey, is_subclass
from pytest_fastapi_rules.production.app_logging import LoggingFacts, LoggingProbeError, read_logging
from pytest_fastapi_rules.production.launcher import ChildProcess, ChildTimeout
from pytest_fastapi_rules.production.protocol import CHILD_MODULE, DB_URL_ENV, PROTOCOL
from pytest_fastapi_rules.registry import RuleSkipped, Severity
from pytest_fastapi_rules.runtime import AppStartupError

if TYPE_CHECKING:
    from pytest_fastapi_rules.options import RulesOptions

#: The rule whose facts the child also gathers when it is selected (``app_logging``).
LOGGING_RULE = "FR802"
#: How long the child may take to import, start, probe and stop the app, at least.
CHILD_TIMEOUT = 60.0


def declared_docs_paths(app: Any, prefix: str = "", depth: int = 0) -> dict[str, str]:
    """``path -> kind`` of the documentation the app itself declares: its ``docs_url``,
    ``redoc_url`` and ``openapi_url``, and those of FastAPI apps mounted in it, under their mount
    path (dispatch serves its API, docs included, as a sub-app at ``/api/v1``)."""
    found: dict[str, str] = {}
    # FastAPI serves the docs pages only with a schema to show: `openapi_url=""` turns all off.
    if getattr(app, "openapi_url", None):
        for attribute, kind in (("docs_url", "docs"), ("redoc_url", "redoc"), ("openapi_url", "openapi")):
            value = getattr(app, attribute, None)
            if isinstance(value, str) and value:
                found[prefix + value] = kind
    if depth < 3:
        for route in list(getattr(app, "routes", None) or []):
            inner = getattr(route, "app", None)
            path = getattr(route, "path", None)
            if inner is not None and isinstance(path, str) and hasattr(inner, "openapi_url"):
                found.update(declared_docs_paths(inner, prefix + path.rstrip("/"), depth + 1))
    return found


#: How much of the app's output a failure message shows.
OUTPUT_TAIL_LINES = 40
#: How much of it a skip reason carries (skips are one item of a summary, not a report).
SKIP_TAIL_LINES = 12
#: ``fastapi_rules_production_env``'s default (options.py): only this one is adapted to the app.
DEFAULT_PRODUCTION_ENV = {"ENVIRONMENT": "production"}
#: Settings field names (upper case, env prefix removed) that switch the app's environment, most
#: common first: the first one found with a Literal/Enum type decides the production value.
ENVIRONMENT_FIELD_NAMES = (
    "ENVIRONMENT",
    "ENV",
    "APP_ENV",
    "APP_ENVIRONMENT",
    "APPLICATION_ENV",
    "APPLICATION_ENVIRONMENT",
    "ENVIRONMENT_NAME",
    "ENV_NAME",
    "DEPLOY_ENV",
    "DEPLOYMENT_ENV",
    "DEPLOYMENT_ENVIRONMENT",
    "RUNTIME_ENV",
    "STAGE",
    "APP_STAGE",
)
#: What a production member of a Literal/Enum reads as, best first (compared case-insensitively).
_PRODUCTION_SPELLINGS = ("production", "prod", "prd", "live")
_PRODUCTION_PREFIX = re.compile(r"^prod(uction)?([^a-z]|$)", re.IGNORECASE)
#: Test code imported in the same process (the user's suite, conftest): never the app's settings.
_TEST_MODULE = re.compile(r"(^|\.)(tests?|conftest|test_[^.]*|[^.]*_tests?)(\.|$)")


class ProductionModeError(AppStartupError):
    """The app could not be imported or started with the production environment set.

    A subclass of :class:`AppStartupError` so that items report it as "cannot check, the app did not
    start", with the app's own output (the child's stderr) below the message.
    """

    def __init__(self, message: str, output: str | None = None) -> None:
        super().__init__(message)
        self.output = output or ""

    def render(self) -> str:
        if not self.output or not self.output.strip():
            return self.message
        return (
            f"{self.message}\n\nThe app's output in production mode (stderr, last "
            f"{OUTPUT_TAIL_LINES} lines):\n{self.output.rstrip()}"
        )


@dataclass(frozen=True)
class ProductionEngine:
    """An engine the app created with the production environment set."""

    where: str
    #: The engine's ``echo`` flag as SQLAlchemy holds it: False/None (off), True, or "debug".
    echo: bool | str | None
    pool: str


@dataclass(frozen=True)
class ProductionFacts:
    """What the child saw of the app in production mode."""

    env: dict[str, str]
    engines: list[ProductionEngine] = field(default_factory=list)
    #: Status code of ``GET path`` for each documentation path (absent when the request failed).
    docs_status: dict[str, int] = field(default_factory=dict)
    #: ``path -> "ExceptionType: text"`` for requests that raised instead of answering.
    docs_errors: dict[str, str] = field(default_factory=dict)
    #: ``path -> whether the answer was the documentation itself`` (the child's ``looks_like_docs``).
    docs_served: dict[str, bool] = field(default_factory=dict)
    #: Where the values came from when the plugin chose them from the app's settings ('' otherwise).
    origin: str = ""

    @property
    def env_text(self) -> str:
        return describe_env(self.env)

    @property
    def env_label(self) -> str:
        """``ENVIRONMENT=Production (the production value of ...)``: the values and their origin."""
        return f"{self.env_text} ({self.origin})" if self.origin else self.env_text


def describe_env(env: dict[str, str]) -> str:
    """``ENVIRONMENT=production`` (several variables joined by spaces), for messages."""
    return " ".join(f"{name}={value}" for name, value in env.items()) or "(no variables)"


# -- which values mean "production" for this app -----------------------------------------------------


@dataclass(frozen=True)
class ProductionEnv:
    """The production variables to set, and how they were chosen (for messages)."""

    env: dict[str, str]
    #: ``the production value of `app.settings.Settings.ENVIRONMENT` (Literal['dev', 'prod'])``, or ''
    #: when the values are the user's (or the unadapted default).
    origin: str = ""
    #: ``app.settings.Settings.ENVIRONMENT accepts only 'local', 'staging'`` when a settings field
    #: restricts the variable and none of its values reads as production ('' otherwise).
    restriction: str = ""
    #: Whether the user set fastapi_rules_production_env to something other than its default.
    explicit: bool = False
    #: The values a message suggests when the app's settings refuse these (None: ``env`` itself).
    suggested: dict[str, str] | None = None

    @property
    def text(self) -> str:
        shown = describe_env(self.env)
        return f"{shown} ({self.origin})" if self.origin else shown


@dataclass(frozen=True)
class _EnvironmentField:
    """A settings field that reads an environment switch (``ENVIRONMENT``), and its choices."""

    variable: str
    owner: str
    choices: tuple[str, ...]
    type_text: str
    rank: int


def production_env(facts: AppFacts, options: RulesOptions) -> ProductionEnv:
    """The production variables for this app: the user's, or the default adapted to the app.

    An explicit ``fastapi_rules_production_env`` is used as it is (messages say when the app's
    settings do not accept one of its values). The default (``ENVIRONMENT=production``) is a
    guess, so it yields to the app's own declaration: the first settings field named like an
    environment switch whose type is a ``Literal``/``Enum`` decides the spelling (``Production``,
    ``prod``...), and the variable it reads (``APP_ENV``, ``MYAPP_ENVIRONMENT`` with an env prefix)
    is set to it. A plain ``str`` field says nothing about the accepted values: it changes nothing.
    """
    env = dict(options.production_env)
    try:
        fields = sorted(_environment_fields(facts), key=lambda f: (f.rank, f.owner))
    except Exception:  # noqa: BLE001 - odd settings classes must not stop production mode
        fields = []
    if env != DEFAULT_PRODUCTION_ENV:
        for candidate in fields:
            given = {name.upper(): value for name, value in env.items()}.get(candidate.variable.upper())
            if given is not None and given not in candidate.choices:
                value = _production_choice(candidate.choices)
                suggested = None
                if value is not None:
                    suggested = {n: v for n, v in env.items() if n.upper() != candidate.variable.upper()}
                    suggested[candidate.variable] = value
                return ProductionEnv(
                    env=env, explicit=True, restriction=_accepts_only(candidate), suggested=suggested
                )
        return ProductionEnv(env=env, explicit=True)
    chosen = next((f for f in fields if _production_choice(f.choices) is not None), None)
    if chosen is not None:
        value = _production_choice(chosen.choices) or ""
        adapted: dict[str, str] = {}
        if chosen.variable != "ENVIRONMENT" and not any(f.variable == "ENVIRONMENT" for f in fields):
            adapted.update(env)  # nothing in the app restricts ENVIRONMENT: keep the default too
        adapted[chosen.variable] = value
        if adapted == env:
            return ProductionEnv(env=env)
        return ProductionEnv(
            env=adapted,
            origin=f"the production value of `{chosen.owner}`, {chosen.type_text}; "
            "fastapi_rules_production_env overrides it",
        )
    if fields:
        return ProductionEnv(
            env=env, restriction=_accepts_only(fields[0]) + ", none of which reads as production"
        )
    return ProductionEnv(env=env)


def _accepts_only(candidate: _EnvironmentField) -> str:
    accepted = ", ".join(repr(choice) for choice in candidate.choices)
    return f"the app's `{candidate.owner}` accepts only {accepted}"


def _production_choice(choices: tuple[str, ...]) -> str | None:
    """The member of a Literal/Enum that means production: ``production``, ``prod``... any case."""
    folded = {choice.casefold(): choice for choice in reversed(choices)}
    for spelling in _PRODUCTION_SPELLINGS:
        if spelling in folded:
            return folded[spelling]
    prefixed = [choice for choice in choices if _PRODUCTION_PREFIX.match(choice)]
    return prefixed[0] if len(prefixed) == 1 else None


def _settings_classes(facts: AppFacts) -> Iterator[type]:
    """The app's ``pydantic_settings.BaseSettings`` subclasses that are still their module's globals
    (classes of apps imported earlier in the same process are not), in a stable order."""
    try:
        from pydantic_settings import BaseSettings
    except ImportError:
        return
    stack = list(BaseSettings.__subclasses__())
    seen: set[int] = set()
    found: list[type] = []
    while stack:
        cls = stack.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        stack.extend(cls.__subclasses__())
        module_name = str(getattr(cls, "__module__", "") or "")
        module = sys.modules.get(module_name)
        if module is None or vars(module).get(cls.__name__) is not cls:
            continue
        top = module_name.split(".")[0]
        if top in ("pytest_fastapi_rules", "pydantic_settings") or _TEST_MODULE.search(module_name):
            continue
        if facts.is_own_module(module_name) or AppFacts._is_project_module_name(module_name):
            found.append(cls)
    yield from sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def _variables_of(cls: type, name: str, info: Any) -> list[str]:
    """The environment variables pydantic-settings reads a field from (prefix and aliases applied)."""
    config = getattr(cls, "model_config", None) or {}
    prefix = str(config.get("env_prefix", "") or "")
    case_sensitive = bool(config.get("case_sensitive", False))
    names: list[str] = []
    alias = getattr(info, "validation_alias", None) or getattr(info, "alias", None)
    if isinstance(alias, str):
        names.append(alias)
    else:
        for choice in getattr(alias, "choices", None) or []:
            if isinstance(choice, str):
                names.append(choice)
    if not names:
        names.append(prefix + name)
    return names if case_sensitive else [n.upper() for n in names]


def _choices_of(annotation: Any, depth: int = 0) -> tuple[tuple[str, ...], str] | None:
    """The values a Literal/Enum annotation accepts (through Optional/Annotated), and its text."""
    if depth > 6:
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        values = tuple(str(getattr(v, "value", v)) for v in typing.get_args(annotation))
        return values, "Literal[" + ", ".join(repr(v) for v in values) + "]"
    if is_subclass(annotation, enum.Enum):
        values = tuple(str(member.value) for member in annotation)
        return values, f"Enum {annotation.__name__}: " + ", ".join(repr(v) for v in values)
    if origin is typing.Annotated:
        return _choices_of(typing.get_args(annotation)[0], depth + 1)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is not None and len(args) == 1:  # Optional[Literal[...]]
        return _choices_of(args[0], depth + 1)
    return None


def _environment_fields(facts: AppFacts) -> Iterator[_EnvironmentField]:
    """Settings fields that read an environment switch and restrict its values."""
    for cls in _settings_classes(facts):
        config = getattr(cls, "model_config", None) or {}
        prefix = str(config.get("env_prefix", "") or "").upper()
        for name, info in (getattr(cls, "model_fields", None) or {}).items():
            choices = _choices_of(getattr(info, "annotation", None))
            if choices is None:
                continue
            for variable in _variables_of(cls, name, info):
                bare = variable.upper()
                if prefix and bare.startswith(prefix):
                    bare = bare[len(prefix) :]
                if bare not in ENVIRONMENT_FIELD_NAMES and name.upper() not in ENVIRONMENT_FIELD_NAMES:
                    continue
                rank = ENVIRONMENT_FIELD_NAMES.index(bare) if bare in ENVIRONMENT_FIELD_NAMES else 50
                yield _EnvironmentField(
                    variable=variable,
                    owner=f"{cls.__module__}.{cls.__qualname__}.{name}",
                    choices=choices[0],
                    type_text=choices[1],
                    rank=rank,
                )


# -- parent side ------------------------------------------------------------------------------------

_Cached = ProductionFacts | ProductionModeError | DiscoveryError
_CACHE: MemoKey[dict[tuple[Any, ...], _Cached]] = MemoKey("production facts")
_LOGGING_CACHE: MemoKey[dict[tuple[Any, ...], LoggingFacts | LoggingProbeError]] = MemoKey(
    "production logging"
)
#: The children started per session and key, kept once read: FR108/FR503 and FR802 read the same
#: child's document, each its own part.
_CHILDREN: MemoKey[dict[tuple[Any, ...], ChildProcess]] = MemoKey("production children")


def _child_key(facts: AppFacts, options: RulesOptions, env: dict[str, str]) -> tuple[Any, ...]:
    return (
        facts.loaded.spec,
        str(options.app_dir),
        tuple(sorted(env.items())),
        options.engine_paths,
        options.session_factory_paths,
    )


def start_production_child(facts: AppFacts, options: RulesOptions) -> None:
    """Start the production-mode child now, in the background; :func:`production_facts` reads it.

    A rule's ``background`` hook: the child imports and starts the app while the probe run works.
    """
    env = production_env(facts, options).env
    key = _child_key(facts, options, env)
    if key not in facts.memo(_CACHE, dict):
        _child_for(facts, options, env, key)


def _child_for(
    facts: AppFacts, options: RulesOptions, env: dict[str, str], key: tuple[Any, ...]
) -> ChildProcess:
    """The child for ``key``, started now unless it already was."""
    started = facts.memo(_CHILDREN, dict)
    if key not in started:
        started[key] = _start_for(facts, options, env)
    return started[key]


def _start_for(facts: AppFacts, options: RulesOptions, env: dict[str, str]) -> ChildProcess:
    return start_child(
        spec=facts.loaded.spec,
        app_dir=options.app_dir,
        env=env,
        engine_paths=options.engine_paths,
        factory_paths=options.session_factory_paths,
        startup_timeout=options.startup_timeout,
        db_url=options.db_url,
        docs_paths=declared_docs_paths(getattr(facts, "app", None)),
        count_coverage=options.count_coverage,
        logging=options.rule_is_selected(LOGGING_RULE),
    )


def production_facts(facts: AppFacts, options: RulesOptions) -> ProductionFacts:
    """The app's facts in production mode, gathered once per session and environment.

    The variables come from :func:`production_env` (the user's, or the default adapted to the
    app's settings). Raises :class:`ProductionModeError` when the app cannot be imported or started
    in production mode, and :class:`DiscoveryError` when an engine path named in the ini cannot be
    resolved there. Both are cached, so every rule that asks gets the same answer without a second
    child.
    """
    chosen = production_env(facts, options)
    env = chosen.env
    key = _child_key(facts, options, env)
    per_facts = facts.memo(_CACHE, dict)
    if key not in per_facts:
        try:
            child = _child_for(facts, options, env, key)
            per_facts[key] = read_child(
                child, env, origin=chosen.origin, restriction=chosen.restriction, suggested=chosen.suggested
            )
        except (ProductionModeError, DiscoveryError) as exc:
            per_facts[key] = exc
    cached = per_facts[key]
    if isinstance(cached, Exception):
        raise cached
    return cached


def logging_facts(facts: AppFacts, options: RulesOptions) -> LoggingFacts:
    """FR802's facts: the ``"logging"`` part of the production-mode child's document, read once
    per session and environment; raises :class:`LoggingProbeError` with the reason.

    The part is read from the same child as :func:`production_facts`, apart from it: a failure of
    the logging half is FR802's alone, and FR802 is judged even when the production facts are not
    (an engine path that does not resolve in production).
    """
    env = production_env(facts, options).env
    key = _child_key(facts, options, env)
    per_facts = facts.memo(_LOGGING_CACHE, dict)
    if key not in per_facts:
        try:
            per_facts[key] = _read_logging(_child_for(facts, options, env, key), env)
        except LoggingProbeError as exc:
            per_facts[key] = exc
    cached = per_facts[key]
    if isinstance(cached, Exception):
        raise cached
    return cached


def _read_logging(child: ChildProcess, env: dict[str, str]) -> LoggingFacts:
    try:
        completed = child.output()
    except ChildTimeout:
        raise LoggingProbeError(
            f"with the production environment set ({describe_env(env)}), starting the app to look "
            "at its logging did not finish in time"
        ) from None
    document = _parse_document(completed.stdout) or {}
    if "logging" in document:
        return read_logging(document["logging"], env, describe_env(env))
    if importlib.util.find_spec("structlog") is None:
        # Nothing to look at whether or not the app starts in production mode.
        return LoggingFacts(env=env, structlog_installed=False, configured=False, line=None, is_json=False)
    error = document.get("error", f"the child exited with code {completed.returncode}")
    raise LoggingProbeError(
        f"with the production environment set ({describe_env(env)}), the app could not be "
        f"started to look at its logging: {error}",
        _tail(completed.stderr, 30),
    )


def production_facts_for_rule(
    facts: AppFacts, options: RulesOptions, code: str, severity: Severity
) -> ProductionFacts:
    """:func:`production_facts` for rule ``code``, whose failure is reported no worse than the rule.

    When the app cannot start in production mode, nothing was found wrong: an error rule (FR108)
    reports that as an error, since it cannot vouch for what it guards, but a warning rule (FR503)
    must not fail the run over it, so it is skipped with the reason and the app's output.
    The rule's effective severity counts (``fastapi_rules_severity`` may raise it).
    """
    try:
        return production_facts(facts, options)
    except ProductionModeError as exc:
        if options.severity_overrides.get(code, severity) is Severity.WARNING:
            raise RuleSkipped(skip_reason(exc)) from None
        raise


def skip_reason(error: ProductionModeError) -> str:
    """The skip text for a production-mode failure: the reason, then the tail of the app's output."""
    text = f"production mode could not be checked. {error.message}"
    lines = (error.output or "").rstrip().splitlines()[-SKIP_TAIL_LINES:]
    if any(line.strip() for line in lines):
        text += f"\nThe app's output in production mode (stderr, last {len(lines)} lines):\n"
        text += "\n".join(f"    {line}" for line in lines)
    return text


def configure_hint(env: dict[str, str]) -> str:
    """How to tell the plugin the production variables, with the current ones as the example."""
    lines = "\n".join(f"    {name}={value}" for name, value in env.items()) or "    ENVIRONMENT=prod"
    first = next(iter(env.items()), ("ENVIRONMENT", "prod"))
    return (
        "Tell the plugin how your app runs in production with the ini key "
        "fastapi_rules_production_env, one NAME=VALUE line per variable production needs (its "
        "environment name, and e.g. a non-default SECRET_KEY or the URL of a service), e.g. in "
        f"pytest.ini:\n  fastapi_rules_production_env =\n{lines}\n"
        f"or once on the command line: -o fastapi_rules_production_env={first[0]}={first[1]}"
    )


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def start_child(
    *,
    spec: str,
    app_dir: Path,
    env: dict[str, str],
    engine_paths: tuple[str, ...] = (),
    factory_paths: tuple[str, ...] = (),
    startup_timeout: float = 30.0,
    timeout: float | None = None,
    db_url: str | None = None,
    docs_paths: dict[str, str] | None = None,
    count_coverage: bool = False,
    logging: bool = False,
) -> ChildProcess:
    """Start the child process that imports and starts the app with ``env`` set (see the module).

    ``timeout`` bounds the whole child (import, startup, probes, shutdown); by default
    :data:`CHILD_TIMEOUT`, or more when the app's own startup timeout is long. ``count_coverage``:
    let pytest-cov/coverage.py measure the child (``fastapi_rules_count_coverage``). ``logging``:
    also gather FR802's facts in the started app (``app_logging``).
    """
    args = ["--app", spec, "--app-dir", str(app_dir), "--startup-timeout", str(startup_timeout)]
    for path in engine_paths:
        args += ["--engine", path]
    for path in factory_paths:
        args += ["--session-factory", path]
    for path, kind in (docs_paths or {}).items():
        args += ["--docs", f"{kind}={path}"]
    for name in env:
        args += ["--env", name]
    if logging:
        args.append("--logging")
    if timeout is None:
        timeout = max(CHILD_TIMEOUT, startup_timeout * 2 + 10)
    child_env = dict(env)
    if db_url:
        # In the environment, not on the command line: the URL may carry a password.
        child_env[DB_URL_ENV] = db_url
    return ChildProcess(CHILD_MODULE, args, child_env, timeout, count_coverage)


def read_child(
    child: ChildProcess,
    env: dict[str, str],
    *,
    origin: str = "",
    restriction: str = "",
    suggested: dict[str, str] | None = None,
) -> ProductionFacts:
    """Wait for the child started by :func:`start_child` with ``env`` and turn its JSON document,
    or its failure, into facts.

    ``origin`` and ``restriction`` and ``suggested`` come from :class:`ProductionEnv`, for the
    messages.
    """
    env_text = f"{describe_env(env)}, {origin}" if origin else describe_env(env)
    example = suggested or env
    try:
        completed = child.output()
    except ChildTimeout as exc:
        raise ProductionModeError(
            f"With the production environment set ({env_text}), importing and starting the app "
            f"did not finish within {exc.timeout:g} s (the plugin runs it in a separate process to "
            "see production settings). Check that production mode does not wait on a service "
            "that is not reachable from the test environment.\n" + configure_hint(example),
            _tail(exc.stderr),
        ) from None
    stderr_tail = _tail(completed.stderr)
    document = _parse_document(completed.stdout)
    if document is None:
        raise ProductionModeError(
            f"With the production environment set ({env_text}), the process that imports the app "
            f"exited with code {completed.returncode} without a result (the app may have called "
            "sys.exit or os._exit, or crashed the interpreter).\n" + configure_hint(example),
            stderr_tail,
        )
    if not document.get("ok"):
        raise _failure_from(document, env, stderr_tail, env_text, restriction, example)
    return ProductionFacts(
        env=env,
        engines=[
            ProductionEngine(where=str(e["where"]), echo=e.get("echo"), pool=str(e.get("pool", "")))
            for e in document.get("engines", [])
        ],
        docs_status={str(k): int(v) for k, v in document.get("docs_status", {}).items()},
        docs_errors={str(k): str(v) for k, v in document.get("docs_errors", {}).items()},
        docs_served={str(k): bool(v) for k, v in document.get("docs_served", {}).items()},
        origin=origin,
    )


def _parse_document(stdout: str) -> dict[str, Any] | None:
    """The child's JSON document: the whole stdout, or failing that its last JSON line."""
    candidates = [stdout.strip()] + [line.strip() for line in reversed(stdout.splitlines())]
    for candidate in candidates:
        if not candidate.startswith("{"):
            continue
        try:
            document = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("protocol") == PROTOCOL:
            return document
    return None


def _failure_from(
    document: dict[str, Any],
    env: dict[str, str],
    output: str,
    env_text: str | None = None,
    restriction: str = "",
    example: dict[str, str] | None = None,
) -> ProductionModeError | DiscoveryError:
    stage = document.get("stage")
    error = str(document.get("error", "unknown error")).rstrip()
    env_text = env_text or describe_env(env)
    hint = configure_hint(example or env)
    if stage == "discovery":
        return DiscoveryError(f"with the production environment set ({env_text}): {error}")
    known = f" {restriction[0].upper()}{restriction[1:]}." if restriction else ""
    rejected = [name for name in document.get("rejected_env", []) if name in env]
    if rejected:
        named = ", ".join(f"{name}={env[name]}" for name in rejected)
        return ProductionModeError(
            f"With the production environment set ({env_text}), the app's settings reject "
            f"{named}: {error}{known}\n{hint}",
            output,
        )
    what = {
        "lifespan": "the app's lifespan failed at startup",
        "import": "importing the app failed",
    }.get(str(stage), "the process that imports the app failed")
    return ProductionModeError(
        f"With the production environment set ({env_text}), {what}: {error}{known} "
        "Production-mode checks need the app to import and start with its production settings "
        f"in the test environment.\n{hint}",
        output,
    )
