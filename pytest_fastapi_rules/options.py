"""Command-line options and ini keys, resolved once into :class:`RulesOptions`.

Every setting can come from the command line or from ``[tool.pytest.ini_options]``; the command line
wins. Where a value came from is kept so the report header can say it, as pytest-django does.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_fastapi_rules.registry import Rule, Severity, all_rules

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


def add_options(parser: pytest.Parser) -> None:
    """Register the plugin's command-line options and ini keys."""
    group = parser.getgroup("fastapi-rules", "FastAPI conformance rules (pytest-fastapi-rules)")
    group.addoption(
        "--fastapi-app",
        dest="fastapi_app",
        metavar="MODULE:ATTR",
        help="The FastAPI app to check, as module:attribute (an app or an app factory). "
        "Without it the plugin adds nothing.",
    )
    group.addoption(
        "--fastapi-app-dir",
        dest="fastapi_app_dir",
        metavar="DIR",
        help="Folder the app module is imported from (default: pytest's rootdir).",
    )
    group.addoption(
        "--fastapi-rules-select",
        dest="fastapi_rules_select",
        metavar="CODES",
        help="Comma-separated rule codes or prefixes to run, e.g. FR2,FR501 (default: all).",
    )
    group.addoption(
        "--fastapi-rules-ignore",
        dest="fastapi_rules_ignore",
        metavar="CODES",
        help="Comma-separated rule codes or prefixes to skip, e.g. FR109,FR7.",
    )
    group.addoption(
        "--fastapi-rules-strict",
        dest="fastapi_rules_strict",
        action="store_true",
        default=None,
        help="Fail the run on warnings too, not only on errors.",
    )
    group.addoption(
        "--fastapi-rules-count-coverage",
        dest="fastapi_rules_count_coverage",
        action="store_true",
        default=None,
        help="Let the plugin's own work (lifespan, probes, requests, child processes) count toward "
        "the coverage of the run (pytest-cov, coverage.py). Default: only importing the app counts.",
    )
    group.addoption(
        "--fastapi-rules-list",
        dest="fastapi_rules_list",
        action="store_true",
        default=False,
        help="Print the rule catalog (code, name, severity, summary) and exit.",
    )
    group.addoption(
        "--fastapi-rules-json",
        dest="fastapi_rules_json",
        metavar="PATH",
        help="Write every rule item's result to PATH as JSON.",
    )
    group.addoption(
        "--fastapi-rules-html",
        dest="fastapi_rules_html",
        metavar="PATH",
        help="Write a conformance map to PATH: one self-contained HTML file, routes by rule family.",
    )
    group.addoption(
        "--fastapi-rules-sarif",
        dest="fastapi_rules_sarif",
        metavar="PATH",
        help="Write the findings to PATH as SARIF 2.1.0 (for GitHub code scanning).",
    )
    group.addoption(
        "--fastapi-rules-github-annotations",
        dest="fastapi_rules_github_annotations",
        action="store_true",
        default=None,
        help="Print each finding as a GitHub Actions workflow command (::error/::warning with file "
        "and line), so it shows on the pull request's diff. On by default when GITHUB_ACTIONS=true.",
    )
    group.addoption(
        "--fastapi-rules-baseline",
        dest="fastapi_rules_baseline",
        metavar="PATH",
        help="Report findings recorded in this baseline file as baselined; fail only on new ones.",
    )
    group.addoption(
        "--fastapi-rules-update-baseline",
        dest="fastapi_rules_update_baseline",
        action="store_true",
        default=False,
        help="Record the findings of this run in the baseline file (and pass).",
    )
    group.addoption(
        "--fastapi-rules-add-noqa",
        dest="fastapi_rules_add_noqa",
        action="store_true",
        default=False,
        help="Write a `# noqa: CODE` comment on the line of each current finding (and pass), "
        "like ruff's --add-noqa; nothing else in the files changes.",
    )
    group.addoption(
        "--fastapi-rules-explain",
        dest="fastapi_rules_explain",
        metavar="CODE",
        help="Print a rule's rationale, what passes, what fails and how to fix it, then exit.",
    )
    group.addoption(
        "--fastapi-rules-db-url",
        dest="fastapi_rules_db_url",
        metavar="URL",
        help="Where the probes create their throwaway database: a server URL (e.g. "
        "postgresql+asyncpg://postgres@localhost:5432/postgres), or 'sqlite' for the embedded "
        "database. Default: beside the app's own PostgreSQL when it is reachable, else SQLite. The "
        "app's own database is never used.",
    )
    group.addoption(
        "--fastapi-rules-startup-timeout",
        dest="fastapi_rules_startup_timeout",
        metavar="SECONDS",
        help="How long the app's lifespan may take to start or stop (default: 30).",
    )
    group.addoption(
        "--fastapi-rules-request-timeout",
        dest="fastapi_rules_request_timeout",
        metavar="SECONDS",
        help="How long one probe request may take, and the app may block the event loop, before the "
        "probes give up on it (default: 30).",
    )
    group.addoption(
        "--fastapi-rules-edge-requests",
        dest="fastapi_rules_edge_requests",
        metavar="N",
        help="How many requests with odd but schema-valid values (unknown ids, empty strings, {} "
        "bodies) FR210 sends to each route at most (default: 3; 0 sends none).",
    )

    parser.addini("fastapi_app", "The FastAPI app to check, as module:attribute.", default=None)
    parser.addini("fastapi_app_dir", "Folder the app module is imported from.", default=None)
    parser.addini("fastapi_rules_select", "Rule codes or prefixes to run.", type="args", default=[])
    parser.addini("fastapi_rules_ignore", "Rule codes or prefixes to skip.", type="args", default=[])
    parser.addini("fastapi_rules_strict", "Fail the run on warnings too.", type="bool", default=False)
    parser.addini(
        "fastapi_rules_count_coverage",
        "Let the plugin's own work count toward the run's coverage (default: only the app's import).",
        type="bool",
        default=False,
    )
    parser.addini(
        "fastapi_rules_github_annotations",
        "Print findings as GitHub Actions workflow commands: true or false (default: true only "
        "when GITHUB_ACTIONS=true).",
        default=None,
    )
    parser.addini(
        "fastapi_rules_per_route_ignores",
        "Lines 'PATTERN = CODES', PATTERN a path glob optionally preceded by methods: "
        "'GET /api/v1/legacy/* = FR201,FR202'.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_severity",
        "Lines 'CODE = error|warning' overriding a rule's default severity.",
        type="linelist",
        default=[],
    )
    parser.addini("fastapi_rules_json", "Write the JSON report to this path.", default=None)
    parser.addini("fastapi_rules_sarif", "Write a SARIF 2.1.0 report to this path.", default=None)
    parser.addini("fastapi_rules_html", "Write the HTML conformance map to this path.", default=None)
    parser.addini("fastapi_rules_baseline", "The baseline file of known findings.", default=None)
    parser.addini(
        "fastapi_rules_engines",
        "module:attribute paths of SQLAlchemy engines, when discovery does not find them.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_session_factories",
        "module:attribute paths of session factories, when discovery does not find them.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_version_prefix",
        "Regular expression every API path must match (FR109); default: the rulebook's /api/v1 (and "
        "later versions); ^(/api)?/v[0-9]+(/|$) also accepts /v1 without /api.",
        default=DEFAULT_VERSION_PREFIX,
    )
    parser.addini(
        "fastapi_rules_infra_paths",
        "Path globs of infrastructure routes (health, metrics) that API rules leave alone.",
        type="linelist",
        default=list(DEFAULT_INFRA_PATHS),
    )
    parser.addini(
        "fastapi_rules_health_path",
        "Path of the liveness route FR107 probes (default: the rulebook's /health).",
        default=DEFAULT_HEALTH_PATH,
    )
    parser.addini(
        "fastapi_rules_readiness_path",
        "Path of the readiness route FR107 probes (default: the rulebook's /health/ready).",
        default=DEFAULT_READINESS_PATH,
    )
    parser.addini(
        "fastapi_rules_error_code_key",
        "Key of the error envelope that holds the machine-readable code (FR106; default: the "
        "rulebook's error).",
        default=DEFAULT_ERROR_CODE_KEY,
    )
    parser.addini(
        "fastapi_rules_public_routes",
        "More public write routes for FR706, as path globs optionally preceded by methods.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_action_verbs",
        "More words that mark a POST path segment as an action, not a create (FR204).",
        type="args",
        default=[],
    )
    parser.addini("fastapi_rules_max_page_size", "Largest allowed page size (FR207).", default="100")
    parser.addini(
        "fastapi_rules_shared_packages",
        "Package names of code shared by every domain, never a domain themselves (FR304, FR305); "
        "default: the rulebook's shared (list core, common... here when they are shared code).",
        type="args",
        default=list(DEFAULT_SHARED_PACKAGES),
    )
    parser.addini(
        "fastapi_rules_domain_layout",
        "Lines 'ROLE = NAME ...' naming the modules (or packages) that fill a role of a domain; roles: "
        "router, service, schemas, repository, models. FR305 accepts the rulebook's name of each role "
        "(router.py, service.py, schemas.py, repository.py, models.py) and the names listed here; the "
        "layer rules (FR302-FR307) also recognise the listed names.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_production_env",
        "Lines NAME=VALUE that put the app in production mode (FR108, FR503).",
        type="linelist",
        default=["ENVIRONMENT=production"],
    )
    parser.addini(
        "fastapi_rules_db_url",
        "Where the probes create their throwaway database: a server URL, or 'sqlite' "
        "(default: beside the app's own PostgreSQL when reachable, else a temporary SQLite file).",
        default=None,
    )
    parser.addini(
        "fastapi_rules_query_budget",
        "Most SQL statements one request may run (FR510).",
        default=str(DEFAULT_QUERY_BUDGET),
    )
    parser.addini(
        "fastapi_rules_query_budgets",
        "Per-route query budgets, lines 'PATTERN = N': 'GET /api/v1/reports/* = 25'.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_base_url",
        "Base URL of probe requests (its host must pass the app's TrustedHostMiddleware).",
        default=DEFAULT_BASE_URL,
    )
    parser.addini(
        "fastapi_rules_auth_headers",
        "Lines 'Name: value' sent with every probe request, instead of the current-user override.",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_seed",
        "module:function that seeds the probe database instead of the generator: "
        "async def seed(session: AsyncSession, size: int) -> None.",
        default=None,
    )
    parser.addini(
        "fastapi_rules_row_factories",
        "Lines TABLE_OR_MODEL = module:attr naming a row factory for a table the generator cannot "
        "fill: a function (index) -> dict or model instance, or a factory class with build().",
        type="linelist",
        default=[],
    )
    parser.addini(
        "fastapi_rules_request_timeout",
        "Seconds one probe request may take, and the app may block the event loop (default 30).",
        default="30",
    )
    parser.addini(
        "fastapi_rules_startup_timeout",
        "Seconds the app's lifespan may take to start or stop.",
        default="30",
    )
    parser.addini(
        "fastapi_rules_edge_requests",
        "Requests with odd but schema-valid values FR210 sends to each route at most (default 3; "
        "0 sends none).",
        default=str(DEFAULT_EDGE_REQUESTS),
    )


class OptionsError(ValueError):
    """A setting that cannot be understood; turned into a pytest usage error."""


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


@dataclass(frozen=True)
class RulesOptions:
    """Every setting of the plugin, resolved from the command line and the ini file."""

    app_spec: str | None
    app_dir: Path
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    strict: bool = False
    #: Print findings as GitHub Actions workflow commands (``::error file=...``).
    github_annotations: bool = False
    #: Let the plugin's lifespan, probes, requests and children count toward the user's coverage.
    count_coverage: bool = False
    per_route_ignores: tuple[RouteIgnore, ...] = ()
    severity_overrides: dict[str, Severity] = field(default_factory=dict)
    json_path: Path | None = None
    sarif_path: Path | None = None
    html_path: Path | None = None
    baseline_path: Path | None = None
    update_baseline: bool = False
    #: Write noqa comments for this run's findings (``--fastapi-rules-add-noqa``).
    add_noqa: bool = False
    engine_paths: tuple[str, ...] = ()
    session_factory_paths: tuple[str, ...] = ()
    version_prefix: re.Pattern[str] = re.compile(DEFAULT_VERSION_PREFIX)
    infra_paths: tuple[str, ...] = DEFAULT_INFRA_PATHS
    #: FR107's liveness and readiness routes (also infrastructure for the API rules).
    health_path: str = DEFAULT_HEALTH_PATH
    readiness_path: str = DEFAULT_READINESS_PATH
    #: FR106: the envelope key of the machine-readable code.
    error_code_key: str = DEFAULT_ERROR_CODE_KEY
    public_routes: tuple[RouteIgnore, ...] = ()
    action_verbs: tuple[str, ...] = ()
    max_page_size: int = 100
    shared_packages: tuple[str, ...] = DEFAULT_SHARED_PACKAGES
    #: ``fastapi_rules_domain_layout``: only the roles the user named, with the names given.
    domain_layout: dict[str, tuple[str, ...]] = field(default_factory=dict)
    production_env: dict[str, str] = field(default_factory=lambda: {"ENVIRONMENT": "production"})
    startup_timeout: float = 30.0
    #: Seconds one probe request may take, and the app may block the event loop.
    request_timeout: float = 30.0
    #: FR210: requests with odd but schema-valid values sent to each route at most (0: none).
    edge_requests: int = DEFAULT_EDGE_REQUESTS
    #: Probes: where the throwaway database lives (a server URL, or "sqlite"); None follows the app.
    db_url: str | None = None
    query_budget: int = DEFAULT_QUERY_BUDGET
    query_budgets: tuple[RouteBudget, ...] = ()
    base_url: str = DEFAULT_BASE_URL
    auth_headers: dict[str, str] = field(default_factory=dict)
    seed_hook: str | None = None
    #: ``{table or mapped class name: module:attr}`` of row factories (ini fastapi_rules_row_factories).
    row_factories: dict[str, str] = field(default_factory=dict)
    #: In how many parts the probe run is split (pytest-xdist workers under the plugin's scheduler).
    probe_shards: int = 1
    #: Where each user-facing setting came from ("command line", "ini", "default").
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


def _split_codes(values: list[str] | str | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    codes: list[str] = []
    for value in values:
        codes.extend(part.strip().upper() for part in value.split(",") if part.strip())
    return tuple(codes)


def _check_codes(codes: tuple[str, ...], setting: str) -> None:
    if not codes:
        return
    known = [rule.code for rule in all_rules()]
    for prefix in codes:
        if not re.fullmatch(r"FR\d{0,3}", prefix) or not any(c.startswith(prefix) for c in known):
            raise OptionsError(
                f"{setting}: {prefix!r} matches no rule. Use rule codes or prefixes such as "
                "FR201 or FR2; `pytest --fastapi-rules-list` shows them all."
            )


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


def _parse_per_route_ignores(lines: list[str]) -> tuple[RouteIgnore, ...]:
    setting = "fastapi_rules_per_route_ignores"
    entries: list[RouteIgnore] = []
    for line in lines:
        if "=" not in line:
            raise OptionsError(
                f"{setting}: {line!r} needs the form 'PATTERN = CODES', e.g. "
                "'GET /api/v1/legacy/* = FR201,FR202'."
            )
        pattern, _, codes_text = line.rpartition("=")
        methods, glob = _parse_route_pattern(pattern, setting, line)
        codes = _split_codes(codes_text)
        if not codes:
            raise OptionsError(f"{setting}: {line!r} names no rule codes after '='.")
        _check_codes(codes, setting)
        entries.append(RouteIgnore(methods, glob, codes))
    return tuple(entries)


def _parse_path(text: object, setting: str) -> str:
    """One route path, as the app declares it (``/readyz``): FR107 compares it with route paths."""
    path = str(text).strip()
    if not path.startswith("/") or any(ch.isspace() for ch in path):
        raise OptionsError(f"{setting}: {text!r} is not a route path; give one such as /health/ready.")
    return path


def _parse_public_routes(lines: list[str]) -> tuple[RouteIgnore, ...]:
    entries = []
    for line in lines:
        methods, glob = _parse_route_pattern(line, "fastapi_rules_public_routes", line)
        entries.append(RouteIgnore(methods, glob, ("",)))
    return tuple(entries)


def _parse_severities(lines: list[str]) -> dict[str, Severity]:
    overrides: dict[str, Severity] = {}
    for line in lines:
        code, sep, level = line.partition("=")
        code = code.strip().upper()
        if not sep:
            raise OptionsError(f"fastapi_rules_severity: {line!r} needs the form 'CODE = error|warning'.")
        _check_codes((code,), "fastapi_rules_severity")
        try:
            severity = Severity.parse(level)
        except ValueError as exc:
            raise OptionsError(f"fastapi_rules_severity: {line!r}: {exc}.") from None
        for rule in all_rules():
            if rule.code.startswith(code):
                overrides[rule.code] = severity
    return overrides


def _parse_domain_layout(lines: list[str]) -> dict[str, tuple[str, ...]]:
    """Only the roles the lines name: the rule modules merge them with their defaults, because what
    a module is recognised as (the layer rules) and what FR305 accepts as conforming differ."""
    layout: dict[str, tuple[str, ...]] = {}
    for line in lines:
        role, sep, names_text = line.partition("=")
        role = role.strip().lower()
        words = names_text.replace(",", " ").split()
        names = tuple(word.removesuffix(".py") for word in words)
        if not sep or role not in DEFAULT_DOMAIN_LAYOUT or not names:
            raise OptionsError(
                f"fastapi_rules_domain_layout: {line!r} needs the form 'ROLE = NAME ...' with ROLE one "
                f"of {', '.join(DEFAULT_DOMAIN_LAYOUT)}, e.g. 'router = router handlers'."
            )
        layout[role] = names
    return layout


def _parse_env(lines: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise OptionsError(f"fastapi_rules_production_env: {line!r} needs the form NAME=VALUE.")
        env[name.strip()] = value.strip()
    return env


def _parse_row_factories(lines: list[str]) -> dict[str, str]:
    factories: dict[str, str] = {}
    for line in lines:
        name, sep, path = line.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or ":" not in path:
            raise OptionsError(
                f"fastapi_rules_row_factories: {line!r} needs the form TABLE_OR_MODEL = module:attr "
                "(e.g. users = tests.factories:user_row)."
            )
        factories[name] = path
    return factories


def _parse_float(text: str, setting: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionsError(f"{setting}: {text!r} is not a number of seconds.") from None
    if value <= 0:
        raise OptionsError(f"{setting}: must be positive, got {text!r}.")
    return value


def _parse_object_paths(lines: list[str], setting: str) -> tuple[str, ...]:
    paths = tuple(line.strip() for line in lines if line.strip())
    for path in paths:
        module_name, sep, attr = path.partition(":")
        if not sep or not module_name.strip() or not attr.strip():
            raise OptionsError(
                f"{setting}: {path!r} needs the form module:attribute (e.g. src.database:engine)."
            )
    return paths


def _parse_whole(text: str, setting: str, minimum: int, what: str) -> int:
    """A whole number of at least ``minimum``; the message names the setting and what it counts."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise OptionsError(f"{setting}: {text!r} is not a whole number of {what}.") from None
    if value < minimum:
        raise OptionsError(f"{setting}: must be at least {minimum}, got {text!r}.")
    return value


def _parse_budget(text: str, setting: str) -> int:
    return _parse_whole(text, setting, 0, "statements")


def _parse_query_budgets(lines: list[str]) -> tuple[RouteBudget, ...]:
    setting = "fastapi_rules_query_budgets"
    entries: list[RouteBudget] = []
    for line in lines:
        if "=" not in line:
            raise OptionsError(
                f"{setting}: {line!r} needs the form 'PATTERN = N', e.g. 'GET /api/v1/reports/* = 25'."
            )
        pattern, _, budget_text = line.rpartition("=")
        methods, glob = _parse_route_pattern(pattern, setting, line)
        entries.append(RouteBudget(methods, glob, _parse_budget(budget_text, setting)))
    return tuple(entries)


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise OptionsError(
                f"fastapi_rules_auth_headers: {line!r} needs the form 'Name: value', e.g. "
                "'Authorization: Bearer <token>'."
            )
        headers[name.strip()] = value.strip()
    return headers


def _parse_base_url(text: str) -> str:
    url = str(text).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise OptionsError(
            f"fastapi_rules_base_url: {text!r} is not an http(s) URL; use e.g. http://localhost."
        )
    return url


def _github_annotations(cli: bool | None, ini: object) -> bool:
    """On with the flag; else as the ini key says; else only inside GitHub Actions."""
    if cli:
        return True
    if ini is not None and str(ini).strip():
        text = str(ini).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise OptionsError(f"fastapi_rules_github_annotations: {ini!r} is not a boolean; use true or false.")
    return os.environ.get("GITHUB_ACTIONS") == "true"


def resolve_options(config: pytest.Config) -> RulesOptions:
    """Read every setting once; raises :class:`OptionsError` on values that make no sense."""
    sources: dict[str, str] = {}

    def pick(option: str, ini: str) -> object:
        value = config.getoption(option)
        if value is not None and value != "":
            sources[ini] = "command line"
            return value
        ini_value = config.getini(ini)
        if ini_value not in (None, "", []):
            sources[ini] = "ini"
            return ini_value
        return None

    if config.getoption("fastapi_app") is not None and not config.getoption("fastapi_app").strip():
        raise OptionsError(
            "--fastapi-app is empty. Give the app as module:attribute, e.g. "
            "--fastapi-app=src.main:app (or a factory such as src.main:create_application)."
        )
    app_spec = pick("fastapi_app", "fastapi_app")
    app_dir_value = pick("fastapi_app_dir", "fastapi_app_dir")
    app_dir = Path(str(app_dir_value)) if app_dir_value else config.rootpath
    if not app_dir.is_absolute():
        base = (
            config.invocation_params.dir
            if sources.get("fastapi_app_dir") == "command line"
            else config.rootpath
        )
        app_dir = (base / app_dir).resolve()

    select = _split_codes(pick("fastapi_rules_select", "fastapi_rules_select"))  # type: ignore[arg-type]
    ignore = _split_codes(pick("fastapi_rules_ignore", "fastapi_rules_ignore"))  # type: ignore[arg-type]
    _check_codes(select, "fastapi_rules_select")
    _check_codes(ignore, "fastapi_rules_ignore")

    strict_cli = config.getoption("fastapi_rules_strict")
    try:
        strict_ini = bool(config.getini("fastapi_rules_strict"))
    except (ValueError, pytest.UsageError) as exc:
        # pytest's own message does not say which key it is about.
        raise OptionsError(f"fastapi_rules_strict: {exc}; use true or false.") from None
    strict = bool(strict_cli) or strict_ini
    try:
        count_coverage_ini = bool(config.getini("fastapi_rules_count_coverage"))
    except (ValueError, pytest.UsageError) as exc:
        raise OptionsError(f"fastapi_rules_count_coverage: {exc}; use true or false.") from None
    count_coverage = bool(config.getoption("fastapi_rules_count_coverage")) or count_coverage_ini
    github_annotations = _github_annotations(
        config.getoption("fastapi_rules_github_annotations"),
        config.getini("fastapi_rules_github_annotations"),
    )

    def output_path(option: str, ini: str) -> Path | None:
        value = pick(option, ini)
        if not value:
            return None
        path = Path(str(value))
        if path.is_absolute():
            return path
        base = config.invocation_params.dir if sources.get(ini) == "command line" else config.rootpath
        return base / path

    json_path = output_path("fastapi_rules_json", "fastapi_rules_json")
    sarif_path = output_path("fastapi_rules_sarif", "fastapi_rules_sarif")
    html_path = output_path("fastapi_rules_html", "fastapi_rules_html")
    baseline_path = output_path("fastapi_rules_baseline", "fastapi_rules_baseline")
    update_baseline = bool(config.getoption("fastapi_rules_update_baseline"))
    if update_baseline and baseline_path is None:
        raise OptionsError(
            "--fastapi-rules-update-baseline needs the file to write: add "
            "--fastapi-rules-baseline=PATH (or the fastapi_rules_baseline ini key)."
        )

    version_prefix_text = config.getini("fastapi_rules_version_prefix")
    try:
        version_prefix = re.compile(version_prefix_text)
    except re.error as exc:
        raise OptionsError(
            f"fastapi_rules_version_prefix: {version_prefix_text!r} is not a valid regular "
            f"expression ({exc})."
        ) from None

    max_page_size = _parse_whole(
        config.getini("fastapi_rules_max_page_size"), "fastapi_rules_max_page_size", 1, "items"
    )

    def seconds(name: str) -> float:
        """A timeout from the command line or the ini, checked the same way for both."""
        cli = config.getoption(name)
        if cli is not None:
            return _parse_float(str(cli), "--" + name.replace("_", "-"))
        return _parse_float(str(config.getini(name)), name)

    startup_timeout = seconds("fastapi_rules_startup_timeout")
    request_timeout = seconds("fastapi_rules_request_timeout")
    edge_cli = config.getoption("fastapi_rules_edge_requests")
    edge_requests = (
        _parse_whole(str(edge_cli), "--fastapi-rules-edge-requests", 0, "requests")
        if edge_cli is not None
        else _parse_whole(
            config.getini("fastapi_rules_edge_requests"), "fastapi_rules_edge_requests", 0, "requests"
        )
    )

    db_url_value = pick("fastapi_rules_db_url", "fastapi_rules_db_url")
    seed_value = config.getini("fastapi_rules_seed")
    return RulesOptions(
        app_spec=str(app_spec).strip() if app_spec is not None else None,
        app_dir=app_dir,
        select=select,
        ignore=ignore,
        strict=strict,
        github_annotations=github_annotations,
        count_coverage=count_coverage,
        db_url=str(db_url_value).strip() if db_url_value else None,
        query_budget=_parse_budget(config.getini("fastapi_rules_query_budget"), "fastapi_rules_query_budget"),
        query_budgets=_parse_query_budgets(config.getini("fastapi_rules_query_budgets")),
        base_url=_parse_base_url(config.getini("fastapi_rules_base_url")),
        auth_headers=_parse_headers(config.getini("fastapi_rules_auth_headers")),
        seed_hook=str(seed_value).strip() if seed_value else None,
        per_route_ignores=_parse_per_route_ignores(config.getini("fastapi_rules_per_route_ignores")),
        severity_overrides=_parse_severities(config.getini("fastapi_rules_severity")),
        json_path=json_path,
        sarif_path=sarif_path,
        html_path=html_path,
        baseline_path=baseline_path,
        update_baseline=update_baseline,
        add_noqa=bool(config.getoption("fastapi_rules_add_noqa")),
        engine_paths=_parse_object_paths(config.getini("fastapi_rules_engines"), "fastapi_rules_engines"),
        session_factory_paths=_parse_object_paths(
            config.getini("fastapi_rules_session_factories"), "fastapi_rules_session_factories"
        ),
        version_prefix=version_prefix,
        infra_paths=tuple(config.getini("fastapi_rules_infra_paths")),
        health_path=_parse_path(config.getini("fastapi_rules_health_path"), "fastapi_rules_health_path"),
        readiness_path=_parse_path(
            config.getini("fastapi_rules_readiness_path"), "fastapi_rules_readiness_path"
        ),
        error_code_key=str(config.getini("fastapi_rules_error_code_key")).strip() or DEFAULT_ERROR_CODE_KEY,
        public_routes=_parse_public_routes(config.getini("fastapi_rules_public_routes")),
        action_verbs=tuple(v.lower() for v in config.getini("fastapi_rules_action_verbs")),
        max_page_size=max_page_size,
        shared_packages=tuple(config.getini("fastapi_rules_shared_packages")),
        domain_layout=_parse_domain_layout(config.getini("fastapi_rules_domain_layout")),
        production_env=_parse_env(config.getini("fastapi_rules_production_env")),
        row_factories=_parse_row_factories(config.getini("fastapi_rules_row_factories")),
        startup_timeout=startup_timeout,
        request_timeout=request_timeout,
        edge_requests=edge_requests,
        probe_shards=_probe_shards(config),
        sources=sources,
    )


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
