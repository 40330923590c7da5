"""Reading annotations the way FastAPI and Pydantic read them, for the FR2xx rules.

``Annotated`` extras, ``Optional``/unions, containers and their items, mapping values, numeric and
length bounds, readable type names: pure functions of a type, with no route in sight, so that every
rule of the family has one understanding of what an annotation says.
"""

from __future__ import annotations

import collections.abc
import enum
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from starlette.responses import Response

from pytest_fastapi_rules.facts import is_subclass

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


def _is_choice(tp: Any) -> bool:
    """``Literal[...]`` or an ``Enum``: a closed set of values, not free text."""
    return get_origin(tp) is Literal or is_subclass(tp, enum.Enum)
