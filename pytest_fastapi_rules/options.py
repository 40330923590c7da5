"""Every setting of the plugin, each declared once as a field of :class:`RulesOptions`.

A field's :func:`~pytest_fastapi_rules.settings.setting` declaration says its ini key, its
command-line flag if any, its default, its help and the rules it affects, and names the reader below
that checks a given value; ``settings.py`` makes pytest's options and ini keys, the resolution (the
command line wins over the ini) and the README's table from these declarations. Where each value came
from is kept so the report header can say it, as pytest-django does.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_fastapi_rules.registry import Rule, Severity
from pytest_fastapi_rules.settings import REQUIRED, Given, OptionsError, read_all, register, setting

#: The rulebook's prefix, ``/api/v1`` (main.py template), and its later versions (``/api/v2``).
DEFAULT_VERSION_PREFIX = r"^/api/v[0-9]+(\.[0-9]+)?(/|$)"
#: A version without ``/api`` (``/v1/users``): common, not the rulebook's; FR109 judges it and says
#: how to accept it on purpose through ``fastapi_rules_version_prefix``.
BARE_VERSION_PREFIX = r"^(/api)?/v[0-9]+(\.[0-9]+)?(/|$)"
#: The rulebook's health routes (``/health``, ``/health/ready``), at the root or under a prefix of
#: their own (``/probe/health``), the root page and the favicon: routes that are no API.
DEFAULT_INFRA_PATHS = ("/", "/health", "/health/*", "*/health", "*/health/*", "/favicon.ico")
#: Infrastructure paths common in the wild that the rulebook does not name: the API rules judge
#: them like any route, and a finding on one says how to list it in ``fastapi_rules_infra_paths``.
_CONVENTIONAL_INFRA_NAMES = ("healthz", "livez", "readyz", "live", "ready", "ping", "metrics")
CONVENTIONAL_INFRA_PATHS = tuple(
    glob for name in _CONVENTIONAL_INFRA_NAMES for glob in (f"/{name}", f"*/{name}")
)
#: The rulebook's liveness and readiness routes (main.py template): FR107 probes these, and only
#: these unless ``fastapi_rules_health_path`` / ``fastapi_rules_readiness_path`` name others.
DEFAULT_HEALTH_PATH = "/health"
DEFAULT_READINESS_PATH = "/health/ready"
#: The key of the rulebook's error envelope that holds the machine-readable code
#: (``{"error": "user_not_found", "message": ...}``): FR106's default.
DEFAULT_ERROR_CODE_KEY = "error"
DEFAULT_QUERY_BUDGET = 10
#: FR210: requests with odd but schema-valid values per route, at most (ini fastapi_rules_edge_requests).
DEFAULT_EDGE_REQUESTS = 3
DEFAULT_BASE_URL = "http://localhost"
#: The public write routes RULES.md names for FR706 (besides the token endpoint): only these
#: spellings; ``sign-up``, ``signin``... are judged, their finding saying how to list them.
DEFAULT_PUBLIC_WRITE_SUFFIXES = ("register", "signup", "login")
#: Source rules (FR302-FR307): packages shared by every domain, and the module names of a domain's roles.
#: The rulebook names one package of shared code, ``shared/`` (Rule #1). ``core``/``common`` are
#: common in the wild: a finding about such a package says how to list it as shared on purpose.
DEFAULT_SHARED_PACKAGES = ("shared",)
CONVENTIONAL_SHARED_PACKAGES = ("core", "common")
#: The rulebook's domain layout (Rule #1: ``router.py``, ``service.py``, ``schemas.py``,
#: ``repository.py``, ``models.py``): the only names FR305 accepts for a role unless
#: ``fastapi_rules_domain_layout`` names more on purpose.
RULEBOOK_DOMAIN_LAYOUT: dict[str, tuple[str, ...]] = {
    "router": ("router",),
    "service": ("service",),
    "schemas": ("schemas",),
    "repository": ("repository",),
    "models": ("models",),
}
#: The names by which the layer rules (FR302, FR304, FR307) *recognise* a module's role: wider than
#: the rulebook's, because a `crud.py` is data access whatever the rulebook calls it, and recognising
#: it makes those rules stricter, never more lenient. FR305 does not accept these names as conforming.
DEFAULT_DOMAIN_LAYOUT: dict[str, tuple[str, ...]] = {
    "router": ("router", "routes", "routers", "api", "endpoints", "views"),
    "service": ("service", "services"),
    "schemas": ("schemas", "schema"),
    "repository": ("repository", "repositories", "crud"),
    "models": ("models",),
}


@dataclass(frozen=True)
class RouteIgnore:
    """One ``fastapi_rules_per_route_ignores`` line: methods + path glob -> code prefixes."""

    methods: frozenset[str]
    path_glob: str
    codes: tuple[str, ...]

    def matches(self, method: str, path: str, code: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if not fnmatch.fnmatchcase(path, self.path_glob):
            return False
        return any(code.startswith(prefix) for prefix in self.codes)


@dataclass(frozen=True)
class RouteBudget:
    """One ``fastapi_rules_query_budgets`` line: methods + path glob -> most statements (FR510)."""

    methods: frozenset[str]
    path_glob: str
    budget: int

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return fnmatch.fnmatchcase(path, self.path_glob)


# The readers: each turns a given value into a field's value, or raises an OptionsError that names
# the flag or ini key the user wrote (``given.name``), the problem and the fix, in one paragraph.


def _read_text(given: Given) -> str | None:
    text = str(given.value or "").strip()
    return text or None


def _read_switch(given: Given) -> bool:
    return bool(given.value)


def _read_words(given: Given) -> tuple[str, ...]:
    return tuple(given.value)


def _read_app_dir(given: Given) -> Path:
    if not given.value:
        return given.base
    path = Path(str(given.value))
    return path if path.is_absolute() else (given.base / path).resolve()


def _read_output_path(given: Given) -> Path | None:
    if not given.value:
        return None
    path = Path(str(given.value))
    return path if path.is_absolute() else given.base / path


def _read_github_annotations(given: Given) -> bool:
    """On with the flag; else as the ini key says; else only inside GitHub Actions."""
    text = str(given.value or "").strip().lower()
    if not text:
        return os.environ.get("GITHUB_ACTIONS") == "true"
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise OptionsError(f"{given.name}: {given.value!r} is not a boolean; use true or false.")


def _split_codes(values: list[str] | str | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    codes: list[str] = []
    for value in values:
        codes.extend(part.strip().upper() for part in value.split(",") if part.strip())
    return tuple(codes)


def _check_codes(codes: tuple[str, ...], given: Given) -> None:
    if not codes:
        return
    known = given.rule_codes()
    for prefix in codes:
        if not re.fullmatch(r"FR\d{0,3}", prefix) or not any(c.startswith(prefix) for c in known):
            raise OptionsError(
                f"{given.name}: {prefix!r} matches no rule. Use rule codes or prefixes such as "
                "FR201 or FR2; `pytest --fastapi-rules-list` shows them all."
            )


def _read_codes(given: Given) -> tuple[str, ...]:
    codes = _split_codes(given.value)
    _check_codes(codes, given)
    return codes


def _parse_route_pattern(text: str, setting: str, line: str) -> tuple[frozenset[str], str]:
    words = text.split()
    if not words:
        raise OptionsError(f"{setting}: {line!r} has no path pattern before '='.")
    *methods, glob = words
    if len(methods) == 1 and "," in methods[0]:
        methods = methods[0].split(",")
    methods_upper = frozenset(m.strip().upper() for m in methods if m.strip())
    if not glob.startswith("/"):
        raise OptionsError(
            f"{setting}: {line!r}: the path pattern must start with '/', e.g. 'GET /api/v1/legacy/* = FR201'."
        )
    return methods_upper, glob


def _read_per_route_ignores(given: Given) -> tuple[RouteIgnore, ...]:
    entries: list[RouteIgnore] = []
    for line in given.value:
        if "=" not in line:
            raise OptionsError(
                f"{given.name}: {line!r} needs the form 'PATTERN = CODES', e.g. "
                "'GET /api/v1/legacy/* = FR201,FR202'."
            )
        pattern, _, codes_text = line.rpartition("=")
        methods, glob = _parse_route_pattern(pattern, given.name, line)
        codes = _split_codes(codes_text)
        if not codes:
            raise OptionsError(f"{given.name}: {line!r} names no rule codes after '='.")
        _check_codes(codes, given)
        entries.append(RouteIgnore(methods, glob, codes))
    return tuple(entries)


def _read_route_path(given: Given) -> str:
    """One route path, as the app declares it (``/readyz``): FR107 compares it with route paths."""
    path = str(given.value).strip()
    if not path.startswith("/") or any(ch.isspace() for ch in path):
        raise OptionsError(
            f"{given.name}: {given.value!r} is not a route path; give one such as /health/ready."
        )
    return path


def _read_public_routes(given: Given) -> tuple[RouteIgnore, ...]:
    entries = []
    for line in given.value:
        methods, glob = _parse_route_pattern(line, given.name, line)
        entries.append(RouteIgnore(methods, glob, ("",)))
    return tuple(entries)


def _read_severities(given: Given) -> dict[str, Severity]:
    overrides: dict[str, Severity] = {}
    for line in given.value:
        code, sep, level = line.partition("=")
        code = code.strip().upper()
        if not sep:
            raise OptionsError(f"{given.name}: {line!r} needs the form 'CODE = error|warning'.")
        _check_codes((code,), given)
        try:
            severity = Severity.parse(level)
        except ValueError as exc:
            raise OptionsError(f"{given.name}: {line!r}: {exc}.") from None
        for known in given.rule_codes():
            if known.startswith(code):
                overrides[known] = severity
    return overrides


def _read_domain_layout(given: Given) -> dict[str, tuple[str, ...]]:
    """Only the roles the lines name: the rule modules merge them with their defaults, because what
    a module is recognised as (the layer rules) and what FR305 accepts as conforming differ."""
    layout: dict[str, tuple[str, ...]] = {}
    for line in given.value:
        role, sep, names_text = line.partition("=")
        role = role.strip().lower()
        words = names_text.replace(",", " ").split()
        names = tuple(word.removesuffix(".py") for word in words)
        if not sep or role not in DEFAULT_DOMAIN_LAYOUT or not names:
            raise OptionsError(
                f"{given.name}: {line!r} needs the form 'ROLE = NAME ...' with ROLE one "
                f"of {', '.join(DEFAULT_DOMAIN_LAYOUT)}, e.g. 'router = router handlers'."
            )
        layout[role] = names
    return layout


def _read_env(given: Given) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in given.value:
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise OptionsError(f"{given.name}: {line!r} needs the form NAME=VALUE.")
        env[name.strip()] = value.strip()
    return env


def _read_row_factories(given: Given) -> dict[str, str]:
    factories: dict[str, str] = {}
    for line in given.value:
        name, sep, path = line.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or ":" not in path:
            raise OptionsError(
                f"{given.name}: {line!r} needs the form TABLE_OR_MODEL = module:attr "
                "(e.g. users = tests.factories:user_row)."
            )
        factories[name] = path
    return factories


def _read_seconds(given: Given) -> float:
    text = str(given.value)
    try:
        value = float(text)
    except ValueError:
        raise OptionsError(f"{given.name}: {text!r} is not a number of seconds.") from None
    if value <= 0:
        raise OptionsError(f"{given.name}: must be positive, got {text!r}.")
    return value


def _read_object_paths(given: Given) -> tuple[str, ...]:
    paths = tuple(line.strip() for line in given.value if line.strip())
    for path in paths:
        module_name, sep, attr = path.partition(":")
        if not sep or not module_name.strip() or not attr.strip():
            raise OptionsError(
                f"{given.name}: {path!r} needs the form module:attribute (e.g. src.database:engine)."
            )
    return paths


def _parse_whole(text: object, setting: str, minimum: int, what: str) -> int:
    """A whole number of at least ``minimum``; the message names the setting and what it counts."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise OptionsError(f"{setting}: {text!r} is not a whole number of {what}.") from None
    if value < minimum:
        raise OptionsError(f"{setting}: must be at least {minimum}, got {text!r}.")
    return value


def _whole_number(minimum: int, what: str) -> Callable[[Given], int]:
    """The reader of a whole number of at least ``minimum``, counting ``what``."""
    return lambda given: _parse_whole(given.value, given.name, minimum, what)


def _read_query_budgets(given: Given) -> tuple[RouteBudget, ...]:
    entries: list[RouteBudget] = []
    for line in given.value:
        if "=" not in line:
            raise OptionsError(
                f"{given.name}: {line!r} needs the form 'PATTERN = N', e.g. 'GET /api/v1/reports/* = 25'."
            )
        pattern, _, budget_text = line.rpartition("=")
        methods, glob = _parse_route_pattern(pattern, given.name, line)
        entries.append(RouteBudget(methods, glob, _parse_whole(budget_text, given.name, 0, "statements")))
    return tuple(entries)


def _read_headers(given: Given) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in given.value:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise OptionsError(
                f"{given.name}: {line!r} needs the form 'Name: value', e.g. 'Authorization: Bearer <token>'."
            )
        headers[name.strip()] = value.strip()
    return headers


def _read_base_url(given: Given) -> str:
    url = str(given.value).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise OptionsError(f"{given.name}: {given.value!r} is not an http(s) URL; use e.g. http://localhost.")
    return url


def _read_regex(given: Given) -> re.Pattern[str]:
    try:
        return re.compile(given.value)
    except re.error as exc:
        raise OptionsError(
            f"{given.name}: {given.value!r} is not a valid regular expression ({exc})."
        ) from None


def _read_error_code_key(given: Given) -> str:
    return str(given.value).strip() or DEFAULT_ERROR_CODE_KEY


def _read_action_verbs(given: Given) -> tuple[str, ...]:
    return tuple(verb.lower() for verb in given.value)


def _read_success_statuses(given: Given) -> tuple[int, ...]:
    statuses = []
    for text in given.value:
        try:
            status = int(str(text).strip())
        except ValueError:
            status = 0
        if not 200 <= status <= 299:
            raise OptionsError(
                f"{given.name}: {text!r} is not a success status (a number from 200 to 299); "
                "list them separated by spaces, e.g. `201 202`."
            )
        statuses.append(status)
    return tuple(statuses)


@dataclass(frozen=True)
class RulesOptions:
    """Every setting of the plugin, resolved from the command line and the ini file.

    Each field declared with ``setting(...)`` is one setting, in the order of ``pytest --help`` and
    the README's table; adding a setting is adding a field here (and reading it where it is used).
    """

    # The app
    app_spec: str | None = setting(
        "fastapi_app",
        flag="MODULE:ATTR",
        help="The FastAPI app to check, as `module:attribute` (an app, or a factory called without "
        "arguments). Without it the plugin adds nothing.",
        read=_read_text,
        direct_default=REQUIRED,
    )
    app_dir: Path = setting(
        "fastapi_app_dir",
        flag="DIR",
        help="Folder the app module is imported from; a relative one is taken from where pytest "
        "runs (command line) or from the rootdir (ini).",
        read=_read_app_dir,
        default_text="pytest's rootdir",
        direct_default=REQUIRED,
    )

    # Which rules, how severe
    select: tuple[str, ...] = setting(
        "fastapi_rules_select",
        flag="CODES",
        ini="args",
        default=[],
        help="Rule codes or prefixes to run, e.g. `FR2,FR501` (comma-separated on the command line).",
        read=_read_codes,
        default_text="all rules",
    )
    ignore: tuple[str, ...] = setting(
        "fastapi_rules_ignore",
        flag="CODES",
        ini="args",
        default=[],
        help="Rule codes or prefixes to skip, e.g. `FR109,FR7`.",
        read=_read_codes,
    )
    per_route_ignores: tuple[RouteIgnore, ...] = setting(
        "fastapi_rules_per_route_ignores",
        ini="linelist",
        default=[],
        help="Lines `PATTERN = CODES` (like ruff's per-file-ignores), PATTERN a path glob optionally "
        "preceded by methods: `GET /api/v1/legacy/* = FR201,FR202`. Matching items are deselected.",
        read=_read_per_route_ignores,
    )
    severity_overrides: dict[str, Severity] = setting(
        "fastapi_rules_severity",
        ini="linelist",
        default=[],
        help="Lines `CODE = error|warning` overriding a rule's default severity; a prefix sets a "
        "whole family (`FR5 = warning`).",
        read=_read_severities,
    )
    strict: bool = setting(
        "fastapi_rules_strict",
        flag=True,
        ini="bool",
        default=False,
        help="Fail the run on warnings too, not only on errors.",
        read=_read_switch,
    )
    #: Read by ``plugin.pytest_cmdline_main``, which answers before the options are resolved.
    list_rules: bool = setting(
        "fastapi_rules_list",
        flag=True,
        ini=None,
        default=False,
        help="Print the rule catalog (code, name, severity, summary) and exit.",
        read=_read_switch,
    )
    #: Read by ``plugin.pytest_cmdline_main``, like ``list_rules``.
    explain: str | None = setting(
        "fastapi_rules_explain",
        flag="CODE",
        ini=None,
        help="Print a rule's rationale, what passes, what fails and how to fix it, then exit.",
        read=_read_text,
    )

    # Reports
    json_path: Path | None = setting(
        "fastapi_rules_json",
        flag="PATH",
        help="Write every rule item's result to this path as JSON.",
        read=_read_output_path,
    )
    sarif_path: Path | None = setting(
        "fastapi_rules_sarif",
        flag="PATH",
        help="Write the findings to this path as SARIF 2.1.0 (for GitHub code scanning).",
        read=_read_output_path,
    )
    html_path: Path | None = setting(
        "fastapi_rules_html",
        flag="PATH",
        help="Write a conformance map to this path: one self-contained HTML file, routes by rule family.",
        read=_read_output_path,
    )
    #: Print findings as GitHub Actions workflow commands (``::error file=...``).
    github_annotations: bool = setting(
        "fastapi_rules_github_annotations",
        flag=True,
        help="Print each finding as a GitHub Actions workflow command (`::error`/`::warning` with file "
        "and line), so that it shows on the pull request's diff; the ini key takes `true` or `false`.",
        read=_read_github_annotations,
        default_text="on when GITHUB_ACTIONS=true",
        direct_default=False,
    )

    # The baseline and inline suppressions
    baseline_path: Path | None = setting(
        "fastapi_rules_baseline",
        flag="PATH",
        help="The baseline file of known findings: findings recorded in it are reported as "
        "baselined, and only new ones fail.",
        read=_read_output_path,
    )
    update_baseline: bool = setting(
        "fastapi_rules_update_baseline",
        flag=True,
        ini=None,
        default=False,
        help="Record the findings of this run in the baseline file (and pass).",
        read=_read_switch,
    )
    #: Write noqa comments for this run's findings.
    add_noqa: bool = setting(
        "fastapi_rules_add_noqa",
        flag=True,
        ini=None,
        default=False,
        help="Write a `# noqa: CODE` comment on the line of each current finding (and pass), like "
        "ruff's --add-noqa; nothing else in the files changes.",
        read=_read_switch,
    )

    # The run
    #: Let the plugin's lifespan, probes, requests and children count toward the user's coverage.
    count_coverage: bool = setting(
        "fastapi_rules_count_coverage",
        flag=True,
        ini="bool",
        default=False,
        help="Let the plugin's own work (lifespan, probes, requests, child processes) count toward "
        "the coverage of the run (pytest-cov, coverage.py); otherwise only importing the app counts.",
        read=_read_switch,
    )
    startup_timeout: float = setting(
        "fastapi_rules_startup_timeout",
        flag="SECONDS",
        default="30",
        help="Seconds the app's lifespan may take to start or stop.",
        read=_read_seconds,
    )
    #: Seconds one probe request may take, and the app may block the event loop.
    request_timeout: float = setting(
        "fastapi_rules_request_timeout",
        flag="SECONDS",
        default="30",
        help="Seconds one probe request may take, and the app may block the event loop, before the "
        "probes give up on it.",
        read=_read_seconds,
    )

    # The probes
    #: Where the throwaway database lives (a server URL, or "sqlite"); None follows the app.
    db_url: str | None = setting(
        "fastapi_rules_db_url",
        flag="URL",
        help="Where the probes create their throwaway database: a server URL (e.g. "
        "`postgresql+asyncpg://postgres@localhost:5432/postgres`), or `sqlite` for the embedded "
        "database. The app's own database is never used.",
        read=_read_text,
        default_text="beside the app's own PostgreSQL when it is reachable, else a temporary SQLite file",
    )
    engine_paths: tuple[str, ...] = setting(
        "fastapi_rules_engines",
        ini="linelist",
        default=[],
        help="`module:attribute` paths of SQLAlchemy engines that discovery does not find.",
        read=_read_object_paths,
    )
    session_factory_paths: tuple[str, ...] = setting(
        "fastapi_rules_session_factories",
        ini="linelist",
        default=[],
        help="`module:attribute` paths of session factories that discovery does not find.",
        read=_read_object_paths,
    )
    seed_hook: str | None = setting(
        "fastapi_rules_seed",
        help="`module:function` that seeds the probe database instead of the generator: "
        "`async def seed(session: AsyncSession, size: int) -> None`.",
        read=_read_text,
    )
    #: ``{table or mapped class name: module:attr}`` of row factories.
    row_factories: dict[str, str] = setting(
        "fastapi_rules_row_factories",
        ini="linelist",
        default=[],
        help="Lines `TABLE_OR_MODEL = module:attr` naming a row factory for a table the generator "
        "cannot fill: a function `(index) -> dict` or model instance, or a factory class with `build()`.",
        read=_read_row_factories,
    )
    base_url: str = setting(
        "fastapi_rules_base_url",
        default=DEFAULT_BASE_URL,
        help="Base URL of the probe requests (its host must pass the app's TrustedHostMiddleware).",
        read=_read_base_url,
    )
    auth_headers: dict[str, str] = setting(
        "fastapi_rules_auth_headers",
        ini="linelist",
        default=[],
        help="Lines `Name: value` sent with every probe request, instead of the current-user override.",
        read=_read_headers,
    )
    query_budget: int = setting(
        "fastapi_rules_query_budget",
        default=str(DEFAULT_QUERY_BUDGET),
        help="Most SQL statements one request may run.",
        read=_whole_number(0, "statements"),
        rules=("FR510",),
    )
    query_budgets: tuple[RouteBudget, ...] = setting(
        "fastapi_rules_query_budgets",
        ini="linelist",
        default=[],
        help="Per-route query budgets, lines `PATTERN = N`: `GET /api/v1/reports/* = 25`.",
        read=_read_query_budgets,
        rules=("FR510",),
    )
    #: Requests with odd but schema-valid values sent to each route at most (0: none).
    edge_requests: int = setting(
        "fastapi_rules_edge_requests",
        flag="N",
        default=str(DEFAULT_EDGE_REQUESTS),
        help="How many requests with odd but schema-valid values (unknown ids, empty strings, `{}` "
        "bodies) are sent to each route at most; `0` sends none.",
        read=_whole_number(0, "requests"),
        rules=("FR210",),
    )
    production_env: dict[str, str] = setting(
        "fastapi_rules_production_env",
        ini="linelist",
        default=["ENVIRONMENT=production"],
        help="Lines `NAME=VALUE` that put the app in production mode.",
        read=_read_env,
        rules=("FR108", "FR503", "FR802"),
    )

    # What the rules accept
    version_prefix: re.Pattern[str] = setting(
        "fastapi_rules_version_prefix",
        default=DEFAULT_VERSION_PREFIX,
        help="Regular expression every API path must match. The default accepts the rulebook's "
        "`/api/v1` and later versions; `^(/api)?/v[0-9]+(/|$)` also accepts `/v1` without `/api`.",
        read=_read_regex,
        rules=("FR109",),
    )
    infra_paths: tuple[str, ...] = setting(
        "fastapi_rules_infra_paths",
        ini="linelist",
        default=list(DEFAULT_INFRA_PATHS),
        help="Path globs of infrastructure routes (health, metrics) that the API rules leave alone. "
        "The list replaces the default: list `/healthz`, `/metrics`... here together with it.",
        read=_read_words,
    )
    #: FR107's liveness and readiness routes (also infrastructure for the API rules).
    health_path: str = setting(
        "fastapi_rules_health_path",
        default=DEFAULT_HEALTH_PATH,
        help="Path of the liveness route FR107 probes; the API rules leave it alone.",
        read=_read_route_path,
        rules=("FR107",),
    )
    readiness_path: str = setting(
        "fastapi_rules_readiness_path",
        default=DEFAULT_READINESS_PATH,
        help="Path of the readiness route FR107 probes (`/readyz`... only when named here); the API "
        "rules leave it alone.",
        read=_read_route_path,
        rules=("FR107",),
    )
    #: The envelope key of the machine-readable code.
    error_code_key: str = setting(
        "fastapi_rules_error_code_key",
        default=DEFAULT_ERROR_CODE_KEY,
        help="Key of the error envelope that holds the machine-readable code.",
        read=_read_error_code_key,
        rules=("FR106",),
    )
    public_routes: tuple[RouteIgnore, ...] = setting(
        "fastapi_rules_public_routes",
        ini="linelist",
        default=[],
        help="More public write routes (besides the token endpoint and `register`/`signup`/`login`), as "
        "path globs optionally preceded by methods.",
        read=_read_public_routes,
        rules=("FR706",),
    )
    action_verbs: tuple[str, ...] = setting(
        "fastapi_rules_action_verbs",
        ini="args",
        default=[],
        help="More words that mark a POST path segment as an action, not a create.",
        read=_read_action_verbs,
        rules=("FR204",),
    )
    create_statuses: tuple[int, ...] = setting(
        "fastapi_rules_create_statuses",
        ini="args",
        default=["201"],
        help="Statuses a POST that creates may declare. The rulebook names 201; add 202 where a "
        "create is queued on purpose (`201 202`).",
        read=_read_success_statuses,
        rules=("FR204",),
    )
    action_statuses: tuple[int, ...] = setting(
        "fastapi_rules_action_statuses",
        ini="args",
        default=["200", "202"],
        help="Statuses an action POST (`/{id}/activate`) may declare. The rulebook names 200 and "
        "202; add 204 where actions answer no body on purpose (`200 202 204`).",
        read=_read_success_statuses,
        rules=("FR204",),
    )
    max_page_size: int = setting(
        "fastapi_rules_max_page_size",
        default="100",
        help="Largest allowed page size.",
        read=_whole_number(1, "items"),
        rules=("FR207",),
    )
    shared_packages: tuple[str, ...] = setting(
        "fastapi_rules_shared_packages",
        ini="args",
        default=list(DEFAULT_SHARED_PACKAGES),
        help="Package names of code shared by every domain, never a domain themselves. The rulebook "
        "names one, `shared`; list `core`, `common`... here too when they hold shared code "
        "(`shared core common`).",
        read=_read_words,
        rules=("FR303", "FR304", "FR305"),
    )
    #: Only the roles the user named, with the names given.
    domain_layout: dict[str, tuple[str, ...]] = setting(
        "fastapi_rules_domain_layout",
        ini="linelist",
        default=[],
        help="Lines `ROLE = NAME ...` naming the modules (or packages) that fill a role of a domain; "
        "roles: `router`, `service`, `schemas`, `repository`, `models`. FR305 accepts the rulebook's name of "
        "each role (`router.py`, `service.py`, `schemas.py`, `repository.py`, `models.py`) and the names "
        "listed here (`repository = crud`); the layer rules also recognise the listed names besides their "
        "own (`crud`, `routes`, `services`...).",
        read=_read_domain_layout,
        rules=("FR302", "FR303", "FR304", "FR305", "FR307"),
    )

    # Not settings: what the run says
    #: In how many parts the probe run is split (pytest-xdist workers under the plugin's scheduler).
    probe_shards: int = 1
    #: Where each setting given came from ("command line" or "ini"), by ini key.
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.app_spec)

    def rule_is_selected(self, code: str) -> bool:
        selected = not self.select or any(code.startswith(prefix) for prefix in self.select)
        return selected and not any(code.startswith(prefix) for prefix in self.ignore)

    def effective_rule(self, rule: Rule) -> Rule:
        override = self.severity_overrides.get(rule.code)
        return rule.with_severity(override) if override else rule

    def route_ignored(self, method: str, path: str, code: str) -> bool:
        return any(entry.matches(method, path, code) for entry in self.per_route_ignores)

    def query_budget_for(self, method: str, path: str) -> int:
        """The FR510 budget of a route: the first matching per-route line, else the global one."""
        for entry in self.query_budgets:
            if entry.matches(method, path):
                return entry.budget
        return self.query_budget

    def is_infra_path(self, path: str) -> bool:
        # The health routes a team named on purpose are infrastructure wherever they live.
        if path in (self.health_path, self.readiness_path):
            return True
        return any(fnmatch.fnmatchcase(path, glob) for glob in self.infra_paths)

    def infra_alias_note(self, path: str) -> str | None:
        """For a finding on a route whose path is a common infrastructure path the rulebook does
        not name (``/healthz``, ``/metrics``): how to leave it alone on purpose."""
        if self.is_infra_path(path):
            return None
        if not any(fnmatch.fnmatchcase(path, glob) for glob in CONVENTIONAL_INFRA_PATHS):
            return None
        return (
            f"`{path}` is not the rulebook's health path (`/health`, `/health/ready`); if it is an "
            "infrastructure route, list it in the ini key fastapi_rules_infra_paths, which replaces "
            "the default list: keep `/`, `/health`, `/health/*`, `*/health`, `*/health/*` in it"
        )

    def is_public_route(self, method: str, path: str) -> bool:
        return any(entry.matches(method, path, "") for entry in self.public_routes)


def add_options(parser: pytest.Parser) -> None:
    """Register the plugin's command-line options and ini keys."""
    group = parser.getgroup("fastapi-rules", "FastAPI conformance rules (pytest-fastapi-rules)")
    register(parser, RulesOptions, group)


def resolve_options(config: pytest.Config, catalog: Callable[[], Iterable[Rule]]) -> RulesOptions:
    """Read every setting once; raises :class:`OptionsError` on values that make no sense.

    ``catalog`` gives the registered rules (``catalog.all_rules``), against which rule codes in the
    settings are checked; it is called only when a setting names some, because it imports every rule.
    """
    app_flag = config.getoption("fastapi_app")
    if app_flag is not None and not app_flag.strip():
        # A blank value elsewhere counts as not given; here the plugin would silently do nothing.
        raise OptionsError(
            "--fastapi-app is empty. Give the app as module:attribute, e.g. "
            "--fastapi-app=src.main:app (or a factory such as src.main:create_application)."
        )
    values, sources = read_all(RulesOptions, config, lambda: [rule.code for rule in catalog()])
    if values["update_baseline"] and values["baseline_path"] is None:
        raise OptionsError(
            "--fastapi-rules-update-baseline needs the file to write: add "
            "--fastapi-rules-baseline=PATH (or the fastapi_rules_baseline ini key)."
        )
    return RulesOptions(**values, probe_shards=_probe_shards(config), sources=sources)


#: The ``workerinput`` key by which the xdist controller tells each worker the number of shards.
PROBE_SHARDS_KEY = "fastapi_rules_probe_shards"


def _probe_shards(config: pytest.Config) -> int:
    """One shard per xdist worker when the controller uses the plugin's scheduler (it says so in
    ``workerinput``, see ``plugin.pytest_configure_node``); one, the whole run, otherwise."""
    workerinput = getattr(config, "workerinput", None) or {}
    try:
        return max(int(workerinput.get(PROBE_SHARDS_KEY, 1)), 1)
    except (TypeError, ValueError):
        return 1
