"""Predicates and helpers shared by several rule modules: which routes are the public API, the
OAuth2 token endpoint (FR204 and FR706), names in messages, the production-mode child's starter,
the parts of a lifespan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi.security import OAuth2, OAuth2PasswordRequestForm

from pytest_fastapi_rules.facts import MemoKey, is_subclass
from pytest_fastapi_rules.production import facts as production

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions


def is_api_route(route: RouteFacts, options: RulesOptions) -> bool:
    """A route of the public API: not infrastructure (health, metrics) and shown in the schema."""
    return route.include_in_schema and not options.is_infra_path(route.path)


def any_route(route: RouteFacts, options: RulesOptions) -> bool:
    return True


def takes_password_form(route: RouteFacts) -> bool:
    """The route reads an ``OAuth2PasswordRequestForm`` (a login or token endpoint)."""
    return any(is_subclass(d.call, OAuth2PasswordRequestForm) for d in route.iter_dependants())


# -- the OAuth2 token endpoint (FR204, FR706) -------------------------------------------------------

_TOKEN_URLS: MemoKey[frozenset[str]] = MemoKey("OAuth2 token URLs")
#: The OAuth2 flows that name a token endpoint (the implicit flow has none).
_TOKEN_FLOWS = ("password", "clientCredentials", "authorizationCode")


def is_token_endpoint(route: RouteFacts, facts: AppFacts) -> bool:
    """The OAuth2 token endpoint: a route that reads the password form, or that serves a URL the
    app's OAuth2 schemes name (:func:`oauth2_token_urls`), as served or under the app's root_path.

    FR204 asks it of POSTs (a token request is a login: 200, not 201), FR706 of every write (the
    token endpoint is public: its credentials are in the request body).
    """
    if takes_password_form(route):
        return True
    # tokenUrl is what clients call: with root_path="/api" behind a proxy it carries the prefix
    root_path = str(getattr(facts.app, "root_path", "") or "").rstrip("/")
    paths = {route.path, root_path + route.path} if root_path else {route.path}
    return any(is_token_path(path, url) for path in paths for url in oauth2_token_urls(facts))


def oauth2_token_urls(facts: AppFacts) -> frozenset[str]:
    """``tokenUrl`` and ``refreshUrl`` of every flow of every OAuth2 scheme that a route depends on
    or that the app's own modules define (a scheme no route declares still names the app's token
    endpoint). Both name a token endpoint: a refresh request is a token request whose credential,
    the refresh token, is in the body (RFC 6749, section 6). Read once per session: every POST and
    every write asks."""
    return facts.memo(_TOKEN_URLS, lambda: frozenset(_collect_token_urls(facts)))


def _collect_token_urls(facts: AppFacts) -> set[str]:
    schemes: list[Any] = [scheme for route in facts.routes for scheme in route.security_schemes()]
    schemes.extend(value for _, value in facts.own_globals() if isinstance(value, OAuth2))
    urls: set[str] = set()
    for scheme in schemes:
        flows = getattr(getattr(scheme, "model", None), "flows", None)
        for flow_name in _TOKEN_FLOWS:
            flow = flows.get(flow_name) if isinstance(flows, dict) else getattr(flows, flow_name, None)
            for attribute in ("tokenUrl", "refreshUrl"):
                url = flow.get(attribute) if isinstance(flow, dict) else getattr(flow, attribute, None)
                if isinstance(url, str) and url:
                    urls.add(url)
    return urls


def is_token_path(path: str, token_url: str) -> bool:
    """Whether a route at ``path`` (as served) is the endpoint of ``token_url``: an absolute URL or
    path equal to ``path`` or ending with it (the prefix of a root_path, or of a proxy that strips
    it), or a relative path that ``path`` ends with."""
    token_path = urlsplit(token_url).path
    route_path = path.rstrip("/") or "/"
    if token_path.startswith("/"):
        token_path = token_path.rstrip("/") or "/"
        return token_path == route_path or (route_path != "/" and token_path.endswith(route_path))
    relative = token_path.strip("/")
    return bool(relative) and route_path.endswith("/" + relative)


def code_of(obj: object) -> str:
    """A short, readable name for an object in a message: ``module.qualname``; a callable instance
    (a library's dependency object, ``FastAPIOAuth20(...)``) by its class, never by its ``repr``,
    whose memory address would change the message, and the finding's fingerprint, on every run."""
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        cls = type(obj)
        return f"{cls.__module__}.{cls.__qualname__}(...) instance"
    return f"{module}.{name}" if module else str(name)


def start_production_child(facts: AppFacts, options: RulesOptions) -> None:
    """``background`` of the rules that read the app in production mode (FR108, FR503, FR802)."""
    production.start_production_child(facts, options)


# -- FR101 ----------------------------------------------------------------------------------------


def _lifespan_parts(context: Any, depth: int = 0) -> Iterator[Any]:
    """The lifespan callables an app's (possibly merged) lifespan context is made of.

    FastAPI's ``include_router`` wraps the app's lifespan and each included router's in a
    ``merged_lifespan`` closure (``original_context``/``nested_context``); older versions do not
    merge. Yields the leaves: the user's lifespan functions and ``_DefaultLifespan`` objects.
    """
    if depth > 64:
        return
    function = getattr(context, "__wrapped__", context)
    code = getattr(function, "__code__", None)
    closure = getattr(function, "__closure__", None)
    if code is not None and closure and getattr(function, "__name__", "") == "merged_lifespan":
        cells = dict(zip(code.co_freevars, closure, strict=False))
        found = False
        for name in ("original_context", "nested_context"):
            cell = cells.get(name)
            if cell is None:
                continue
            try:
                inner = cell.cell_contents
            except ValueError:
                continue
            found = True
            yield from _lifespan_parts(inner, depth + 1)
        if found:
            return
    yield context
