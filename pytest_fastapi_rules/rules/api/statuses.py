"""The status a route answers with: FR204 create-returns-201, FR205 delete-returns-204, FR210
bad-input-is-422 and FR211 missing-resource-is-404 (Rules #14, #16).

FR204 reads the declared status against the route table (a POST to a collection the app serves
creates; an action or the OAuth2 token endpoint does not). FR205 checks the declared 204 and then
the probes' DELETE; FR210 and FR211 read only the probe run (bad and odd input, an id that does not
exist).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pytest_fastapi_rules.probing.edges import EDGE_PHASE
from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, RuleSkipped, Scope, Severity, rule
from pytest_fastapi_rules.rules.api.annotations import _snake
from pytest_fastapi_rules.rules.api.routes import _api_route_with, _skip_library_endpoint, list_answer_of
from pytest_fastapi_rules.rules.common import any_route, is_token_endpoint
from pytest_fastapi_rules.rules.probe_support import _happy, _method_route, _probe

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts


# -- FR204 ----------------------------------------------------------------------------------------

# fmt: off
ACTION_VERBS = frozenset({
    "activate", "deactivate", "approve", "reject", "archive", "unarchive", "restore", "publish",
    "unpublish", "cancel", "confirm", "verify", "validate", "send", "resend", "reset", "recover",
    "refresh", "login", "logout", "signin", "signout", "authenticate", "authorize", "search", "query",
    "check", "test", "run", "execute", "start", "stop", "pause", "resume", "retry", "sync", "import",
    "export", "download", "process", "calculate", "compute", "preview", "render", "generate", "convert",
    "ping", "subscribe", "unsubscribe", "follow", "unfollow", "like", "unlike", "join", "leave", "lock",
    "unlock", "enable", "disable", "submit", "complete", "close", "reopen", "assign", "unassign",
    "invite", "accept", "decline", "mark", "move", "copy", "clone", "duplicate", "merge", "transfer",
    "charge", "refund", "pay", "notify", "trigger", "invoke", "apply", "revoke", "rotate", "renew",
    "acknowledge", "ack", "count", "estimate", "evaluate", "predict", "batch", "bulk",
})
# fmt: on
#: Actions that legitimately create something (a copy, a batch of rows, an invitation): 201 is fine.
CREATING_ACTIONS = frozenset({"clone", "copy", "duplicate", "bulk", "batch", "import", "invite"})


def _words(segment: str) -> list[str]:
    return [w for w in re.split(r"[-_.]+", _snake(segment)) if w]


def _status_text(route: RouteFacts) -> str:
    if route.status_code is None:
        return "200 (FastAPI's default)"
    return str(route.status_code)


@rule(
    code="FR204",
    name="create-returns-201",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #16",
    summary=(
        "POST to a collection declares 201; action POSTs (`/{id}/activate`) declare 200 or 202 "
        "(both configurable); the OAuth2 token endpoint is a login and answers 200."
    ),
    rationale=(
        "Clients and generated SDKs tell a creation from other outcomes by the status: 201 Created "
        "says a new resource exists; an action creates nothing, so 201 misleads."
    ),
    fix="Declare `status_code=status.HTTP_201_CREATED` on the create route.",
    applies_to=_api_route_with("POST"),
    bad_example='@router.post("/posts")\nasync def create_post(data: PostCreate) -> PostResponse: ...',
    good_example=(
        '@router.post("/posts", status_code=status.HTTP_201_CREATED)\n'
        "async def create_post(data: PostCreate) -> PostResponse: ..."
    ),
)
def check_create_returns_201(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    options = context.options
    _skip_library_endpoint(route, context.facts)
    status = route.declared_status
    if is_token_endpoint(route, context.facts):
        if status != 200:
            yield Finding(
                message=(
                    f"the OAuth2 token endpoint declares {_status_text(route)}; a token request is "
                    "a login, not a create, and answers 200 (RFC 6749, section 5.1)"
                ),
                location=route.location,
                fix="Remove the `status_code=` of the token endpoint (200 is FastAPI's default).",
            )
        return
    segments = [s for s in route.path.split("/") if s]
    if not segments:
        raise RuleSkipped(f"{route.target} has no path segment to judge")
    last = segments[-1]
    if last.startswith("{") and last.endswith("}"):
        raise RuleSkipped(f"{route.target} ends in a path parameter: neither a collection nor a named action")
    words = _words(last)
    verbs = ACTION_VERBS | frozenset(context.options.action_verbs)
    first = words[0] if words else last.lower()
    if first in CREATING_ACTIONS or (len(words) > 1 and words[-1] in verbs and first not in verbs):
        # `/items/bulk`, `/{id}/clone`, `/password-reset`: may create, may not; either fits
        allowed = sorted({*options.action_statuses, *options.create_statuses})
        if status in allowed:
            return
        yield Finding(
            message=f"POST to `{last}` declares {_status_text(route)}, not a success status of a POST"
            f"{_statuses_note(status, 'either')}",
            location=route.location,
            fix=f"Declare {_or(allowed)}.",
        )
        return
    # The route table decides: a POST creates in a collection the app also serves (a GET on the
    # same path, or routes on `path/{id}`); the words of the path only break ties. RULES.md's
    # exception stands first: a last segment led by an action verb is no collection, whatever
    # else the path serves (mealie's GET and POST `/bulk-actions/export`).
    collection = None if first in verbs else _collection_evidence(context.facts, route.path)
    if collection is not None:
        if status in options.create_statuses:
            return
        yield Finding(
            message=(
                f"POST to `{route.path}` creates in a collection the app serves ({collection}), yet "
                f"declares {_status_text(route)}; a create answers {_or(options.create_statuses)}"
                f"{_statuses_note(status, 'create')}"
            ),
            location=route.location,
            # The path names the collection, not a verb, so fastapi_rules_action_verbs cannot
            # change this verdict: the fix names only what does.
            fix=(
                "Declare `status_code=status.HTTP_201_CREATED`; if this POST is an action, not a "
                "create, give the action its own path segment (`/orders/{order_id}/cancel`, "
                "`/orders/search`), or leave the route alone on purpose with the ini line "
                f"`POST {route.path} = FR204` in `fastapi_rules_per_route_ignores`."
            ),
        )
        return
    # No collection: a leading action verb says it is an action; a word such as `token` or
    # `webhook` alone cannot tell a create from an action, and the route is not judged.
    if first not in verbs:
        raise RuleSkipped(
            f"the route table does not say whether POST {route.path} creates: the app serves no "
            f"GET {route.path} and no `{route.path}/{{id}}` route, and `{last}` is not an action word"
        )
    if status in options.action_statuses:
        return
    yield Finding(
        message=(
            f"`{last}` is an action, not a create (no collection of that name is served), yet "
            f"declares {_status_text(route)}; an action answers {_or(options.action_statuses)}"
            f"{_statuses_note(status, 'action')}"
        ),
        location=route.location,
        fix="Declare 200 (the default) or 202 Accepted for queued work; 201 is for creates.",
    )


def _or(statuses: Iterable[int]) -> str:
    shown = [str(status) for status in sorted(set(statuses))]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


#: Statuses a team may choose on purpose where the rulebook names others: a queued create (202),
#: an action without a body (204). 200 on a create and 201 on an action are plain mistakes.
_CHOSEN_ON_PURPOSE = {"create": (202,), "action": (204,), "either": (203, 204, 205, 206)}


def _statuses_note(status: int, kind: str) -> str:
    """Where a status the rulebook does not name for this kind of POST can be accepted on purpose."""
    if status not in _CHOSEN_ON_PURPOSE[kind]:
        return ""
    key = "fastapi_rules_create_statuses" if kind == "create" else "fastapi_rules_action_statuses"
    return (
        f" ({status} is not the rulebook's status for it; to accept it on purpose, add it to the "
        f"ini key {key})"
    )


def _collection_evidence(facts: AppFacts, path: str) -> str | None:
    """Why ``path`` is a collection the app serves (``GET /orders`` answering a list,
    ``/orders/{order_id}``), or None."""
    base = path.rstrip("/")
    for other in facts.routes:
        other_path = other.path.rstrip("/")
        # A GET on the same path that answers a list (a page of items counts): the collection.
        if other.method == "GET" and other_path == base and list_answer_of(other) is not None:
            return f"GET {other.path}"
    below = []
    for other in facts.routes:
        rest = other.path[len(base) :].strip("/") if other.path.startswith(base + "/") else ""
        segments = rest.split("/") if rest else []
        if segments and segments[0].startswith("{") and segments[0].endswith("}"):
            below.append((len(segments), other.target))
    # The item route itself (``/orders/{id}``) names the collection best; deeper ones do too.
    return min(below)[1] if below else None


# -- FR205 delete-returns-204 (static and runtime halves) -------------------------------------------


def _runtime_delete(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR205")
    writes = [e for e in results.for_target(route.target, "write")]
    if not writes:
        raise RuleSkipped(f"the probes sent no DELETE to {route.target}")
    exchange = writes[0]
    if not exchange.ok:
        raise RuleSkipped(f"the probe's {exchange.request.shown} {exchange.outcome}; nothing to judge")
    if exchange.status != 204:
        yield Finding(
            message=f"{exchange.request.shown} answered {exchange.status}, not 204",
            location=route.location,
        )
    elif exchange.body:
        yield Finding(
            message=f"{exchange.request.shown} answered 204 with a body ({exchange.body_excerpt(60)!r})",
            location=route.location,
        )


@rule(
    code="FR205",
    name="delete-returns-204",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #16",
    summary="DELETE declares 204 and its response has an empty body.",
    rationale="204 No Content tells clients there is nothing to parse; a 200 with `null` or the "
    "deleted object makes every client special-case deletes.",
    fix="Declare `status_code=status.HTTP_204_NO_CONTENT` and return None.",
    applies_to=_method_route("DELETE"),
    bad_example='@router.delete("/{post_id}")\nasync def delete_post(...) -> dict:\n    return {"ok": True}',
    good_example='@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT)\n'
    "async def delete_post(...) -> None: ...",
    phases=("writes",),
    needs_route_data=True,
    judges_built_requests=True,
)
def check_delete_returns_204(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    declared = route.declared_status
    if declared != 204:
        yield Finding(
            message=f"DELETE endpoint `{route.name}` declares status {declared}, not 204",
            location=route.location,
        )
        return
    yield from _runtime_delete(context)


# -- FR210 bad-input-is-422 --------------------------------------------------------------------------


@rule(
    code="FR210",
    name="bad-input-is-422",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rules #14, #16",
    summary="Malformed bodies and wrongly typed parameters answer 422, never 500; odd but schema-valid "
    "values (a `str` id that is no id, empty strings, `{}` for a free-form `dict` body, a body with "
    "only its required fields) answer 2xx or 4xx, never 5xx.",
    rationale=(
        "Bad input is the client's error: a 500 pages the on-call engineer, hides the real message "
        "from the client, and often means code ran on data nobody validated. What the app "
        "validates itself (a `str` id it converts, a `dict` body it indexes) gets every value "
        "FastAPI lets through."
    ),
    fix="Declare bodies and parameters with types (Pydantic models, `int`, `UUID`) and let FastAPI "
    "validate them; keep the RequestValidationError handler free of code that can fail.",
    applies_to=any_route,
    bad_example=(
        "@app.exception_handler(RequestValidationError)\nasync def handler(request, exc):\n"
        "    body = await request.json()  # raises on malformed JSON: 500\n\n"
        '@router.get("/{item_id}")\nasync def get_item(item_id: str):\n'
        "    return await service.get(int(item_id))  # 'abc' -> ValueError: 500"
    ),
    good_example=(
        "@app.exception_handler(RequestValidationError)\nasync def handler(request, exc):\n"
        '    return JSONResponse(status_code=422, content={"error": "validation_error", ...})\n\n'
        "@router.get(\"/{item_id}\")\nasync def get_item(item_id: int):  # FastAPI answers 422 to 'abc'"
    ),
    phases=("bad-input", "edge", "edge-writes"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_bad_input_is_422(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR210")
    exchanges = results.for_target(route.target, ("bad-input", EDGE_PHASE))
    if not exchanges:
        raise RuleSkipped(
            f"{route.target} takes no typed parameter, string parameter or body to send bad or odd input to"
        )
    valid = _happy(results, route.target)
    if valid and all(exchange.server_error for exchange in valid) and any(e.server_error for e in exchanges):
        # The bad input carries what the valid request carried (credentials included); when the
        # valid request fails the same way, the 500 is not about the input (a 500 without
        # credentials is FR704's).
        first = valid[0]
        raise RuleSkipped(
            f"the valid request to {route.target} {first.outcome} too, so a 5xx to bad input says "
            "nothing about input handling"
        )
    for exchange in exchanges:
        if not exchange.server_error:
            continue
        if exchange.phase == EDGE_PHASE:
            # Values the route's schema accepts: any 2xx or 4xx is an answer, only a 5xx is a bug.
            message = (
                f"{exchange.request.shown} with {exchange.request.description} {exchange.outcome}, "
                "not a 2xx or 4xx"
            )
        else:
            message = (
                f"{exchange.request.shown} with {exchange.request.description} {exchange.outcome}, not 422"
            )
        yield Finding(message=message, location=route.location)


# -- FR211 missing-resource-is-404 -------------------------------------------------------------------


@rule(
    code="FR211",
    name="missing-resource-is-404",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #16",
    summary="GET/PATCH/DELETE on `/{id}` for an id that does not exist answers 404, never 200 or 500.",
    rationale=(
        "`200 null` makes every client check for null; a 500 reports the client's mistake as an "
        "outage. The service raises a not-found domain error; the handler answers 404."
    ),
    fix="Raise a NotFoundError (a DomainError with status 404) in the service when the repository "
    "returns None.",
    applies_to=lambda route, options: (
        route.method in ("GET", "PATCH", "DELETE") and route.path.rstrip("/").endswith("}")
    ),
    bad_example="async def get_user(user_id: int, service: UserServiceDep) -> UserResponse | None:\n"
    "    return await service.repository.get_by_id(user_id)  # None -> 200 null",
    good_example="user = await self.repository.get_by_id(user_id)\nif user is None:\n"
    '    raise UserNotFoundError(f"User {user_id} not found")',
    phases=("missing",),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_missing_resource_is_404(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR211")
    exchanges = results.for_target(route.target, "missing")
    if not exchanges:
        raise RuleSkipped(
            f"the last path parameter of {route.target} does not map to a table the probes seeded"
        )
    exchange = exchanges[0]
    if exchange.ok:
        body = exchange.body_excerpt(60)
        yield Finding(
            message=f"{exchange.request.shown} (an id that does not exist) answered {exchange.status}"
            + (f" with {body!r}" if body else " with an empty body")
            + ", not 404",
            location=route.location,
        )
    elif exchange.server_error:
        valid = _happy(results, route.target)
        if valid and all(e.server_error for e in valid):
            # The valid request to an existing id failed the same way: the 5xx is not about the
            # missing row (seeded data the app cannot handle, or a broken route: FR210's and the
            # app's own tests' to find).
            raise RuleSkipped(
                f"the valid request to {route.target} (an id that exists) {valid[0].outcome} too, so "
                "a 5xx for an id that does not exist says nothing about the missing-row path"
            )
        yield Finding(
            message=f"{exchange.request.shown} (an id that does not exist) {exchange.outcome}, not 404",
            location=route.location,
        )
