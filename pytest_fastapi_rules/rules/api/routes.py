"""What a route declares, as FastAPI knows it, for the FR2xx rules.

Which routes a rule applies to (API routes of some methods), what the route hands FastAPI to
serialise (its effective response model, stream item type or return annotation) and whether that is
a list, the query parameters of its whole dependency tree, and the endpoints a library serves (whose
declarations are not the app's to change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pytest_fastapi_rules.facts import type_hints
from pytest_fastapi_rules.registry import Location, RuleSkipped
from pytest_fastapi_rules.rules.api.annotations import (
    _constraints,
    _is_model,
    _sequence_item,
    _single,
    _snake,
    type_name,
)
from pytest_fastapi_rules.rules.common import code_of, is_api_route

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions


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


# -- what a route answers ---------------------------------------------------------------------------


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


# -- list answers ----------------------------------------------------------------------------------

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


def list_answer_of(route: RouteFacts) -> str | None:
    """How the route answers a list (``list[X]``, ``Page.items``), or None (FR204 and FR207 ask)."""
    for _, tp in _answer_types(route):
        answer = _list_answer(tp)
        if answer:
            return answer
    return None
