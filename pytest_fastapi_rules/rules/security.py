"""FR7xx: security (Rules #21, #22, the config.py template).

FR701 and FR702 read the middleware stack and the dependency trees; FR701's runtime half (a
preflight from an unlisted origin) is declared with it. FR703 reads the app's source, FR704 and
FR705 the probe run; FR706 asks the probes only to confirm a write that looks unprotected (a 401 or
403 to the probes' request clears it).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import itertools
import re
import typing
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware

from pytest_fastapi_rules.facts import MemoKey, is_subclass, plain_annotation, unwrap_callable
from pytest_fastapi_rules.options import DEFAULT_PUBLIC_WRITE_SUFFIXES
from pytest_fastapi_rules.probing.auth import challenge_schemes, credential_reader, iter_schemes
from pytest_fastapi_rules.probing.requests import PASSWORD_FIELD, RequestBuilder
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
from pytest_fastapi_rules.rules.common import is_api_route, is_token_endpoint
from pytest_fastapi_rules.rules.probe_support import PROBES_UNAVAILABLE, _probe
from pytest_fastapi_rules.source.index import SourceIndex, _index, settings_classes
from pytest_fastapi_rules.source.parsing import dotted_text, shorten

if TYPE_CHECKING:
    from pytest_fastapi_rules.source.parsing import SourceModule

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
    if is_token_endpoint(route, facts):
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


_AUTHENTICATES: MemoKey[bool] = MemoKey("some route authenticates")


def _authenticates_somewhere(facts: AppFacts) -> bool:
    """Whether any route of the app (any method) is protected: only then is an unprotected write
    a forgotten dependency rather than the app's design."""
    return facts.memo(_AUTHENTICATES, lambda: any(_has_protection(route) for route in facts.routes))


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


# -- FR704 auth-challenge --------------------------------------------------------------------------


def _has_challenge(route: RouteFacts, options: RulesOptions) -> bool:
    """Behind a bearer scheme, or a dependency of its own that reads the credentials."""
    try:
        return bool(challenge_schemes(route)) or credential_reader(route) is not None
    except Exception:  # noqa: BLE001 - an exotic dependency tree: not a protected route
        return False


@rule(
    code="FR704",
    name="auth-challenge",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #21",
    summary="Routes behind an OAuth2/bearer scheme answer 401 with `WWW-Authenticate: Bearer` "
    "without a token or with a garbage one; never 500. Routes whose own dependency reads the "
    "credentials (an `Authorization`/API-key header or a token cookie) never answer 5xx without them, "
    "and a 401 they send names its scheme in `WWW-Authenticate`.",
    rationale=(
        "RFC 6750 clients refresh or re-login on 401 + WWW-Authenticate; a 500 or a 403 for a bad "
        "token breaks that, and a decoder crash on garbage input is an outage anyone can trigger."
    ),
    fix="Catch the JWT library's errors in the current-user dependency and raise an authentication "
    "error that the handler answers with 401 and `WWW-Authenticate: Bearer`.",
    applies_to=_has_challenge,
    bad_example="payload = jwt.decode(token, key, algorithms=[ALG])  # DecodeError -> 500",
    good_example="try:\n    payload = jwt.decode(token, key, algorithms=[ALG])\n"
    "except jwt.InvalidTokenError as exc:\n    raise InvalidTokenError() from exc  # 401 + WWW-Authenticate",
    phases=("credentials",),
    reports_setup_failure=True,
    judges_built_requests=True,
)
def check_auth_challenge(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR704")
    exchanges = results.for_target(route.target, "no-credentials") + results.for_target(
        route.target, "garbage-token"
    )
    if not exchanges:
        raise RuleSkipped(f"the probes could not build a request for {route.target}")
    reader = _token_reader(context.facts, route)
    own_reader = None if reader is not None or challenge_schemes(route) else credential_reader(route)
    for exchange in exchanges:
        challenge = exchange.headers.get("www-authenticate", "")
        if own_reader is not None:
            # No scheme declares what the route expects: judge what no scheme may do (a crash, a
            # 401 that names no scheme), not which of 401 and 403 it chose.
            if exchange.server_error:
                problem = f"{exchange.outcome}: `{own_reader.name}` reads {own_reader.carrier} and crashed"
            elif exchange.status == 401 and not challenge:
                problem = "answered 401 without a `WWW-Authenticate` header (RFC 7235 requires one)"
            else:
                continue
            yield Finding(
                message=f"{exchange.request.shown} with {exchange.request.description} {problem}",
                location=context.facts.location_of(own_reader.call) or route.location,
                fix=f"Make `{own_reader.name}` answer a missing or invalid credential with 401 and a "
                "`WWW-Authenticate` header naming the scheme (catch the token library's errors), or "
                "declare the scheme with `fastapi.security` (`OAuth2PasswordBearer`, `APIKeyHeader`).",
            )
            continue
        if exchange.status == 401 and "bearer" in challenge.lower():
            continue
        if exchange.status == 401:
            problem = "answered 401 without `WWW-Authenticate: Bearer`"
        else:
            problem = f"{exchange.outcome}, not 401"
        message = f"{exchange.request.shown} with {exchange.request.description} {problem}"
        if reader is None:
            yield Finding(message=message, location=route.location)
            continue
        # One dependency usually decides this answer for every protected route: name it and point
        # at it, so seventeen items show one cause in one place.
        name, location = reader
        yield Finding(
            message=f"{message} (the token is read by `{name}`)",
            location=location or route.location,
            fix=f"Make `{name}` raise an authentication error that the app answers with 401 and "
            "`WWW-Authenticate: Bearer`, for a missing token and for one that does not decode "
            "(catch the JWT library's errors).",
        )


def _token_reader(facts: AppFacts, route: RouteFacts) -> tuple[str, Location | None] | None:
    """The dependency that reads the route's bearer token, as the app runs it (its overrides applied)."""
    from fastapi.security import HTTPBearer
    from fastapi.security.oauth2 import OAuth2

    overrides = getattr(facts, "initial_dependency_overrides", None) or {}
    with contextlib.suppress(Exception):
        for consumer, scheme in iter_schemes(route):
            if isinstance(scheme, OAuth2 | HTTPBearer):
                call = overrides.get(consumer.call, consumer.call)
                name = getattr(call, "__qualname__", None) or getattr(call, "__name__", None)
                if name:
                    return str(name), facts.location_of(call)
    return None


# -- FR705 passwords-hashed ---------------------------------------------------------------------------

_BCRYPT = re.compile(r"^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$")


_ARGON2 = re.compile(r"^\$argon2(id|i|d)\$")


def _creates_with_password(route: RouteFacts, options: RulesOptions) -> bool:
    from pydantic import BaseModel

    if route.method != "POST":
        return False
    try:
        if RequestBuilder.body_kind(route) != "json":
            return False
        annotation = plain_annotation(RequestBuilder.body_field(route).field_info.annotation)
    except Exception:  # noqa: BLE001
        return False
    if not is_subclass(annotation, BaseModel):
        return False
    return any(PASSWORD_FIELD.match(name) for name in annotation.model_fields)


@rule(
    code="FR705",
    name="passwords-hashed",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #21",
    summary="After a create call carrying a `password`, no column holds the plain password and the "
    "stored value is a bcrypt or argon2 hash.",
    rationale="A database dump, a backup or an SQL injection must not hand out users' passwords.",
    fix="Hash with bcrypt (or argon2) before storing: `bcrypt.hashpw(password.encode(), "
    "bcrypt.gensalt())`, run in a thread (`asyncio.to_thread`).",
    applies_to=_creates_with_password,
    bad_example="User(**data.model_dump())  # password stored as sent",
    good_example="User(**data.model_dump(exclude={'password'}),\n"
    "     hashed_password=await hash_password(data.password))",
    phases=("writes", "password-scan"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_passwords_hashed(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR705")
    checks = [c for c in results.password_checks if c.target == route.target]
    if not checks:
        raise RuleSkipped(f"the probes could not send {route.target} a body with a known password")
    check = checks[0]
    if check.skipped:
        raise RuleSkipped(check.skipped)
    for place in check.plain_found_in:
        yield Finding(
            message=f"the plain password sent to {route.target} is stored in column `{place}`",
            location=route.location,
        )
    for place, value in check.stored:
        if place in check.plain_found_in:
            continue
        if not (_BCRYPT.match(value) or _ARGON2.match(value)):
            shown = value[:12] + "..." if len(value) > 12 else value
            yield Finding(
                message=f"column `{place}` of the row created by {route.target} holds {shown!r}, "
                "not a bcrypt or argon2 hash",
                location=route.location,
            )


# -- FR703 -----------------------------------------------------------------------------------------

#: Names of secrets: the name *ends* with one of these words (``ACCESS_TOKEN_EXPIRE_MINUTES`` is not).
SECRET_NAME = re.compile(
    r"(?i)(^|_)(secret|secret_key|password|passwd|token|api_key|apikey|private_key|access_key|"
    r"client_secret|signing_key)$"
)


_JWT_MODULES = ("jwt", "jose", "jose.jwt", "authlib.jose", "python_jwt", "jwcrypto")


_JWT_KEY_ARGUMENTS = frozenset({"key", "secret", "secret_key", "signing_key"})


def _literal_secret(node: ast.AST | None, name: str | None) -> str | None:
    """The string literal, when it can be a secret: non-empty, no spaces (prose), not only masking
    characters (``***``), and not merely the name itself (``ACCESS_TOKEN = "access_token"``)."""
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str | bytes):
        return None
    text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
    stripped = text.strip()
    if not stripped or any(ch.isspace() for ch in stripped):
        return None
    if not any(ch.isalnum() for ch in stripped) or len(set(stripped)) == 1:
        return None
    if name is not None and _normal(stripped) == _normal(name):
        return None
    if _names_something(stripped, name):
        return None
    return text


#: A lowercase identifier: a key, a column or a header name, not a generated secret.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:[_.-][a-z0-9]+)*")


def _names_something(text: str, name: str | None) -> bool:
    """Whether the literal is a name rather than a secret: a lowercase identifier made only of the
    variable's own words (``PK_TOKEN = "token"``, ``ACCESS_TOKEN_COOKIE = "access_token"``). A
    literal with a word of its own (``SECRET_KEY = "dev-secret-key"``) stays a secret."""
    if len(text) > 40 or not _IDENTIFIER.fullmatch(text):
        return False
    words = {word for word in re.split(r"[^a-z0-9]+", (name or "").lower()) if word}
    return set(re.split(r"[_.-]", text)) <= words


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@rule(
    code="FR703",
    name="secrets-from-environment",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="config.py template, Rule #21",
    summary="Settings fields named like secrets (`SECRET_KEY`, `*_PASSWORD`, `*_TOKEN`, `*_API_KEY`) "
    "have no non-empty default, and no such literal is assigned in app code.",
    rationale=(
        "A secret in the code is in every clone, image and log of the repository; a default secret "
        "lets the app start in production with a key everybody knows."
    ),
    fix="Declare the field without a default (`SECRET_KEY: str`) and set it in the environment; "
    "read secrets from settings, never from literals.",
    bad_example='SECRET_KEY: str = "super-secret-key"\njwt.encode(claims, "my-key", algorithm="HS256")',
    good_example="SECRET_KEY: str  # required, from the environment\n"
    "jwt.encode(claims, settings.SECRET_KEY, algorithm=settings.ALGORITHM)",
)
def check_secrets_from_environment(context: CheckContext) -> Iterator[Finding]:
    """App half: fields of the app's ``BaseSettings`` classes named like secrets whose runtime
    default is a non-empty string (``SecretStr`` too), when the source shows a literal default (a
    computed default such as ``secrets.token_urlsafe(32)`` is not a secret in the code). Source half:
    literals assigned to secret names (module, class and function level, parameter defaults), and a
    literal passed as the key of a JWT call (positional key or ``key=``/``secret=``). Reading the
    environment is never a finding (``os.environ["SECRET_KEY"]``, ``os.getenv("SECRET_KEY", "")``);
    ``.env``/``.env.example`` files are not read at all; test code is not part of the index; enum
    members are names, not secrets. A finding shows the literal masked, with its length
    (``"8f4*****"``, `mask_secret`): enough to tell ``"changeme"`` from a real key, never the key."""
    facts = context.facts
    index = _index(context)
    reported: set[tuple[str, int | None, int | None]] = set()

    def report(module: SourceModule, node: ast.AST, message: str, secret: ast.AST) -> Finding | None:
        location = module.location(node)
        key = (location.file, location.line, location.column)
        if key in reported:
            return None
        reported.add(key)
        text = _secret_text(secret)
        length = f" ({len(text)} characters)" if text is not None else ""
        excerpt = _masked_excerpt(module, node, secret)
        return Finding(message=f"{message}{length}: `{excerpt}`", location=location)

    yield from _settings_defaults(facts, index, report)
    enum_bodies = _enum_class_nodes(index)
    for module in index:
        for node in module.nodes:
            if isinstance(node, ast.ClassDef) and id(node) in enum_bodies:
                continue
            if not isinstance(node, ast.Assign | ast.AnnAssign | ast.FunctionDef | ast.AsyncFunctionDef):
                if isinstance(node, ast.Call):
                    finding = _jwt_literal_key(module, node, report)
                    if finding is not None:
                        yield finding
                continue
            for target_name, assigned, anchor in _assignments(node):
                if id(anchor) in enum_bodies or not SECRET_NAME.search(target_name):
                    continue
                value = _unwrapped_secret(assigned)
                if value is None or _literal_secret(value, target_name) is None:
                    continue
                finding = report(module, anchor, f"`{target_name}` is assigned a literal secret", value)
                if finding is not None:
                    yield finding


#: Pydantic's secret types: `SecretStr("change-me")` is the literal it wraps.
_SECRET_WRAPPERS = frozenset({"SecretStr", "SecretBytes"})


def _unwrapped_secret(value: ast.AST | None) -> ast.AST | None:
    """The literal inside ``SecretStr("...")`` (minimal-fastapi-postgres-template's settings
    sections: ``jwt_secret_key: SecretStr = SecretStr("change-me-...")``), else the value itself."""
    if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords:
        called = (dotted_text(value.func) or "").rsplit(".", 1)[-1]
        if called in _SECRET_WRAPPERS:
            return value.args[0]
    return value


def _masked_excerpt(module: SourceModule, node: ast.AST, secret: ast.AST, limit: int = 80) -> str:
    """The node's source with the secret literal masked (``"8f4*****..."``, see `mask_secret`):
    enough to tell a placeholder from a real key, never enough to spread the secret further in
    reports and CI logs."""
    text = ast.get_source_segment(module.source, node) or ""
    segment = ast.get_source_segment(module.source, secret)
    masked = _masked_literal(segment or "", _secret_text(secret))
    if not text or not segment:
        return masked
    start = text.find(segment)
    if start >= 0:
        text = text[:start] + masked + text[start + len(segment) :]
        # Keep the masked literal whole: it is what the reader judges the finding by.
        limit = max(limit, start + len(masked) + 2)
    return shorten(text, limit)


def _secret_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        return node.value.decode("latin-1")
    return None


def mask_secret(text: str) -> str:
    """The secret's first characters (at most 3, and at most a quarter of it), the rest as ``*``:
    ``8f4e2b0c9d1a`` is shown as ``8f4*********``; a secret under 4 characters shows none."""
    shown = min(3, len(text) // 4)
    return text[:shown] + "*" * (len(text) - shown)


_STRING_OPENING = re.compile(r"^([rRbBuU]{0,2})(\"\"\"|'''|\"|')")


def _masked_literal(segment: str, text: str | None) -> str:
    """The literal as written (prefix and quotes kept), its content masked."""
    if text is None:
        return '"***"'
    opening = _STRING_OPENING.match(segment)
    prefix, quote = (opening.group(1), opening.group(2)) if opening else ("", '"')
    return f"{prefix}{quote}{mask_secret(text)}{quote}"


def _assignments(node: ast.AST) -> Iterator[tuple[str, ast.AST | None, ast.AST]]:
    """(name, value, node to point at) of assignments and parameter defaults in ``node``."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            name = _target_name(target)
            if name:
                yield name, node.value, node
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        name = _target_name(node.target)
        if name:
            yield name, node.value, node
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        for arg, default in zip(
            positional[len(positional) - len(args.defaults) :], args.defaults, strict=True
        ):
            yield arg.arg, default, default
        for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if kw_default is not None:
                yield arg.arg, kw_default, kw_default


def _target_name(target: ast.AST) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _enum_class_nodes(index: SourceIndex) -> set[int]:
    """ids of the class nodes (and their statements) of Enum classes: members are names, not secrets."""
    import enum

    ids: set[int] = set()
    for module in index:
        for qualname, node in module.classes:
            cls = module.runtime_class(qualname)
            is_enum = (
                is_subclass(cls, enum.Enum)
                if cls is not None
                else any((dotted_text(base) or "").endswith("Enum") for base in node.bases)
            )
            if is_enum:
                ids.add(id(node))
                ids.update(id(statement) for statement in node.body)
    return ids


def _jwt_literal_key(module: SourceModule, call: ast.Call, report: Any) -> Finding | None:
    resolved = module.resolve(call.func) or ""
    head, _, function = resolved.rpartition(".")
    if head not in _JWT_MODULES or function not in ("encode", "decode"):
        return None
    candidates: list[ast.AST] = []
    if len(call.args) >= 2:
        candidates.append(call.args[1])
    candidates.extend(keyword.value for keyword in call.keywords if keyword.arg in _JWT_KEY_ARGUMENTS)
    for candidate in candidates:
        if _literal_secret(candidate, None) is not None:
            result: Finding | None = report(
                module, call, f"`{resolved}` is called with a literal key", candidate
            )
            return result
    return None


def _settings_defaults(facts: AppFacts, index: SourceIndex, report: Any) -> Iterator[Finding]:
    for cls in settings_classes(facts):
        fields = getattr(cls, "model_fields", {}) or {}
        for name, info in fields.items():
            if not SECRET_NAME.search(name) and not SECRET_NAME.search(str(info.alias or "")):
                continue
            default = info.default
            secret = getattr(default, "get_secret_value", None)
            value = secret() if callable(secret) else default
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            if not isinstance(value, str) or not value.strip():
                continue
            located = _field_node(index, cls, name)
            if located is None:
                continue
            module, node = located
            literal = _literal_default(node)
            if literal is None:
                continue
            finding = report(
                module,
                node,
                f"settings field `{cls.__name__}.{name}` has a non-empty default secret",
                literal,
            )
            if finding is not None:
                yield finding


def _field_node(
    index: SourceIndex, cls: type, name: str
) -> tuple[SourceModule, ast.AnnAssign | ast.Assign] | None:
    """The class-body statement that declares field ``name`` (looked up through the MRO)."""
    for klass in cls.__mro__:
        module = index.get(getattr(klass, "__module__", None))
        if module is None:
            continue
        for qualname, node in module.classes:
            if qualname != klass.__qualname__:
                continue
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and _target_name(statement.target) == name:
                    return module, statement
                if isinstance(statement, ast.Assign) and any(
                    _target_name(t) == name for t in statement.targets
                ):
                    return module, statement
    return None


def _literal_default(node: ast.AnnAssign | ast.Assign) -> ast.AST | None:
    """The literal default of a field declaration: ``= "x"``, ``Field("x")``, ``Field(default="x")``,
    ``SecretStr("x")``; None when the default is computed or empty."""
    value = node.value
    if value is None:
        return None
    candidates: list[ast.expr] = [value]
    if isinstance(value, ast.Call):
        # Only a field constructor's first argument is a default; in `config("SECRET_KEY")` or
        # `os.getenv("SECRET_KEY")` it is the name of the variable the secret is read from.
        function = value.func
        called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if called not in _FIELD_CONSTRUCTORS:
            return None
        candidates = list(value.args[:1]) + [k.value for k in value.keywords if k.arg == "default"]
    return next((c for c in candidates if _literal_secret(c, None) is not None), None)


_FIELD_CONSTRUCTORS = frozenset({"Field", "SecretStr", "SecretBytes", "Secret"})
