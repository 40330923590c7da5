"""What a route answers: FR202 response-model-declared, FR203 no-orm-in-response and FR209
no-secrets-in-response (Rules #15, #16, #21).

The three read the same thing, the types the route hands FastAPI to serialise (``routes.py``), for
three defects: no model that filters the answer, a SQLAlchemy-mapped class in it, a secret-named
field in it. The runtime halves of FR203 and FR209 (ORM objects handed to FastAPI, secret-named keys
in the probes' response bodies) are declared with their static halves.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import datetime
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args, get_origin

import pydantic
from pydantic import SecretBytes, SecretStr
from starlette.responses import JSONResponse, Response

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.facts import is_subclass, type_hints
from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, RuleSkipped, Scope, Severity, rule
from pytest_fastapi_rules.rules.api.annotations import (
    _NONE_TYPE,
    _UNION_ORIGINS,
    _is_choice,
    _is_model,
    _is_response_class,
    _mapping_value,
    _sequence_item,
    _single,
    _snake,
    _strip_annotated,
    _untyped,
    _without_none,
    type_name,
)
from pytest_fastapi_rules.rules.api.routes import (
    _answer_types,
    _api_route_with_body,
    _return_annotation,
    _skip_library_endpoint,
)
from pytest_fastapi_rules.rules.common import any_route
from pytest_fastapi_rules.rules.probe_support import PROBES_UNAVAILABLE, _happy, _probe
from pytest_fastapi_rules.source.index import source_index

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.source.parsing import SourceModule


# -- FR202 ----------------------------------------------------------------------------------------


def _has_no_body(status: int) -> bool:
    """Statuses whose response carries no body (1xx, 204, 205, 304) or only a redirect (3xx)."""
    return status < 200 or status in (204, 205) or 300 <= status < 400


@rule(
    code="FR202",
    name="response-model-declared",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rules #15, #16",
    summary=(
        "Every route that returns a JSON body declares a response model (`response_model=` or "
        "the return annotation); 204 routes and non-JSON responses (streams, files) are exempt."
    ),
    rationale=(
        "The response model is what filters the answer (no stray fields, no password hash), "
        "validates it, and documents it in OpenAPI; without one FastAPI serialises whatever the "
        "endpoint returns, and `dict`/`Any` models do the same."
    ),
    fix="Annotate the endpoint's return type with a Pydantic response schema (`-> UserResponse`).",
    applies_to=_api_route_with_body,
    bad_example='@router.get("/users/{user_id}")\nasync def get_user(user_id: int) -> dict: ...',
    good_example='@router.get("/users/{user_id}")\nasync def get_user(user_id: int) -> UserResponse: ...',
)
def check_response_model_declared(context: CheckContext) -> Iterator[Finding]:
    """A route whose endpoint builds every answer itself as a non-JSON ``Response`` (a stream, a
    file, HTML) is exempt, whether the return annotation or the code says so. A route that builds a
    ``JSONResponse`` by hand fails as before, but is told so: no response model filters what it put
    in the response, and "FastAPI serialises whatever it returns" would be wrong.

    A DELETE that answers with a body is one defect, and FR205 (delete-returns-204) owns it: when
    FR202 would report such a route, it leaves it to FR205 (skipped with that reason) so the
    defect is reported once. A DELETE that declares a typed response model still passes here."""
    route = context.the_route
    findings = list(_response_model_findings(context))
    if findings and route.method == "DELETE":
        raise RuleSkipped(
            f"{route.target} answers {route.declared_status} with a body instead of 204: "
            "reported by FR205 delete-returns-204"
        )
    yield from findings


def _response_model_findings(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    _skip_library_endpoint(route, context.facts)
    status = route.declared_status
    if _has_no_body(status):
        raise RuleSkipped(f"{route.target} answers {status}, a status without a JSON body")
    response_class = route.response_class
    if _is_response_class(response_class) and not is_subclass(response_class, JSONResponse):
        raise RuleSkipped(f"{route.target} answers with `{response_class.__name__}`, not JSON")
    annotation = _return_annotation(route)
    stripped = _single(annotation)
    if _is_response_class(stripped) and (
        not is_subclass(stripped, JSONResponse) or route.response_model is None
    ):
        raise RuleSkipped(f"{route.target} returns a `{stripped.__name__}` that it builds itself")

    model = route.response_model
    if model is None:
        model = route.effective.get("stream_item_type")
    if model is None:
        fix = None
        built = _built_responses(context) if annotation is None else None
        if route.effective.get("is_json_stream"):
            message = "streams JSON lines with no item type; annotate `-> AsyncIterable[ItemSchema]`"
        elif annotation is not None and orm_classes_in(annotation):
            # One mistake, one finding: returning ORM objects is FR203's to report
            raise RuleSkipped(
                f"{route.target} returns the ORM class `{orm_classes_in(annotation)[0].__name__}` "
                "with response_model=None: reported by FR203 no-orm-in-response"
            )
        elif annotation is not None and not _is_response_class(stripped):
            message = (
                f"sets `response_model=None`, so its return annotation `{type_name(annotation)}` "
                "neither filters nor documents the answer"
            )
        elif _return_is_none(route):
            message = (
                "is annotated `-> None` but answers 200 with a `null` body; declare a response "
                "model, or `status_code=204` when there is nothing to return"
            )
        elif built is not None and built.classes and not built.other_returns and not built.json:
            # RULES.md: routes returning a `Response` subclass (streams, files) are exempt.
            raise RuleSkipped(f"{route.target} returns a `{built.classes[0].__name__}` that it builds itself")
        elif built is not None and built.json:
            name = built.json[0].__name__
            others = "; its other returns are serialised as they are" if built.other_returns else ""
            message = (
                f"answers {status} with a `{name}` it builds by hand: no response model filters, "
                f"validates or documents what goes into it{others}"
            )
            fix = (
                "Return the data and declare a response schema (`-> ItemResponse`); set the status "
                f"with `status_code=` and headers through a `Response` parameter instead of building "
                f"the `{name}`."
            )
        else:
            message = f"answers {status} with no response model: FastAPI serialises whatever it returns"
        yield Finding(message=f"endpoint `{route.name}` {message}", location=route.location, fix=fix)
        return
    untyped = _untyped(model)
    if untyped is not None:
        yield Finding(
            message=(
                f"endpoint `{route.name}` declares the untyped response model `{untyped}`: "
                "it neither filters nor documents the answer"
            ),
            location=route.location,
        )


@dataclass
class BuiltResponses:
    """What an endpoint's ``return`` statements hand back, read from its source."""

    #: Response classes it builds (``return JSONResponse(...)``, or a local bound to one).
    classes: list[type] = dataclasses.field(default_factory=list)
    #: Whether some ``return`` hands back anything else (a dict, a model, a value from a call).
    other_returns: bool = False

    @property
    def json(self) -> list[type]:
        return [cls for cls in self.classes if is_subclass(cls, JSONResponse)]


def _built_responses(context: CheckContext) -> BuiltResponses | None:
    """The responses the endpoint builds itself; None when its source cannot be read."""
    route = context.the_route
    if not context.facts.is_own_object(route.function):
        return None
    info = source_index(context.facts).function_info(route.function)
    if info is None:
        return None
    built = BuiltResponses()
    bindings = info.bindings
    for node in info.body():
        if not isinstance(node, ast.Return):
            continue
        values: list[ast.AST] = [node.value] if node.value is not None else []
        if isinstance(node.value, ast.Name) and node.value.id in bindings:
            # ``response: RedirectResponse = await client.authorize_redirect(...)`` (mealie): the
            # local's annotation says what it holds when the call that made it cannot.
            declared = info.module.annotation_type(info.annotation_of(node.value.id))
            if isinstance(declared, type) and is_subclass(declared, Response):
                if declared not in built.classes:
                    built.classes.append(declared)
                continue
            values = bindings[node.value.id]
        classes = [_response_class_built(info.module, value) for value in values]
        if values and all(cls is not None for cls in classes):
            built.classes.extend(cls for cls in classes if cls is not None and cls not in built.classes)
        else:
            built.other_returns = True
    return built


def _response_class_built(module: SourceModule, value: ast.AST) -> type | None:
    """The ``Response`` class an expression constructs (``JSONResponse(...)``), else None."""
    if not isinstance(value, ast.Call):
        return None
    cls = module.value_of(value.func)
    return cls if isinstance(cls, type) and is_subclass(cls, Response) else None


def _return_is_none(route: RouteFacts) -> bool:
    hints = type_hints(route.function)
    return "return" in hints and hints["return"] in (None, _NONE_TYPE)


# -- FR203 ----------------------------------------------------------------------------------------


def _mapped_class(tp: Any) -> bool:
    """Whether ``tp`` is a SQLAlchemy-mapped class (declarative or imperative)."""
    if not isinstance(tp, type):
        return False
    try:
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Mapper
    except ImportError:  # pragma: no cover - the app cannot have ORM classes then
        return False
    try:
        return isinstance(sa_inspect(tp, raiseerr=False), Mapper)
    except Exception:  # noqa: BLE001 - inspection of exotic classes
        return False


def _iter_nested_types(tp: Any) -> Iterator[Any]:
    """Every type reachable from ``tp``: union members, container items, dict values, fields.

    Nested Pydantic models and dataclasses are entered (each once), so a mapped class hidden in a
    field with ``arbitrary_types_allowed`` is found too.
    """
    stack = [tp]
    seen: set[int] = set()
    steps = 0
    while stack and steps < 2000:
        steps += 1
        current, _ = _strip_annotated(stack.pop())
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if get_origin(current) in _UNION_ORIGINS:
            stack.extend(get_args(current))
            continue
        is_seq, item = _sequence_item(current)
        if is_seq:
            stack.extend(get_args(current) or [item])
            continue
        is_map, value = _mapping_value(current)
        if is_map:
            stack.append(value)
            continue
        if _is_model(current):
            stack.extend(f.annotation for f in current.model_fields.values())
        elif isinstance(current, type) and dataclasses.is_dataclass(current):
            hints = type_hints(current)
            stack.extend(hints.get(f.name, f.type) for f in dataclasses.fields(current))


def orm_classes_in(tp: Any) -> list[type]:
    """SQLAlchemy-mapped classes that ``tp`` is or contains (FR203's finding, which FR202 defers to)."""
    found: list[type] = []
    for current in _iter_nested_types(tp):
        if _mapped_class(current) and current not in found:
            found.append(current)
    return found


def _app_has_orm(facts: AppFacts) -> bool:
    try:
        return bool(facts.mapped_classes)
    except Exception:  # noqa: BLE001 - SQLAlchemy absent or a registry that cannot be read
        return False


def _runtime_no_orm_in_response(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR203")
    names = results.orm_returns.get(route.target)
    if names:
        yield Finding(
            message=f"at runtime, endpoint `{route.name}` handed SQLAlchemy `{', '.join(names)}` "
            "instance(s) to FastAPI for serialisation without a response model",
            location=route.location,
        )


@rule(
    code="FR203",
    name="no-orm-in-response",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP_PROBE,
    section="Rule #15",
    summary=(
        "No response model or return annotation is (or contains) a SQLAlchemy-mapped class; "
        "endpoints convert ORM objects to Pydantic schemas."
    ),
    rationale=(
        "Serialising an ORM object triggers lazy loads outside the session (MissingGreenlet on "
        "AsyncSession), follows relationships into cycles, and leaks every column, including "
        "password hashes."
    ),
    fix="Return a Pydantic schema with `from_attributes=True` (`UserResponse.model_validate(user)`).",
    applies_to=any_route,
    bad_example=(
        '@router.get("/users/{user_id}", response_model=None)\n'
        "async def get_user(user_id: int, service: UserServiceDep) -> User: ..."
    ),
    good_example=(
        '@router.get("/users/{user_id}")\n'
        "async def get_user(user_id: int, service: UserServiceDep) -> UserResponse:\n"
        "    return UserResponse.model_validate(await service.get_user(user_id))"
    ),
    runtime=_runtime_no_orm_in_response,
    unavailable=PROBES_UNAVAILABLE,
    phases=("gets",),
    needs_route_data=True,
    judges_built_requests=True,
)
def check_no_orm_in_response(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    reported: set[int] = set()
    for what, tp in _answer_types(route):
        for mapped in orm_classes_in(tp):
            if id(mapped) in reported:
                continue
            reported.add(id(mapped))
            whole = f"the {what} `{type_name(tp)}`"
            relation = "is" if _single(tp) is mapped else "contains"
            yield Finding(
                message=(
                    f"{whole} of endpoint `{route.name}` {relation} the SQLAlchemy-mapped class "
                    f"`{mapped.__name__}`"
                ),
                location=route.location,
            )
    if not reported and not _app_has_orm(context.facts):
        raise RuleSkipped("the app has no SQLAlchemy-mapped classes")


# -- FR209 ----------------------------------------------------------------------------------------

#: Types whose values are never a secret (a flag, a count, a timestamp, a fixed choice).
_SCALAR_TYPES: tuple[type, ...] = (
    bool,
    int,
    float,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
)

SECRET_NAMES = (
    "password",
    "passwd",
    "hashed_password",
    "password_hash",
    "secret",
    "client_secret",
    "secret_key",
    "api_key",
    "apikey",
    "private_key",
)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """A field name that holds a password, a hash or a secret (``UserOut.hashedPassword``...).

    Cached: FR209 asks it of every key of every answer body, which repeat from route to route."""
    snake = _snake(name)
    if snake.startswith(_MASKED_PREFIXES):
        return False
    if snake.startswith("hashed_"):
        return True
    return any(snake == secret or snake.endswith(f"_{secret}") for secret in SECRET_NAMES)


#: Pydantic's secret types serialise as ``**********``: the value never reaches the client.
_MASKED_TYPES: tuple[type, ...] = tuple(
    t for t in (SecretStr, SecretBytes, getattr(pydantic, "Secret", None)) if isinstance(t, type)
)
#: Prefixes of fields that show a harmless part of a secret (``masked_api_key: "sk-...f3a9"``).
_MASKED_PREFIXES = ("masked_", "redacted_", "obfuscated_", "truncated_")


def _cannot_hold_secret(tp: Any) -> bool:
    """Flags, numbers, timestamps, fixed choices and masked secrets never carry a secret's value."""
    members = _without_none(tp)
    return bool(members) and all(
        is_subclass(m, _SCALAR_TYPES) or _is_choice(m) or is_subclass(get_origin(m) or m, _MASKED_TYPES)
        for m in members
    )


def _excluded_names(spec: Any) -> set[str]:
    if isinstance(spec, set | frozenset | list | tuple):
        return {str(x) for x in spec}
    if isinstance(spec, dict):
        return {str(k) for k, v in spec.items() if v is True or v is ...}
    return set()


def secret_fields(
    tp: Any,
    top_exclude: collections.abc.Set[str] = frozenset(),
    top_include: collections.abc.Set[str] | None = None,
) -> Iterator[str]:
    """Dotted paths (``UserResponse.profile.api_key``) of secret-named fields reachable from ``tp``.

    Walks nested models, dataclasses, lists, unions and dict values; fields the model never
    serialises (``Field(exclude=True)``) and those the route excludes are left out.
    """
    seen: set[int] = set()
    budget = [5000]  # fields visited: a bound for pathological, very wide schemas

    def walk(current: Any, path: str, top: bool) -> Iterator[str]:
        budget[0] -= 1
        if budget[0] < 0:
            return
        current, _ = _strip_annotated(current)
        if get_origin(current) in _UNION_ORIGINS:
            for member in get_args(current):
                yield from walk(member, path, top)
            return
        is_seq, item = _sequence_item(current)
        if is_seq:
            for member in get_args(current) or [item]:
                if member is not Ellipsis:
                    yield from walk(member, path, top)
            return
        is_map, value = _mapping_value(current)
        if is_map:
            yield from walk(value, path, False)
            return
        fields: list[tuple[str, list[str], Any]] = []
        if _is_model(current):
            for name, info in current.model_fields.items():
                if info.exclude is True:
                    continue
                spellings = [name] + [a for a in (info.alias, info.serialization_alias) if isinstance(a, str)]
                fields.append((name, spellings, info.annotation))
        elif isinstance(current, type) and dataclasses.is_dataclass(current):
            hints = type_hints(current)
            fields = [(f.name, [f.name], hints.get(f.name, f.type)) for f in dataclasses.fields(current)]
        else:
            return
        if id(current) in seen:
            return
        seen.add(id(current))
        prefix = path or current.__name__
        for name, spellings, annotation in fields:
            if top and (name in top_exclude or (top_include is not None and name not in top_include)):
                continue
            field_path = f"{prefix}.{name}"
            if any(is_secret_name(s) for s in spellings) and not _cannot_hold_secret(annotation):
                yield field_path
            yield from walk(annotation, field_path, False)
        seen.discard(id(current))

    yield from walk(tp, "", True)


def _secret_keys(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if (
                isinstance(key, str)
                and is_secret_name(key)
                and isinstance(inner, str)
                and inner
                and set(inner) != {"*"}
            ):
                yield where
            yield from _secret_keys(inner, where)
    elif isinstance(value, list):
        for item in value[:50]:
            yield from _secret_keys(item, f"{path}[]")


def _flagged_by_fr203(context: CheckContext) -> bool:
    """Whether FR203 reports this route (no response model, ORM objects handed to FastAPI)."""
    try:
        return bool(list(registry.get_rule("FR203").check(context)))
    except Exception:  # noqa: BLE001 - FR203 skipped, or could not judge: no double report to avoid
        return False


def _runtime_no_secrets(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR209")
    if _flagged_by_fr203(context):
        # Serialising the ORM object itself puts every column in the body, the password hash
        # included: that is FR203's finding. One mistake, one finding.
        raise RuleSkipped(f"FR203 reports {route.target}: it serialises ORM objects without a response model")
    seen: set[str] = set()
    for exchange in _happy(results, route.target):
        if not exchange.ok:
            continue
        for key in _secret_keys(exchange.json):
            leaf = key.rsplit(".", 1)[-1]
            if leaf in seen:
                continue
            seen.add(leaf)
            yield Finding(
                message=f"the response body of {exchange.request.shown} carries `{key}`",
                location=route.location,
            )


@rule(
    code="FR209",
    name="no-secrets-in-response",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP_PROBE,
    section="Rules #15, #21",
    summary=(
        "No response model (nested models included) has a field named like a password, hash or "
        "secret (`password`, `hashed_password`, `secret`, `api_key`, ...)."
    ),
    rationale=(
        "Whatever the response model declares is sent to the client: a `hashed_password` field "
        "hands out the hash for offline cracking, an `api_key` field hands out the key."
    ),
    fix="Remove the field from the response schema (keep it in the ORM model and the create schema).",
    applies_to=any_route,
    bad_example="class UserResponse(BaseModel):\n    id: int\n    email: str\n    hashed_password: str",
    good_example="class UserResponse(BaseModel):\n    id: int\n    email: str",
    runtime=_runtime_no_secrets,
    unavailable=PROBES_UNAVAILABLE,
    phases=("gets",),
    needs_route_data=True,
    judges_built_requests=True,
)
def check_no_secrets_in_response(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    answers = _answer_types(route)
    if not answers:
        raise RuleSkipped(f"{route.target} declares no response type to inspect")
    exclude = _excluded_names(route.effective.get("response_model_exclude"))
    include_spec = route.effective.get("response_model_include")
    include = _excluded_names(include_spec) if include_spec is not None else None
    reported: set[str] = set()
    for what, tp in answers:
        for path in secret_fields(tp, exclude, include):
            if path in reported:
                continue
            reported.add(path)
            yield Finding(
                message=f"the {what} of endpoint `{route.name}` exposes the secret field `{path}`",
                location=route.location,
            )
