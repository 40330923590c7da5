"""FR2xx: routes and API design (Rules #7, #15, #16, #17).

The checks here read what FastAPI itself knows about a route: its effective response model (from
``response_model=`` or the return annotation), response class, declared status code and the
parameters of its whole dependency tree. The type helpers at the top walk annotations the way
FastAPI and Pydantic read them (``Annotated`` extras, ``Optional``/unions, containers, nested models),
so one understanding of "what does this route answer" is shared by every rule of the family.

The family's probe rules (FR205, FR210, FR211) and the runtime halves of FR203, FR207 and FR209 live
here too, declared with their static halves (``rule(runtime=...)``).
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import datetime
import enum
import re
import types
import typing
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, SecretBytes, SecretStr
from starlette.responses import JSONResponse, Response

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.facts import (
    is_coroutine_callable,
    is_subclass,
    plain_annotation,
    type_hints,
    unwrap_callable,
)
from pytest_fastapi_rules.probing.edges import EDGE_PHASE
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
from pytest_fastapi_rules.rules.common import any_route, code_of, is_api_route, takes_password_form
from pytest_fastapi_rules.rules.probe_support import PROBES_UNAVAILABLE, _happy, _method_route, _probe
from pytest_fastapi_rules.source.index import source_index

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions
    from pytest_fastapi_rules.source.parsing import SourceModule


# -- route predicates -------------------------------------------------------------------------------


def _api_route_with(*methods: str) -> Callable[[RouteFacts, RulesOptions], bool]:
    """``applies_to`` for API routes of the given HTTP methods."""
    wanted = frozenset(methods)

    def predicate(route: RouteFacts, options: RulesOptions) -> bool:
        return route.method in wanted and is_api_route(route, options)

    predicate.__name__ = f"api_{'_'.join(m.lower() for m in methods)}_route"
    return predicate


def _api_route_with_body(route: RouteFacts, options: RulesOptions) -> bool:
    """API routes whose method can answer with a body (HEAD and OPTIONS never do)."""
    return route.method not in ("HEAD", "OPTIONS") and is_api_route(route, options)


# -- reading annotations ----------------------------------------------------------------------------

_NONE_TYPE = type(None)
_UNION_ORIGINS: tuple[Any, ...] = (Union, types.UnionType)
_SEQUENCE_ORIGINS: tuple[Any, ...] = (
    list,
    set,
    frozenset,
    tuple,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
    collections.abc.Collection,
    collections.abc.Iterable,
)
_MAPPING_ORIGINS: tuple[Any, ...] = (
    dict,
    collections.abc.Mapping,
    collections.abc.MutableMapping,
)
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


def _strip_annotated(tp: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, x, y]`` -> ``(T, [x, y])``, nested ``Annotated`` flattened."""
    extras: list[Any] = []
    while get_origin(tp) is typing.Annotated:
        extras.extend(getattr(tp, "__metadata__", ()))
        tp = tp.__origin__
    return tp, extras


def _union_members(tp: Any) -> list[Any]:
    """The members of a union (``X | Y``, ``Optional[X]``), or ``[tp]``."""
    if get_origin(tp) in _UNION_ORIGINS:
        return list(get_args(tp))
    return [tp]


def _without_none(tp: Any) -> list[Any]:
    """Union members other than ``None``, each with its ``Annotated`` stripped."""
    tp, _ = _strip_annotated(tp)
    return [_strip_annotated(m)[0] for m in _union_members(tp) if m is not _NONE_TYPE and m is not None]


def _single(tp: Any) -> Any:
    """The one non-None type of ``T``/``Optional[T]``/``Annotated[...]``, or None for real unions."""
    members = _without_none(tp)
    return members[0] if len(members) == 1 else None


def _is_model(tp: Any) -> bool:
    return is_subclass(tp, BaseModel) and tp is not BaseModel


def _is_response_class(tp: Any) -> bool:
    return is_subclass(tp, Response)


def type_name(tp: Any) -> str:
    """A readable name for a type in a message: ``list[UserResponse]``, ``dict[str, Any]``."""
    if tp is None or tp is _NONE_TYPE:
        return "None"
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    text = repr(tp)
    text = re.sub(r"\btyping\.", "", text)
    text = re.sub(r"\bcollections\.abc\.", "", text)
    return re.sub(r"\b(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*)", r"\1", text)


def _sequence_item(tp: Any) -> tuple[bool, Any]:
    """``(True, item type)`` for list-like types (``tuple[X, ...]`` too, fixed tuples not)."""
    origin = get_origin(tp) or tp
    if origin is str or origin is bytes:
        return False, None
    if origin not in _SEQUENCE_ORIGINS:
        return False, None
    args = get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return True, args[0]
        return (not args), Any
    return True, (args[0] if args else Any)


def _mapping_value(tp: Any) -> tuple[bool, Any]:
    origin = get_origin(tp) or tp
    if origin not in _MAPPING_ORIGINS:
        return False, None
    args = get_args(tp)
    return True, (args[1] if len(args) == 2 else Any)


def _untyped(tp: Any) -> str | None:
    """Why ``tp`` describes no shape at all (``Any``, ``dict``, ``list[Any]``...), or None if typed."""
    tp, _ = _strip_annotated(tp)
    if tp is Any or tp is object:
        return type_name(tp)
    members = _without_none(tp)
    if len(members) > 1:
        return type_name(tp) if all(_untyped(m) for m in members) else None
    if not members:
        return None
    inner = members[0]
    is_seq, item = _sequence_item(inner)
    if is_seq:
        return type_name(tp) if _untyped(item) else None
    is_map, value = _mapping_value(inner)
    if is_map:
        return type_name(tp) if _untyped(value) else None
    if inner is Any or inner is object:
        return type_name(tp)
    return None


def _constraints(field_info: Any, annotation: Any) -> dict[str, Any]:
    """Numeric and length bounds (``le``, ``lt``, ``ge``, ``gt``, ``max_length``) of a parameter.

    Pydantic and FastAPI keep them as ``annotated_types`` objects (``Le``, ``MaxLen``, ``Interval``),
    ``StringConstraints`` or nested ``FieldInfo`` in ``field_info.metadata``, or inside the
    annotation itself (``constr(max_length=...)`` under ``Optional``): all places are read.
    """
    found: dict[str, list[Any]] = {}
    pending: list[Any] = list(getattr(field_info, "metadata", None) or [])
    for name in ("le", "lt", "ge", "gt", "max_length"):  # pydantic v1-era FieldInfo kept them flat
        value = getattr(field_info, name, None)
        if isinstance(value, int | float):
            found.setdefault(name, []).append(value)
    annotations = [annotation]
    seen = 0
    while annotations and seen < 64:
        seen += 1
        current, extras = _strip_annotated(annotations.pop())
        pending.extend(extras)
        for member in _union_members(current):
            if member is not current or get_origin(member) is typing.Annotated:
                annotations.append(member)
    steps = 0
    while pending and steps < 256:
        steps += 1
        item = pending.pop()
        if item is None:
            continue
        inner = getattr(item, "metadata", None)
        if isinstance(inner, list):
            pending.extend(inner)
        for name in ("le", "lt", "ge", "gt", "max_length"):
            value = getattr(item, name, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.setdefault(name, []).append(value)
    bounds: dict[str, Any] = {}
    for name in ("le", "lt", "max_length"):
        if name in found:
            bounds[name] = min(found[name])
    for name in ("ge", "gt"):
        if name in found:
            bounds[name] = max(found[name])
    return bounds


def _snake(name: str) -> str:
    """``apiKey``/``APIKey``/``api-key`` -> ``api_key``: how a field name reads, whatever its case."""
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return text.replace("-", "_").lower()


def _return_annotation(route: RouteFacts) -> Any:
    """The endpoint's return annotation as FastAPI reads it (None when absent)."""
    try:
        from fastapi.dependencies.utils import get_typed_return_annotation

        return get_typed_return_annotation(route.endpoint)
    except Exception:  # noqa: BLE001 - unresolvable forward references, odd callables
        hints = type_hints(route.function) or route.endpoint_type_hints()
        return hints.get("return")


def _answer_types(route: RouteFacts) -> list[tuple[str, Any]]:
    """What the route hands FastAPI to serialise: ``(what, type)`` for each declared type.

    The effective response model and the item type of a JSON-lines/SSE stream; the return
    annotation only when FastAPI used neither (``response_model=None``), since it is otherwise
    the response model itself or overridden by ``response_model=``.
    """
    answers: list[tuple[str, Any]] = []
    model = route.response_model
    if model is not None:
        answers.append(("response model", model))
    stream_item = route.effective.get("stream_item_type")
    if stream_item is not None:
        answers.append(("stream item type", stream_item))
    annotation = _return_annotation(route)
    if annotation is not None and model is None and stream_item is None:
        answers.append(("return annotation", annotation))
    return answers


# -- query parameters of the whole dependency tree -------------------------------------------------


@dataclass(frozen=True)
class QueryParam:
    """One query parameter as the client sends it, and the dependency it comes from."""

    name: str
    alias: str
    annotation: Any
    field_info: Any
    #: The callable whose signature declares it (the endpoint or a sub-dependency).
    origin: Any
    #: The Pydantic model it is a field of, for ``Annotated[Model, Query()]`` parameters.
    model: type[BaseModel] | None = None

    @property
    def names(self) -> set[str]:
        """Both spellings, snake-cased: what a name list is compared against."""
        return {_snake(self.name), _snake(self.alias)}

    @property
    def bounds(self) -> dict[str, Any]:
        return _constraints(self.field_info, self.annotation)


def _query_model(field: Any) -> type[BaseModel] | None:
    """The model of an ``Annotated[Model, Query()]`` parameter (FastAPI 0.115+), else None."""
    single = _single(getattr(getattr(field, "field_info", None), "annotation", None))
    return single if _is_model(single) else None


def iter_query_params(route: RouteFacts) -> Iterator[QueryParam]:
    """Every query parameter of the route's dependency tree, query models expanded."""
    for dependant in route.iter_dependants():
        origin = dependant.call if dependant.call is not None else route.endpoint
        for field in getattr(dependant, "query_params", None) or []:
            field_info = getattr(field, "field_info", None)
            model = _query_model(field)
            if model is not None:
                for name, info in model.model_fields.items():
                    yield QueryParam(
                        name=name,
                        alias=info.alias or name,
                        annotation=info.annotation,
                        field_info=info,
                        origin=origin,
                        model=model,
                    )
                continue
            name = str(getattr(field, "name", ""))
            yield QueryParam(
                name=name,
                alias=str(getattr(field, "alias", None) or name),
                annotation=getattr(field_info, "annotation", None),
                field_info=field_info,
                origin=origin,
            )


def _describe_origin(param: QueryParam, route: RouteFacts, facts: AppFacts) -> str:
    """`` (from dependency `x`)`` when the parameter is not the endpoint's own; '' otherwise."""
    parts: list[str] = []
    if param.model is not None:
        parts.append(f"of query model `{param.model.__name__}`")
    if param.origin is not route.endpoint and param.origin is not None:
        owner = code_of(param.origin) if not facts.is_own_object(param.origin) else _short(param.origin)
        library = "" if facts.is_own_object(param.origin) else ", a library dependency"
        parts.append(f"from dependency `{owner}`{library}")
    return f" ({'; '.join(parts)})" if parts else ""


def _short(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__)


def _param_location(param: QueryParam, route: RouteFacts, facts: AppFacts) -> Location | None:
    """Where to fix a parameter: the app's own dependency that declares it, else the endpoint."""
    if param.origin is not route.endpoint and facts.is_own_object(param.origin):
        return facts.location_of(param.origin) or route.location
    return route.location


def _skip_library_endpoint(route: RouteFacts, facts: AppFacts) -> None:
    """Declarations made by a library's endpoint (fastapi-users' login) are not the app's to change.

    Raises :class:`RuleSkipped` naming the library, so the user sees why the route was left alone.
    """
    function = route.function
    if facts.is_own_object(function):
        return
    module = getattr(function, "__module__", None)
    if not module:
        return
    raise RuleSkipped(
        f"{route.target} is served by `{code_of(function)}` from the library `{module.split('.')[0]}`: "
        "its declarations are the library's"
    )


# -- FR201 ----------------------------------------------------------------------------------------


@rule(
    code="FR201",
    name="async-endpoint",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #7",
    summary="Every endpoint function is `async def` (decorators and partials unwrapped).",
    rationale=(
        "FastAPI runs a plain `def` endpoint in a thread pool of 40 threads; in an async app it "
        "cannot await the async session or clients, and a slow one starves the pool."
    ),
    fix="Declare the endpoint with `async def` and await its async calls.",
    applies_to=any_route,
    bad_example='@router.get("/users/{user_id}")\ndef get_user(user_id: int) -> UserResponse: ...',
    good_example='@router.get("/users/{user_id}")\nasync def get_user(user_id: int) -> UserResponse: ...',
)
def check_async_endpoint(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    if is_coroutine_callable(route.endpoint):
        return
    name = getattr(route.function, "__name__", repr(route.function))
    sync_session = _sync_session_dependency(route)
    if sync_session is not None:
        yield Finding(
            message=f"endpoint `{name}` is a sync `def` that works with a sync SQLAlchemy session "
            f"(`{sync_session}`); FastAPI runs it in a worker thread",
            location=route.location,
            fix="Move the data access to async SQLAlchemy (`AsyncSession` from an `async_sessionmaker`, "
            "awaited), then make the endpoint `async def`; `async def` alone would run the sync "
            "session's queries on the event loop and block every other request.",
        )
        return
    yield Finding(
        message=f"endpoint `{name}` is a sync `def`; FastAPI runs it in a worker thread",
        location=route.location,
    )


def _sync_session_dependency(route: RouteFacts) -> str | None:
    """The name of a dependency of the route that yields a sync SQLAlchemy ``Session``, if any."""
    from sqlalchemy.orm import Session

    for parameter, annotation in type_hints(route.function).items():
        if parameter != "return" and is_subclass(plain_annotation(annotation), Session):
            return parameter
    for dependant in route.iter_dependants():
        call = dependant.call
        if call is None:
            continue
        returned = type_hints(unwrap_callable(call)).get("return")
        for candidate in (returned, *typing.get_args(returned)):
            if is_subclass(candidate, Session):
                return str(getattr(unwrap_callable(call), "__name__", "the session dependency"))
    return None


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
    """SQLAlchemy-mapped classes that ``tp`` is or contains (shared with FR203's runtime half)."""
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

_token_url_cache: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _words(segment: str) -> list[str]:
    return [w for w in re.split(r"[-_.]+", _snake(segment)) if w]


def _oauth2_token_paths(facts: AppFacts) -> frozenset[str]:
    """``tokenUrl``/``refreshUrl`` of every OAuth2 flow of every security scheme in the app."""
    cached = _token_url_cache.get(facts)
    if cached is not None:
        return cached
    urls: set[str] = set()
    for route in facts.routes:
        for scheme in route.security_schemes():
            flows = getattr(getattr(scheme, "model", None), "flows", None)
            for flow_name in ("password", "clientCredentials", "authorizationCode"):
                flow = getattr(flows, flow_name, None)
                for attr in ("tokenUrl", "refreshUrl"):
                    url = getattr(flow, attr, None)
                    if isinstance(url, str) and url:
                        urls.add(url)
    result = frozenset(urls)
    _token_url_cache[facts] = result
    return result


def _matches_token_url(path: str, url: str) -> bool:
    """Whether route ``path`` is the endpoint of ``url`` (absolute URL, absolute or relative path)."""
    from urllib.parse import urlsplit

    url_path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    route_path = path.rstrip("/") or "/"
    if url_path.startswith("/"):
        return route_path == (url_path.rstrip("/") or "/")
    relative = url_path.strip("/")
    if not relative:
        return False
    return route_path == f"/{relative}" or route_path.endswith(f"/{relative}")


def is_token_endpoint(route: RouteFacts, facts: AppFacts) -> bool:
    """The OAuth2 token endpoint: a ``tokenUrl`` of the app's schemes, or a password-form route."""
    if route.method != "POST":
        return False
    # tokenUrl is what clients call: with root_path="/api" behind a proxy it carries the prefix
    root_path = str(getattr(facts.app, "root_path", "") or "").rstrip("/")
    paths = {route.path, root_path + route.path} if root_path else {route.path}
    urls = _oauth2_token_paths(facts)
    if any(_matches_token_url(path, url) for path in paths for url in urls):
        return True
    return takes_password_form(route)


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


# -- FR206 ----------------------------------------------------------------------------------------


def _body_models(route: RouteFacts) -> list[type[BaseModel]]:
    """Pydantic models received as the request body, anywhere in the dependency tree."""
    models: list[type[BaseModel]] = []
    for dependant in route.iter_dependants():
        for field in getattr(dependant, "body_params", None) or []:
            single = _single(getattr(getattr(field, "field_info", None), "annotation", None))
            if _is_model(single) and single not in models:
                models.append(single)
    return models


def _field_names(model: type[BaseModel]) -> set[str]:
    """A model's field names and string aliases, snake-cased (``newPassword`` -> ``new_password``)."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(_snake(name))
        for alias in (info.alias, info.validation_alias, info.serialization_alias):
            if isinstance(alias, str):
                names.add(_snake(alias))
    return names


def _response_field_names(route: RouteFacts) -> tuple[set[str], list[str]]:
    """Field names of the route's response models and of the models nested in them (two levels),
    with the names of those models; empty when the route declares no model."""
    pending = [(model, 0) for _, tp in _answer_types(route) for model in _models_in(tp)]
    seen: list[type[BaseModel]] = []
    names: set[str] = set()
    while pending:
        model, depth = pending.pop(0)
        if model in seen:
            continue
        seen.append(model)
        names |= _field_names(model)
        if depth < 2:
            for info in model.model_fields.values():
                pending.extend((nested, depth + 1) for nested in _models_in(info.annotation))
    return names, [model.__name__ for model in seen]


def _models_in(tp: Any, depth: int = 0) -> list[type[BaseModel]]:
    """Pydantic models an annotation stands for: ``X``, ``list[X]``, ``X | None``, ``Page[X]``."""
    if depth > 6:
        return []
    tp, _ = _strip_annotated(tp)
    if _is_model(tp):
        return [tp]
    found: list[type[BaseModel]] = []
    for arg in get_args(tp):
        found.extend(m for m in _models_in(arg, depth + 1) if m not in found)
    return found


def _command_body(route: RouteFacts, models: list[type[BaseModel]]) -> str | None:
    """Why a PATCH is a command rather than a partial update, or None when it may be one."""
    answered, answer_models = _response_field_names(route)
    if not answered:
        return None
    sent: set[str] = set()
    for model in models:
        sent |= _field_names(model)
    if sent & answered:
        return None
    bodies = ", ".join(f"`{model.__name__}`" for model in models)
    answers = ", ".join(f"`{name}`" for name in answer_models)
    return (
        f"{route.target} looks like a command, not a partial update: its body {bodies} shares no "
        f"field with its response model {answers}, so its required fields are the command's "
        "arguments (e.g. current and new password)"
    )


@rule(
    code="FR206",
    name="update-schema-partial",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rules #14, #16",
    summary="PATCH body models have every field optional; PUT body models are full.",
    rationale=(
        "PATCH changes only the fields sent: a required field forces clients to resend data they "
        "do not change. PUT replaces the whole resource: a model with nothing required turns it "
        "into a PATCH that silently keeps old values. Heuristic: a PATCH whose body shares no "
        "field with the route's response model (or the models nested in it) is a command on the "
        "resource, not a partial update of it (`PATCH /users/me/password` with the current and "
        "the new password, answering a message): its required fields are the point, so the "
        "route is skipped. Without a response model there is nothing to compare, and the body "
        "is judged. A PUT body with nothing required is partial only when every field defaults "
        "to None or a PATCH route takes the same model, and never when it is the class a GET "
        "route answers with: sending back the full representation is a full replacement."
    ),
    fix="PATCH: give every field a default (`bio: str | None = None`); PUT: make the fields required.",
    applies_to=_api_route_with("PATCH", "PUT"),
    bad_example="class UserUpdate(BaseModel):\n    email: EmailStr\n    bio: str | None = None",
    good_example=(
        "class UserUpdate(BaseModel):\n    email: EmailStr | None = None\n    bio: str | None = None"
    ),
)
def check_update_schema_partial(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    _skip_library_endpoint(route, context.facts)
    models = _body_models(route)
    if not models:
        raise RuleSkipped(f"{route.target} takes no Pydantic body model")
    requires = any(info.is_required() for model in models for info in model.model_fields.values())
    if route.method == "PATCH" and requires:
        command = _command_body(route, models)
        if command is not None:
            raise RuleSkipped(command)
    for model in models:
        fields = model.model_fields
        required = [name for name, info in fields.items() if info.is_required()]
        location = context.facts.location_of(model) or route.location
        if route.method == "PATCH" and required:
            names = ", ".join(f"`{n}`" for n in required)
            yield Finding(
                message=(
                    f"PATCH body `{model.__name__}` requires {names}; a partial update makes "
                    "every field optional"
                ),
                location=location,
            )
        elif route.method == "PUT" and fields and not required:
            why = _partial_because(model, context.facts)
            if why is None:
                # Concrete defaults (`enabled: bool = True`): a full representation whose client
                # may leave the defaults out. That is a full PUT.
                continue
            yield Finding(
                message=(
                    f"PUT body `{model.__name__}` has no required field and {why}: it is a partial "
                    "update; a PUT replaces the whole resource, so its model is the full representation"
                ),
                location=location,
                fix="Make the fields required (a PUT sends them all), or serve partial updates as PATCH.",
            )


def _partial_because(model: type[BaseModel], facts: AppFacts) -> str | None:
    """Why a body model with no required field is a partial update, or None when it is not one: its
    fields all default to None, or a PATCH route of the app takes the same model.

    The class a GET route answers with is the resource's full representation, whatever its
    defaults and whichever other routes take it (mealie's PUT, PATCH and GET all use ``Recipe``):
    a PUT that sends back what GET gave is a full replacement.
    """
    for other in facts.routes:
        if other.method == "GET" and plain_annotation(other.response_model) is model:
            return None
    fields = model.model_fields.values()
    if all(info.default is None and info.default_factory is None for info in fields):
        return "every field defaults to None"
    for other in facts.routes:
        if other.method == "PATCH" and model in _body_models(other):
            return f"{other.target} takes it as its PATCH body"
    return None


# -- FR207 ----------------------------------------------------------------------------------------

PAGE_SIZE_NAMES = frozenset(
    {
        "limit",
        "page_size",
        "pagesize",
        "per_page",
        "perpage",
        "items_per_page",
        "results_per_page",
        "size",
        "page_limit",
        "take",
        "first",
        "top",
        "count",
        "max_results",
        "max_items",
        "num_results",
    }
)
#: Name endings that make any parameter a page size (``rows_per_page``, ``comments_page_size``).
PAGE_SIZE_SUFFIXES = ("_per_page", "_page_size", "_page_limit")
#: Offsets: a row offset, or a page number (a ``cursor`` is opaque: no bound applies to it).
OFFSET_NAMES = frozenset(
    {"skip", "offset", "start", "page", "page_number", "page_num", "page_no", "page_index"}
)
#: Offsets that count pages, usually from 1 (``ge=1``), unless their default is 0.
PAGE_NUMBER_NAMES = frozenset({"page", "page_number", "page_num", "page_no"})
ENVELOPE_LIST_FIELDS = ("items", "data", "results", "records", "entries", "rows")
#: Fields that may sit beside the one list of an envelope: counts, links and cursors of the page.
ENVELOPE_META_FIELDS = frozenset(
    {
        "total",
        "total_count",
        "total_items",
        "total_pages",
        "count",
        "page",
        "pages",
        "page_count",
        "page_size",
        "per_page",
        "items_per_page",
        "size",
        "limit",
        "offset",
        "skip",
        "next",
        "previous",
        "prev",
        "next_page",
        "previous_page",
        "prev_page",
        "next_url",
        "previous_url",
        "cursor",
        "next_cursor",
        "previous_cursor",
        "prev_cursor",
        "has_more",
        "has_next",
        "has_previous",
        "has_prev",
        "links",
        "meta",
        "metadata",
        "pagination",
        "message",
        "status",
        "success",
    }
)


def _is_model_list(tp: Any) -> bool:
    """``list[Model]`` (``Optional``/``Annotated`` allowed): a list of objects, not of scalars."""
    inner = _single(tp)
    if inner is None:
        return False
    is_sequence, item = _sequence_item(inner)
    return is_sequence and _is_model(_single(item))


def _list_answer(tp: Any) -> str | None:
    """How ``tp`` answers a list, or None for a single object.

    ``list[X]``; an envelope whose list field has a conventional name (``Page.items``,
    ``PaginatedListResponse.data``); or an envelope with exactly one list-of-models field of any
    name (``{notebooks: list[NotebookSchema]}``) beside nothing but page metadata (``total``,
    ``next_cursor``...). A resource that merely holds a list (a post with its comments) has other
    fields, so it is not taken for a list.
    """
    single = _single(tp)
    if single is None:
        return None
    if _sequence_item(single)[0]:
        return f"`{type_name(tp)}`"
    if _is_model(single):
        for name in ENVELOPE_LIST_FIELDS:
            info = single.model_fields.get(name)
            inner = _single(info.annotation) if info is not None else None
            if inner is not None and _sequence_item(inner)[0]:
                return f"`{single.__name__}.{name}` (`{type_name(info.annotation if info else None)}`)"
        fields = single.model_fields
        lists = [name for name, info in fields.items() if _is_model_list(info.annotation)]
        others = [name for name in fields if name not in lists]
        if len(lists) == 1 and all(_snake(name) in ENVELOPE_META_FIELDS for name in others):
            info = fields[lists[0]]
            return f"`{single.__name__}.{lists[0]}` (`{type_name(info.annotation)}`)"
    return None


def _is_int_param(param: QueryParam) -> bool:
    single = _single(param.annotation)
    return is_subclass(single, int) and not is_subclass(single, bool)


def upper_bound(bounds: dict[str, Any]) -> float | None:
    """The largest integer value ``le``/``lt`` allow (``lt=101`` reads as 100), or None."""
    candidates = []
    if "le" in bounds:
        candidates.append(bounds["le"])
    if "lt" in bounds:
        candidates.append(bounds["lt"] - 1)
    return min(candidates) if candidates else None


def lower_bound(bounds: dict[str, Any]) -> float | None:
    """The smallest integer value ``ge``/``gt`` allow (``gt=-1`` reads as 0), or None."""
    candidates = []
    if "ge" in bounds:
        candidates.append(bounds["ge"])
    if "gt" in bounds:
        candidates.append(bounds["gt"] + 1)
    return max(candidates) if candidates else None


def list_answer_of(route: RouteFacts) -> str | None:
    """How the route answers a list (``list[X]``, ``Page.items``), or None (shared with the probe)."""
    for _, tp in _answer_types(route):
        answer = _list_answer(tp)
        if answer:
            return answer
    return None


def pagination_params(route: RouteFacts) -> tuple[list[QueryParam], list[QueryParam]]:
    """``(page-size parameters, offset parameters)`` of the route's dependency tree.

    Shared with FR207's runtime half, which sends a page size over the bound (``param.alias``,
    ``upper_bound(param.bounds)``) and expects a 422.
    """
    params = [p for p in iter_query_params(route) if _is_int_param(p)]
    sizes = [p for p in params if _is_page_size(p)]
    offsets = [p for p in params if p.names & OFFSET_NAMES and p not in sizes]
    return sizes, offsets


def _is_page_size(param: QueryParam) -> bool:
    return bool(param.names & PAGE_SIZE_NAMES) or any(
        name.endswith(PAGE_SIZE_SUFFIXES) for name in param.names
    )


def _first_allowed_offset(param: QueryParam) -> int:
    """The lower bound an offset needs: 1 for a page number counted from 1, else 0.

    A page number (``page``, ``page_number``) counts from 1 unless its default is 0; row offsets
    (``skip``, ``offset``, ``start``) count from 0.
    """
    if not param.names & PAGE_NUMBER_NAMES:
        return 0
    default = getattr(param.field_info, "default", None)
    return 0 if isinstance(default, int) and not isinstance(default, bool) and default == 0 else 1


def _runtime_pagination(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR207")
    for exchange in results.for_target(route.target, "page-bound"):
        if exchange.status is not None and 400 <= exchange.status < 500:
            continue
        yield Finding(
            message=f"{exchange.request.shown} ({exchange.request.description}) {exchange.outcome}, not 422",
            location=route.location,
        )


def _list_not_from_a_table(context: CheckContext) -> str | None:
    """FR207 is about lists of rows: a route whose valid requests answered its list without running
    any SQL (fastapi_best_architecture's column types, data-rule model names) returns a fixed list,
    with no table behind it to grow. Only when the run counted SQL elsewhere, so that zero means
    none was run, not that the counting missed the app's database."""
    route = context.the_route
    results = _probe(context, "FR207")
    answered = [exchange for exchange in _happy(results, route.target) if exchange.ok]
    if not answered or any(exchange.count for exchange in answered):
        return None
    if not any(exchange.count for exchange in results.exchanges):
        return None
    return (
        f"{route.target} answered its list without running any SQL ({len(answered)} valid "
        "request(s), 0 statements): a fixed list, with no table rows to page"
    )


@rule(
    code="FR207",
    name="pagination-bounded",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.APP_PROBE,
    section="Rules #16, #17",
    summary=(
        "GET routes answering a list take a page-size query parameter bounded above (`le`, "
        "default max 100) and, if they take an offset, bound it below (`ge=0`)."
    ),
    rationale=(
        "An unbounded list answer grows with the table: one request can load every row into "
        "memory; `?limit=1000000` or a negative offset must be refused with a 422."
    ),
    fix="Add `limit: int = Query(20, ge=1, le=100)` and `skip: int = Query(0, ge=0)`.",
    applies_to=_api_route_with("GET"),
    bad_example=(
        '@router.get("/posts")\nasync def list_posts(service: PostServiceDep) -> list[PostResponse]:'
    ),
    good_example=(
        '@router.get("/posts")\nasync def list_posts(\n    service: PostServiceDep,\n'
        "    skip: int = Query(0, ge=0),\n    limit: int = Query(20, ge=1, le=100),\n"
        ") -> list[PostResponse]: ..."
    ),
    runtime=_runtime_pagination,
    overruled_by=_list_not_from_a_table,
    unavailable=PROBES_UNAVAILABLE,
    phases=("gets", "page-bound"),
    needs_route_data=True,
    judges_built_requests=True,
)
def check_pagination_bounded(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    answer = list_answer_of(route)
    if answer is None:
        raise RuleSkipped(f"{route.target} does not answer a list")
    maximum = context.options.max_page_size
    sizes, offsets = pagination_params(route)
    if not sizes:
        yield Finding(
            message=(
                f"endpoint `{route.name}` answers a list ({answer}) but takes no page-size query "
                f"parameter (`limit`, `page_size`, `per_page`, `items_per_page`, `size`, ...) "
                f"bounded by `le<={maximum}`"
            ),
            location=route.location,
        )
    for param in sizes:
        upper = upper_bound(param.bounds)
        where = _describe_origin(param, route, context.facts)
        if upper is None:
            yield Finding(
                message=f"page size `{param.alias}`{where} has no upper bound; add `le={maximum}`",
                location=_param_location(param, route, context.facts),
            )
        elif upper > maximum:
            yield Finding(
                message=(
                    f"page size `{param.alias}`{where} allows up to {upper:g}, above the maximum "
                    f"page size {maximum}"
                ),
                location=_param_location(param, route, context.facts),
                fix=f"Lower its bound to `le={maximum}` (or raise `fastapi_rules_max_page_size`).",
            )
    for param in offsets:
        lower = lower_bound(param.bounds)
        if lower is None or lower < 0:
            where = _describe_origin(param, route, context.facts)
            found = "has no lower bound" if lower is None else f"allows {lower:g}"
            first = _first_allowed_offset(param)
            what = "page number" if param.names & PAGE_NUMBER_NAMES else "offset"
            counted = " (pages count from 1)" if first == 1 else ""
            yield Finding(
                message=f"{what} `{param.alias}`{where} {found}; add `ge={first}`{counted}",
                location=_param_location(param, route, context.facts),
                fix=f"Bound it below: `{param.name}: int = Query({1 if first else 0}, ge={first})`.",
            )


# -- FR208 ----------------------------------------------------------------------------------------

SORT_PARAM_NAMES = frozenset(
    {"sort", "sort_by", "order", "order_by", "ordering", "sort_order", "direction", "dir"}
)


def _is_choice(tp: Any) -> bool:
    """``Literal[...]`` or an ``Enum``: a closed set of values, not free text."""
    return get_origin(tp) is Literal or is_subclass(tp, enum.Enum)


@rule(
    code="FR208",
    name="query-strings-bounded",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #17",
    summary=(
        "Free-text `str` query parameters carry `max_length`; sort/order parameters are `Enum` or `Literal`."
    ),
    rationale=(
        "An unbounded search string reaches `LIKE` queries and logs at any size; a free-text sort "
        "field lets clients order by any column name the code interpolates, or fail with a 500."
    ),
    fix="Bound free text with `Query(max_length=100)`; type sort fields as an `Enum` or `Literal`.",
    applies_to=is_api_route,
    bad_example="async def list_users(search: str | None = None, order: str = 'desc') -> ...",
    good_example=(
        "async def list_users(\n    search: str | None = Query(None, max_length=100),\n"
        "    order: SortOrder = SortOrder.DESC,\n) -> ..."
    ),
)
def check_query_strings_bounded(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    facts = context.facts
    params = list(iter_query_params(route))
    if not params:
        raise RuleSkipped(f"{route.target} takes no query parameters")
    for param in params:
        single = _single(param.annotation)
        if single is None or _is_choice(single) or single is not str:
            continue
        where = _describe_origin(param, route, facts)
        location = _param_location(param, route, facts)
        if param.names & SORT_PARAM_NAMES:
            yield Finding(
                message=(
                    f"sort parameter `{param.alias}`{where} is a plain `str`; make it an `Enum` "
                    "or a `Literal` of the allowed values"
                ),
                location=location,
                fix="Type it as an Enum (`order: SortOrder = SortOrder.DESC`) or a Literal.",
            )
        elif "max_length" not in param.bounds:
            yield Finding(
                message=f"free-text query parameter `{param.alias}`{where} has no `max_length`",
                location=location,
                fix=f"Bound it: `{param.name}: str | None = Query(None, max_length=100)`.",
            )


# -- FR209 ----------------------------------------------------------------------------------------

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


def is_secret_name(name: str) -> bool:
    """A field name that holds a password, a hash or a secret (``UserOut.hashedPassword``...)."""
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
