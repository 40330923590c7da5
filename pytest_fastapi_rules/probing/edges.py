"""Odd but schema-valid requests (FR210): the input FastAPI lets through and the app must handle.

FR210's bad inputs (``requests.RequestBuilder.bad_inputs``) are values FastAPI refuses before the
endpoint runs (a word for an ``int``); what an app validates itself never gets one. A plain ``str``
id the endpoint converts with ``int(item_id)``, a free-form ``dict`` body it indexes with
``body["title"]``: FastAPI accepts every string and every object, so the 500 these answer to an odd
value is only found by sending one. The requests made here are the route's valid request (same
credentials, same seeded ids) with odd values that still pass the route's declared schema:

1. **odd strings**: every plain ``str`` path and query parameter (optional ones too) set to a
   string that is no id and no member of any set (:data:`ODD_STRING`, fitted to the parameter's
   length limits), all in one request;
2. **a minimal body**: ``{}`` for a free-form ``dict`` body; for a model body, only its required
   fields (free-form ``dict`` fields among them as ``{}``);
3. **empty strings**: every plain ``str`` query parameter that accepts ``""`` set to it.

Each value is checked against the parameter's own annotation and constraints (pydantic), so a
request here never carries what FastAPI would refuse: any answer under 500 is fine, a 5xx is a
finding. The variants are merged (every string parameter odd in one request) and bounded by
``fastapi_rules_edge_requests`` (default 3 per route, most telling first; 0 sends none), because
each request costs as much as a valid one.
"""

from __future__ import annotations

import enum
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter

from pytest_fastapi_rules.facts import is_subclass, plain_annotation
from pytest_fastapi_rules.probing.requests import ProbeRequest, _fill_path, _variant

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import RouteFacts
    from pytest_fastapi_rules.probing.requests import RequestBuilder

#: A string that names no row and belongs to no set: no digits, no UUID, no enum member.
ODD_STRING = "zz-not-an-id"
#: The phase of the edge requests' exchanges (``ProbeResults.for_target(target, EDGE_PHASE)``).
EDGE_PHASE = "edge"


def edge_requests(builder: RequestBuilder, route: RouteFacts, limit: int) -> list[ProbeRequest]:
    """The route's odd but schema-valid requests, at most ``limit``, most telling first.

    Built on the route's valid request, so they carry its credentials and seeded ids. A route the
    builder cannot make a valid request for gets none; a crash while building is recorded against
    the route only (``RequestBuilder.record_failure``), as for every other probe request.
    """
    if limit <= 0:
        return []
    try:
        base = builder.happy(route)
        if base is None:
            return []
        made = [
            _odd_strings(builder, route, base),
            _minimal_body(builder, route, base),
            _empty_strings(builder, route, base),
        ]
    except Exception as exc:  # noqa: BLE001 - this route's problem only
        builder.record_failure(route, exc)
        return []
    return [request for request in made if request is not None][:limit]


def _odd_strings(builder: RequestBuilder, route: RouteFacts, base: ProbeRequest) -> ProbeRequest | None:
    """Every plain ``str`` path and query parameter odd at once: one request finds whichever of
    them the app converts or looks up unguarded (each is named in the message)."""
    values = builder.path_values(route)
    params = dict(base.params)
    odd: list[str] = []
    for model_field in builder.params(route, "path"):
        value = _fitting(model_field.field_info, ODD_STRING)
        if value is not None:
            values[_key(model_field)] = value
            odd.append(f"path parameter `{model_field.name}`={value!r}")
    for model_field in builder.params(route, "query"):
        value = _fitting(model_field.field_info, ODD_STRING)
        if value is not None:
            params[_key(model_field)] = value
            odd.append(f"query parameter `{model_field.name}`={value!r}")
    if not odd:
        return None
    return _variant(
        base,
        path=_fill_path(route.path, values),
        params=params,
        description=f"odd strings ({', '.join(odd)})",
    )


def _empty_strings(builder: RequestBuilder, route: RouteFacts, base: ProbeRequest) -> ProbeRequest | None:
    """Every plain ``str`` query parameter that accepts ``""`` empty (path segments cannot be)."""
    params = dict(base.params)
    empty: list[str] = []
    for model_field in builder.params(route, "query"):
        if _fitting(model_field.field_info, "") == "":
            params[_key(model_field)] = ""
            empty.append(f"`{model_field.name}`")
    if not empty:
        return None
    return _variant(base, params=params, description=f"empty query parameters ({', '.join(empty)})")


def _minimal_body(builder: RequestBuilder, route: RouteFacts, base: ProbeRequest) -> ProbeRequest | None:
    """``{}`` for a free-form ``dict`` body; a model body with only its required fields.

    Sent only when it differs from the valid body and the route's own schema accepts it.
    """
    kind = builder.body_kind(route)
    body_field = builder.body_field(route)
    if kind not in ("json", "form") or body_field is None:
        return None
    annotation = plain_annotation(body_field.field_info.annotation)
    if kind == "json" and is_free_form(annotation):
        if base.json_body == {} or not _accepts(body_field.field_info.annotation, {}):
            return None
        return _variant(base, json_body={}, description="an empty free-form body `{}`")
    if not is_subclass(annotation, BaseModel):
        return None
    sent = base.json_body if kind == "json" else base.form
    if not isinstance(sent, dict):
        return None
    minimal: dict[str, Any] = {}
    emptied: list[str] = []
    for name, model_field in annotation.model_fields.items():
        key = model_field.alias or name
        if not model_field.is_required() or key not in sent:
            continue
        if kind == "json" and is_free_form(plain_annotation(model_field.annotation)) and sent[key] != {}:
            minimal[key] = {}
            emptied.append(f"`{key}`")
        else:
            minimal[key] = sent[key]
    if minimal == sent:
        return None
    try:
        annotation.model_validate(minimal)
    except Exception:  # noqa: BLE001 - the model's own validators want more: not schema-valid
        return None
    model = getattr(annotation, "__name__", "")
    # FastAPI names the model it makes of a route's form or embedded fields ``Body_<endpoint>...``.
    shown = "" if not model or model.startswith("Body_") else f"{model} "
    fields = ", ".join(f"`{key}`" for key in minimal) if minimal else "none: `{}`"
    description = f"a {shown}body with only its required fields ({fields})"
    if emptied:
        description += f", free-form {', '.join(emptied)} as {{}}"
    if kind == "form":
        return _variant(base, form={k: str(v) for k, v in minimal.items()}, description=description)
    return _variant(base, json_body=minimal, description=description)


def is_free_form(annotation: Any) -> bool:
    """Whether ``annotation`` is a free-form mapping (``dict``, ``dict[str, Any]``, ``Mapping``):
    any keys pass FastAPI's validation, so the endpoint finds out itself which ones are there."""
    import collections.abc

    origin = typing.get_origin(annotation) or annotation
    return is_subclass(origin, dict) or origin in (collections.abc.Mapping, collections.abc.MutableMapping)


def is_plain_str(annotation: Any) -> bool:
    """A ``str`` parameter the app must make sense of itself: not an enum or ``Literal``."""
    plain = plain_annotation(annotation)
    return is_subclass(plain, str) and not is_subclass(plain, enum.Enum)


def _fitting(field_info: Any, value: str) -> str | None:
    """``value`` fitted to a plain ``str`` parameter's length limits, or None when the parameter is
    not a plain ``str`` or its schema refuses the value (a pattern): only valid values are sent."""
    if not is_plain_str(field_info.annotation):
        return None
    metadata = list(getattr(field_info, "metadata", None) or [])
    for item in metadata:
        longest = getattr(item, "max_length", None)
        if isinstance(longest, int) and len(value) > longest:
            value = value[:longest]
        shortest = getattr(item, "min_length", None)
        if isinstance(shortest, int) and len(value) < shortest:
            value = value + "z" * (shortest - len(value))
    constrained = typing.Annotated[(field_info.annotation, *metadata)] if metadata else field_info.annotation
    return value if _accepts(constrained, value) else None


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether pydantic validates ``value`` as ``annotation`` (FastAPI would let it through)."""
    try:
        TypeAdapter(annotation).validate_python(value)
    except Exception:  # noqa: BLE001 - refused, or an annotation pydantic cannot adapt
        return False
    return True


def _key(model_field: Any) -> str:
    return str(getattr(model_field, "alias", None) or model_field.name)
