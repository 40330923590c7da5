"""What a route takes: FR206 update-schema-partial, FR207 pagination-bounded and FR208
query-strings-bounded (Rules #14, #16, #17).

Body models of PATCH and PUT routes, the page size and offset of list routes, free-text and sort
query parameters: the bounds FastAPI validates before the endpoint runs. FR207's runtime half (a page
size over the bound must answer 422) is declared with its static half.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel

from pytest_fastapi_rules.facts import is_subclass, plain_annotation
from pytest_fastapi_rules.registry import Basis, CheckContext, Finding, RuleSkipped, Scope, Severity, rule
from pytest_fastapi_rules.rules.api.annotations import (
    _is_choice,
    _is_model,
    _single,
    _snake,
    _strip_annotated,
)
from pytest_fastapi_rules.rules.api.routes import (
    QueryParam,
    _answer_types,
    _api_route_with,
    _describe_origin,
    _param_location,
    _skip_library_endpoint,
    iter_query_params,
    list_answer_of,
)
from pytest_fastapi_rules.rules.common import is_api_route
from pytest_fastapi_rules.rules.probe_support import PROBES_UNAVAILABLE, _happy, _probe

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts


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


def pagination_params(route: RouteFacts) -> tuple[list[QueryParam], list[QueryParam]]:
    """``(page-size parameters, offset parameters)`` of the route's dependency tree.

    The static half's reading. The runtime half judges the probes' page-bound requests, whose
    parameters the probe run picks by its own, shorter name list (``probing/runner.py``).
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
