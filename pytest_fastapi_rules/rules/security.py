"""FR7xx: security (Rules #21, #22, the config.py template).

Here: the app-level halves, read off the middleware stack and the dependency trees. FR701's runtime
half (a preflight from an unlisted origin) belongs with the probes; FR706 asks the probes only to
confirm a write that looks unprotected (a 401 or 403 to the probes' request clears it).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import typing
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware

from pytest_fastapi_rules.facts import unwrap_callable
from pytest_fastapi_rules.options import DEFAULT_PUBLIC_WRITE_SUFFIXES
from pytest_fastapi_rules.probing.auth import credential_reader
from pytest_fastapi_rules.probing.runner import UNLISTED_ORIGIN, probe_results
from pytest_fastapi_rules.probing.shards import Shard
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
from pytest_fastapi_rules.rules.common import is_api_route, takes_password_form
from pytest_fastapi_rules.rules.probe_support import PROBES_UNAVAILABLE, _probe

if typing.TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant

    from pytest_fastapi_rules.facts import AppFacts, MiddlewareFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions
    from pytest_fastapi_rules.probing.results import Exchange

#: Origins no legitimate allow-list matches (reserved TLDs, RFC 2606): a regex that accepts one of
#: them accepts origins the app never meant to trust.
UNRELATED_ORIGINS = ("https://evil.example", "http://attacker.test", "https://x7q9z.invalid")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NO_CORS = "the app has no CORSMiddleware, so browsers get no cross-origin access"


# -- CORS middleware -------------------------------------------------------------------------------


def cors_middleware(facts: AppFacts) -> list[MiddlewareFacts]:
    """The app's CORSMiddleware entries (subclasses included), in declaration order."""
    return [m for m in facts.middleware if inspect.isclass(m.cls) and issubclass(m.cls, CORSMiddleware)]


def _contains_star(values: Any) -> bool:
    """``"*" in values``, as Starlette itself tests it (a plain string counts too)."""
    try:
        return "*" in values
    except TypeError:
        return False


def _regex_matches_unrelated(pattern: Any) -> str | None:
    """The first unrelated origin ``pattern`` accepts (Starlette uses ``fullmatch``), if any."""
    if not isinstance(pattern, str):
        return None
    try:
        compiled = re.compile(pattern)
    except re.error:
        return None
    return next((origin for origin in UNRELATED_ORIGINS if compiled.fullmatch(origin)), None)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _same_value(declared: Any, actual: Any) -> bool:
    if isinstance(declared, list | tuple | set) and isinstance(actual, list | tuple | set):
        return list(declared) == list(actual)
    return bool(declared == actual)


def _call_score(call: ast.Call, options: dict[str, Any], key: str) -> int:
    """How well a middleware call's keywords explain ``options`` (-1: it cannot be this entry)."""
    names = {keyword.arg for keyword in call.keywords}
    if None not in names and set(options) - names:  # no **splat, and an option it never sets
        return -1
    score = 1
    for keyword in call.keywords:
        if keyword.arg is None:
            continue
        if keyword.arg not in options:
            return -1
        ok, value = _literal(keyword.value)
        if not ok:
            continue
        if not _same_value(value, options[keyword.arg]):
            return -1
        score += 10 if keyword.arg == key else 1
    return score


def middleware_location(facts: AppFacts, middleware: MiddlewareFacts, key: str) -> Location | None:
    """Where the app adds ``middleware``: the ``add_middleware(Cls, ...)``/``Middleware(Cls, ...)``
    call in the app's own modules whose literal options agree with the actual ones.

    Options are often computed (``settings.BACKEND_CORS_ORIGINS``), so calls are compared on their
    literal keywords only; a call that spells out the offending option ``key`` literally wins.
    """
    class_name = getattr(middleware.cls, "__name__", None)
    best: tuple[int, Location] | None = None
    for module in facts.own_modules:
        file = getattr(module, "__file__", None)
        if not class_name or not file or not str(file).endswith(".py"):
            continue
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            func_name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            first_name = first.attr if isinstance(first, ast.Attribute) else getattr(first, "id", "")
            if func_name not in ("add_middleware", "Middleware") or first_name != class_name:
                continue
            score = _call_score(node, middleware.options, key)
            if score > 0 and (best is None or score > best[0]):
                best = (score, Location(file=facts.relative(file), line=node.lineno))
    return best[1] if best else None


def _runtime_cors(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR701")
    for exchange in results.in_phase("preflight"):
        allowed = exchange.headers.get("access-control-allow-origin", "")
        if allowed in ("*", UNLISTED_ORIGIN):
            yield Finding(
                message=f"a CORS preflight from the unlisted origin {UNLISTED_ORIGIN} is allowed "
                f"(Access-Control-Allow-Origin: {allowed})",
            )


@rule(
    code="FR701",
    name="cors-no-wildcard-credentials",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP_PROBE,
    section="Rule #22",
    summary=(
        "No CORSMiddleware combines `allow_credentials=True` with `allow_origins=['*']` or with an "
        "`allow_origin_regex` that accepts an unrelated origin such as https://evil.example."
    ),
    rationale=(
        "Browsers refuse `Access-Control-Allow-Origin: *` on credentialed requests, so Starlette, "
        "when credentials are allowed, answers with the request's own `Origin` instead: every "
        "site on the internet may then call the API with the user's cookies and read the answer. "
        "A match-all origin regex does the same."
    ),
    fix="List the trusted origins explicitly (`allow_origins=settings.BACKEND_CORS_ORIGINS`), or "
    "drop `allow_credentials=True` for a truly public API.",
    bad_example='app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True)',
    good_example="app.add_middleware(\n    CORSMiddleware,\n"
    "    allow_origins=settings.BACKEND_CORS_ORIGINS,\n    allow_credentials=True,\n)",
    runtime=_runtime_cors,
    unavailable=PROBES_UNAVAILABLE,
    phases=("preflight",),
)
def check_cors_no_wildcard_credentials(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    entries = cors_middleware(facts)
    if not entries:
        raise RuleSkipped(_NO_CORS)
    for entry in entries:
        options = entry.options
        if not options.get("allow_credentials"):
            continue
        if _contains_star(options.get("allow_origins", ())):
            yield Finding(
                message=(
                    f"{entry.name} combines allow_origins=['*'] with allow_credentials=True: "
                    "Starlette echoes any request Origin with credentials allowed"
                ),
                location=middleware_location(facts, entry, "allow_origins"),
            )
        pattern = options.get("allow_origin_regex")
        origin = _regex_matches_unrelated(pattern)
        if origin is not None:
            yield Finding(
                message=(
                    f"{entry.name} allow_origin_regex {pattern!r} accepts {origin} while "
                    "allow_credentials=True"
                ),
                location=middleware_location(facts, entry, "allow_origin_regex"),
            )


@rule(
    code="FR702",
    name="cors-explicit",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #22",
    summary=(
        "CORS lists its methods explicitly (no `'*'` in `allow_methods`) and caches preflights: "
        "Starlette's default `max_age` is 600 s, the rulebook's own value, so only an explicit "
        "`max_age <= 0` is a finding."
    ),
    rationale=(
        "`allow_methods=['*']` lets browsers send every method, including ones the API never "
        "meant to expose cross-origin; the rulebook lists GET, POST, PUT, PATCH, DELETE, OPTIONS. "
        "A `max_age` of 0 or less makes browsers send a preflight before every request."
    ),
    fix='Set `allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]` and keep '
    "`max_age` positive (600 in the rulebook).",
    bad_example='app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"])',
    good_example="app.add_middleware(\n    CORSMiddleware,\n    allow_origins=origins,\n"
    '    allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],\n    max_age=600,\n)',
)
def check_cors_explicit(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    entries = cors_middleware(facts)
    if not entries:
        raise RuleSkipped(_NO_CORS)
    for entry in entries:
        options = entry.options
        if _contains_star(options.get("allow_methods", ())):
            yield Finding(
                message=f"{entry.name} allows every method (allow_methods=['*'])",
                location=middleware_location(facts, entry, "allow_methods"),
            )
        max_age = options.get("max_age")
        if isinstance(max_age, int | float) and not isinstance(max_age, bool) and max_age <= 0:
            yield Finding(
                message=f"{entry.name} sets max_age={max_age}: browsers preflight every request",
                location=middleware_location(facts, entry, "max_age"),
            )


# -- FR706 -----------------------------------------------------------------------------------------


def _words(name: str) -> list[str]:
    """``get_current_user`` / ``JWTAuthMiddleware`` -> lower-case words."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


#: Words that mark a dependency as an authentication or authorization check by themselves.
_AUTH_WORDS = frozenset(
    {
        "oauth", "jwt", "token", "tokens", "bearer", "apikey", "credentials", "login", "logged",
        "permission", "permissions", "superuser", "admin", "role", "roles", "guard", "principal",
        "scopes", "signature", "hmac", "rbac", "acl", "authn", "authz",
    }
)  # fmt: skip
#: ``author`` starts with ``auth`` but says nothing about security (blog apps have authors).
_NOT_AUTH = frozenset({"author", "authors", "authored", "authorship"})
_REQUIRE = frozenset({"require", "requires", "required"})
_CURRENT_WHO = frozenset(
    {"user", "superuser", "admin", "account", "principal", "member", "identity", "active", "staff"}
)
#: Factories of services and resources are not checks, even when named after auth
#: (``get_auth_service`` builds the service the login route uses).
_PROVIDER_WORDS = frozenset(
    {"service", "repository", "repo", "db", "database", "session", "client", "settings", "config"}
)


def looks_like_auth(name: str) -> bool:
    """Whether a dependency (function, class or parameter) name says it checks who is calling.

    Deliberately broad: a route that looks protected is not flagged, because a false "this
    write is unauthenticated" costs more trust than a missed one.
    """
    words = _words(name)
    if not words or words[-1] in _PROVIDER_WORDS:
        return False
    if any(w.startswith("auth") and w not in _NOT_AUTH for w in words):
        return True
    if _AUTH_WORDS.intersection(words) or _REQUIRE.intersection(words):
        return True
    if any(w == "current" and nxt in _CURRENT_WHO for w, nxt in itertools.pairwise(words)):
        return True
    return "key" in words and bool({"api", "verify", "check", "validate"}.intersection(words))


def _call_name(call: Any) -> str:
    target = unwrap_callable(call)
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isclass(target):
        return str(getattr(target, "__name__", ""))
    return type(target).__name__


def _is_security_dependant(dependant: Dependant) -> bool:
    if getattr(dependant, "own_oauth_scopes", None):
        return True
    if getattr(dependant, "security_scopes_param_name", None):
        return True
    call = getattr(dependant, "call", None)
    if call is not None and looks_like_auth(_call_name(call)):
        return True
    return looks_like_auth(str(getattr(dependant, "name", None) or ""))


def auth_middleware(facts: AppFacts) -> str | None:
    """The name of a middleware that authenticates every request, if the app has one."""
    for entry in facts.middleware:
        cls = entry.cls
        if inspect.isclass(cls) and issubclass(cls, AuthenticationMiddleware):
            return entry.name
        names = [entry.name]
        dispatch = entry.options.get("dispatch")
        if dispatch is not None:
            names.append(_call_name(dispatch))
        for name in names:
            words = _words(name)
            if any(w.startswith("auth") and w not in _NOT_AUTH for w in words) or any(
                w in ("oauth", "jwt") for w in words
            ):
                return name
    return None


_TOKEN_URLS: weakref.WeakKeyDictionary[AppFacts, frozenset[str]] = weakref.WeakKeyDictionary()


def _token_urls(facts: AppFacts) -> frozenset[str]:
    """``tokenUrl`` of every OAuth2 scheme the routes use or the app's modules define (cached:
    every write route asks)."""
    cached = _TOKEN_URLS.get(facts)
    if cached is None:
        cached = _TOKEN_URLS[facts] = frozenset(_collect_token_urls(facts))
    return cached


def _collect_token_urls(facts: AppFacts) -> set[str]:
    from fastapi.security import OAuth2

    schemes: list[Any] = [s for route in facts.routes for s in route.security_schemes()]
    schemes.extend(value for _, value in facts.own_globals() if isinstance(value, OAuth2))
    urls: set[str] = set()
    for scheme in schemes:
        if not isinstance(scheme, OAuth2):
            continue
        flows = getattr(getattr(scheme, "model", None), "flows", None)
        for flow_name in ("password", "clientCredentials", "authorizationCode"):
            flow = flows.get(flow_name) if isinstance(flows, dict) else getattr(flows, flow_name, None)
            url = flow.get("tokenUrl") if isinstance(flow, dict) else getattr(flow, "tokenUrl", None)
            if isinstance(url, str) and url:
                urls.add(url)
    return urls


def _is_token_path(path: str, token_url: str) -> bool:
    """Whether ``path`` (as served) is ``token_url``: absolute, relative, or under a root_path."""
    token_path = urlsplit(token_url).path
    route_path = path.rstrip("/") or "/"
    if token_path.startswith("/"):
        token_path = token_path.rstrip("/") or "/"
        return token_path == route_path or (route_path != "/" and token_path.endswith(route_path))
    relative = token_path.strip("/")
    return bool(relative) and route_path.endswith("/" + relative)


#: Account flows that anonymous users reach besides sign-up and login: password recovery (the
#: full-stack-fastapi-template's ``/password-recovery/{email}`` and ``/reset-password/``), e-mail
#: verification and token refresh (the refresh token in the body is the credential). RULES.md does
#: not name them as public: they are judged, and a finding on one says how to list it in
#: ``fastapi_rules_public_routes`` when it is public on purpose.
ACCOUNT_FLOW_SEGMENTS = (
    "password-recovery", "recover-password", "forgot-password", "reset-password", "password-reset",
    "verify-email", "request-verify-token", "refresh-token",
)  # fmt: skip
_PUBLIC_SEGMENTS = frozenset(s.replace("_", "-") for s in DEFAULT_PUBLIC_WRITE_SUFFIXES)
#: Other spellings of sign-up and login (``/sign-in``, ``/log-in``): common, not RULES.md's words.
#: Judged like any write; a finding on one says how to make it public on purpose.
SIGN_IN_VARIANTS = frozenset({"sign-up", "signin", "sign-in", "log-in", "logon", "log-on"})
_ACCOUNT_FLOW_SEGMENTS = frozenset(ACCOUNT_FLOW_SEGMENTS)


def _last_literal_segment(path: str) -> str:
    """The last path segment that is not a parameter: ``/password-recovery/{email}`` ->
    ``password-recovery``; lower case, ``_`` read as ``-``."""
    for segment in reversed(path.strip("/").split("/")):
        if segment and not segment.startswith("{"):
            return segment.lower().replace("_", "-")
    return ""


_TOKEN_PATH_WORDS = frozenset({"auth", "token", "tokens", "jwt", "session", "sessions"})


def _is_token_refresh(route: RouteFacts) -> bool:
    """``/auth/refresh`` or ``refresh_access_token``: the refresh token is the credential (but
    ``/cache/refresh`` is an ordinary write)."""
    segments = {s.lower() for s in route.path.strip("/").split("/")}
    return bool(segments & _TOKEN_PATH_WORDS) or "token" in _words(route.name)


def public_reason(facts: AppFacts, route: RouteFacts, options: RulesOptions) -> str | None:
    """Why a write route may be public (token endpoint, sign-up/login, configured), or None."""
    if options.is_public_route(route.method, route.path):
        return "listed in fastapi_rules_public_routes"
    last = _last_literal_segment(route.path)
    if last in _PUBLIC_SEGMENTS:
        return f"a {last} route"
    if takes_password_form(route) or any(_is_token_path(route.path, u) for u in _token_urls(facts)):
        return "the OAuth2 token endpoint"
    return None


def _account_flow(route: RouteFacts) -> str | None:
    """``a password-recovery route``: an account flow that is often public, which RULES.md does not
    exempt by default (the hint of a finding on it)."""
    last = _last_literal_segment(route.path)
    if last in _ACCOUNT_FLOW_SEGMENTS:
        return f"a {last} route"
    if last in SIGN_IN_VARIANTS:
        return f"a {last} route, not spelled register, signup or login"
    if last == "refresh" and _is_token_refresh(route):
        return "a token refresh route"
    return None


def _has_protection(route: RouteFacts) -> bool:
    """A security scheme, an auth-like dependency, or a dependency that reads the request's
    credentials itself (``probing.auth.credential_reader``), anywhere in the dependency tree."""
    return _protection(route) is not None


def _protection(route: RouteFacts) -> tuple[str, str] | None:
    """``(kind, what)``: how the route's structure says it authenticates: ``("scheme", ...)``,
    ``("reader", ...)`` (a dependency reading the credentials), or ``("name", dependency)`` when
    only a dependency's name says so; None when nothing does."""
    schemes = route.security_schemes()
    if schemes:
        return "scheme", type(schemes[0]).__name__
    reader = credential_reader(route)
    if reader is not None:
        return "reader", reader.name
    root = route.dependant
    for dependant in route.iter_dependants():
        if dependant is not root and _is_security_dependant(dependant):
            call = getattr(dependant, "call", None)
            return "name", _call_name(call) if call is not None else str(dependant.name)
    return None


def _answer_without_credentials(context: CheckContext) -> Exchange | None:
    """What the probes' write request to the route got, sent without credentials the plugin knows
    of; None when the probes did not send one (they cannot run, the request could not be built).

    The structure cannot see every way of authenticating (a JWT library's dependency reading the
    token several calls deep): a route that refused that request with 401 or 403 authenticates.
    """
    route = context.the_route
    try:
        results = probe_results(
            context.facts, context.options, Shard.of(route.target, context.options.probe_shards)
        )
    except Exception:  # noqa: BLE001 - no probe run: the structure's verdict stands on its own
        return None
    answers = results.for_target(route.target, "write")
    return answers[0] if answers else None


_AUTHENTICATES: weakref.WeakKeyDictionary[AppFacts, bool] = weakref.WeakKeyDictionary()


def _authenticates_somewhere(facts: AppFacts) -> bool:
    """Whether any route of the app (any method) is protected: only then is an unprotected write
    a forgotten dependency rather than the app's design."""
    cached = _AUTHENTICATES.get(facts)
    if cached is None:
        cached = _AUTHENTICATES[facts] = any(_has_protection(route) for route in facts.routes)
    return cached


def _judged_by_the_middleware(
    context: CheckContext, middleware: str, answer: Exchange | None
) -> Iterator[Finding]:
    """A write with no security dependency in an app that authenticates in middleware: the
    middleware protects it only if it refuses a request without credentials. Starlette's
    ``AuthenticationMiddleware`` refuses nothing by itself (it sets ``request.user``); a write that
    succeeded without credentials is open to anyone. Any other answer cannot tell."""
    route = context.the_route
    if answer is None or not answer.ok or context.options.auth_headers:
        seen = f"; the probes' {answer.request.shown} without credentials {answer.outcome}" if answer else ""
        raise RuleSkipped(f"the app authenticates in middleware ({middleware}){seen}")
    yield Finding(
        message=(
            f"endpoint `{route.name}` changes data for anyone: the app authenticates in middleware "
            f"(`{middleware}`), but the route has no security dependency and the probes' "
            f"{answer.request.shown} without credentials {answer.outcome}"
        ),
        location=route.location,
        fix="Refuse anonymous requests: add a security dependency to the route (or "
        '`@requires("authenticated")`), or let the middleware answer 401; list the route in '
        "`fastapi_rules_public_routes` if it is public on purpose.",
    )


def _is_api_write(route: RouteFacts, options: RulesOptions) -> bool:
    return route.method in WRITE_METHODS and is_api_route(route, options)


@rule(
    code="FR706",
    name="writes-need-auth",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.APP_PROBE,
    section="Rules #6, #21",
    summary=(
        "POST/PUT/PATCH/DELETE routes depend on a security scheme, an auth-named dependency "
        "(`get_current_user`, `require_*`, `verify_token`...) or a dependency that reads the "
        "credentials (an `Authorization`/API-key header, a token cookie), or refuse the probes' "
        "request without credentials with 401/403 (a dependency only named like a check must "
        "also do that); except public ones: the OAuth2 token endpoint, register/signup/login, "
        "and `fastapi_rules_public_routes`."
    ),
    rationale=(
        "A write that anyone may call lets anonymous clients create, change or delete data. The "
        "rulebook protects writes with `Depends(get_current_user)` and its compositions "
        "(`get_current_active_user`, `get_current_superuser`). Structure first (a scheme, a "
        "dependency reading the credentials), then the app's answer: the probes send each write "
        "without credentials, and a 401/403 clears a route whose structure shows nothing, while a "
        "2xx convicts one protected by a dependency's name only, or by an authentication "
        "middleware that refuses nothing (Starlette's sets `request.user` and lets the request "
        "through). The rule is skipped when no route at all is protected and no middleware "
        "authenticates (auth at a gateway is a design choice), and for endpoints defined by "
        "libraries (their sign-up and password-reset routes are public by design)."
    ),
    fix="Add a security dependency (`current_user: CurrentUser`, or "
    "`dependencies=[Depends(get_current_superuser)]`), or list the route in "
    "`fastapi_rules_public_routes` if it is public on purpose.",
    applies_to=_is_api_write,
    bad_example='@router.post("/posts", status_code=201)\n'
    "async def create_post(data: PostCreate, service: PostServiceDep) -> PostResponse: ...",
    good_example='@router.post("/posts", status_code=201)\nasync def create_post(\n'
    "    data: PostCreate, current_user: CurrentUser, service: PostServiceDep\n"
    ") -> PostResponse: ...",
)
def check_writes_need_auth(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    route = context.the_route
    middleware = auth_middleware(facts)
    if middleware is None and not _authenticates_somewhere(facts):
        raise RuleSkipped(
            "no route of the app has a security dependency: authentication happens outside the "
            "app (gateway, proxy) or nowhere, which is a design choice this rule cannot judge"
        )
    if not facts.is_own_object(route.function):
        module = getattr(route.function, "__module__", "?")
        raise RuleSkipped(
            f"endpoint `{route.name}` comes from the library module `{module}`, whose routes "
            "(sign-up, password reset, verification) are public by design"
        )
    if public_reason(facts, route, context.options) is not None:
        return
    protection = _protection(route)
    if protection is not None and protection[0] != "name":
        return
    answer = _answer_without_credentials(context)
    if answer is not None and answer.status in (401, 403):
        return
    if protection is not None:
        # Only a name says this route authenticates: the app's answer decides. A request without
        # credentials that succeeded shows the write open to anyone, whatever the name.
        if answer is None or not answer.ok or context.options.auth_headers:
            return
        yield Finding(
            message=f"endpoint `{route.name}` changes data for anyone: its dependency "
            f"`{protection[1]}` is named like an authentication check, but the probes' "
            f"{answer.request.shown} without credentials {answer.outcome}",
            location=route.location,
        )
        return
    if middleware is not None:
        yield from _judged_by_the_middleware(context, middleware, answer)
        return
    if answer is not None and answer.server_error:
        raise RuleSkipped(
            f"no security dependency is visible, and {answer.request.shown} without credentials "
            f"{answer.outcome}: whether the route authenticates cannot be told (FR210 and FR704 "
            "judge the 5xx)"
        )
    evidence = (
        f"; the probes' {answer.request.shown} without credentials {answer.outcome}"
        if answer is not None
        else ""
    )
    flow = _account_flow(route)
    hint = (
        f" ({flow}: RULES.md makes only the token endpoint, register, signup and login public by "
        f"default; if `{route.target}` is public on purpose, list it in fastapi_rules_public_routes)"
        if flow is not None
        else ""
    )
    yield Finding(
        message=(
            f"endpoint `{route.name}` changes data without a security dependency "
            "(no OAuth2/HTTP/API-key scheme, no auth dependency such as get_current_user, no "
            f"dependency reading the credentials){evidence}{hint}"
        ),
        location=route.location,
    )
