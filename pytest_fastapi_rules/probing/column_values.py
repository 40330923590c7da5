"""Values for columns whose SQL type does not say what Python value they take.

An app's own ``TypeDecorator`` (a GUID stored as ``CHAR(32)``, an encrypted string, a JSON-encoded
list in ``TEXT``) converts a Python value in ``process_bind_param``: the seeder must hand it the value
the decorator expects, not a value of its ``impl``, or the decorator raises ("badly formed
hexadecimal UUID string"). What the decorator expects is read, in this order, from:

1. the mapped attribute's declared Python type (``Mapped[uuid.UUID]``; a SQLModel field's
   annotation), collected once per run by :func:`declared_types`;
2. the decorator's own ``python_type``, when it declares one of its own;
3. the value the generator makes for its ``impl``.

Each candidate is tried through the decorator's bind processing for the probe database's dialect
(:func:`accepted`); the first one it accepts is used. A column none of them fits is left to the
user's row factory (ini ``fastapi_rules_row_factories``) or, when nullable, to ``NULL``.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import sys
import types
import typing
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Column
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import sqltypes

#: ``{(table name, column name): Python type}`` declared by the app's mapped classes.
DeclaredTypes = dict[tuple[str, str], Any]


def declared_types(mapped_classes: Sequence[type]) -> DeclaredTypes:
    """The Python type each mapped column is declared with (``Mapped[X]``, SQLModel field types)."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import ColumnProperty

    found: DeclaredTypes = {}
    for cls in mapped_classes:
        try:
            mapper: Any = sa_inspect(cls)
            annotations = _annotations(cls)
            fields = getattr(cls, "model_fields", None)
            for prop in mapper.column_attrs:
                if not isinstance(prop, ColumnProperty) or len(prop.columns) != 1:
                    continue
                column = prop.columns[0]
                table = getattr(column, "table", None)
                if not isinstance(column, Column) or table is None:
                    continue
                declared: Any = None
                if isinstance(fields, dict) and prop.key in fields:
                    declared = getattr(fields[prop.key], "annotation", None)
                if declared is None:
                    declared = annotations.get(prop.key)
                declared = plain_type(declared)
                if declared is not None:
                    found.setdefault((str(table.name), column.name), declared)
        except Exception:  # noqa: BLE001 - a class we cannot read: its columns get impl values
            continue
    return found


def _annotations(cls: type) -> dict[str, Any]:
    """The class's annotations, resolved where they can be (``from __future__ import annotations``)."""
    with contextlib.suppress(Exception):
        return typing.get_type_hints(cls)
    resolved: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        namespace = vars(sys.modules.get(klass.__module__, types.ModuleType("x")))
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, dict(namespace), dict(vars(klass)))
                except Exception:  # noqa: BLE001 - a name the module does not define
                    continue
            resolved[name] = annotation
    return resolved


def plain_type(annotation: Any) -> Any:
    """``X`` from ``Mapped[X]``, ``Optional[X]``, ``Annotated[X, ...]``; None when it is not a type."""
    for _ in range(8):
        origin = typing.get_origin(annotation)
        if origin is None:
            break
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            if len(arguments) != 1:
                return None
            annotation = arguments[0]
        elif getattr(origin, "__name__", "") in (
            "Mapped",
            "MappedColumn",
            "DynamicMapped",
            "WriteOnlyMapped",
        ):
            if not arguments:
                return None
            annotation = arguments[0]
        else:
            return origin if isinstance(origin, type) else None
    return annotation if isinstance(annotation, type) else None


def probe_uuid(key: str) -> uuid.UUID:
    """A UUID for ``key``, the same on every run, shaped as a version 4 UUID.

    Apps declare ids as ``UUID4`` in their schemas (mealie does); a name-based UUID (version 5)
    stored by the seeder made every route that returns those rows answer 500.
    """
    return uuid.UUID(bytes=uuid.uuid5(uuid.NAMESPACE_URL, key).bytes, version=4)


def value_of_type(python_type: type, key: str, index: int, length: int | None = None) -> Any:
    """A deterministic value of ``python_type`` for row ``index`` of column ``key``; None if unknown."""
    if issubclass(python_type, enum.Enum):
        members = list(python_type)
        return members[index % len(members)] if members else None
    if issubclass(python_type, bool):
        return index % 2 == 0
    if issubclass(python_type, uuid.UUID):
        return probe_uuid(f"{key}.{index}")
    if issubclass(python_type, int):
        return 1000 + index
    if issubclass(python_type, float):
        return float(index) + 0.5
    if issubclass(python_type, decimal.Decimal):
        return decimal.Decimal(index + 1)
    if issubclass(python_type, datetime.datetime):
        return datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(hours=index)
    if issubclass(python_type, datetime.date):
        return datetime.date(2024, 1, 1) + datetime.timedelta(days=index)
    if issubclass(python_type, datetime.time):
        return datetime.time(12, index % 60)
    if issubclass(python_type, datetime.timedelta):
        return datetime.timedelta(minutes=index + 1)
    if issubclass(python_type, str):
        text = f"probe {key} {index}"
        return text[-length:] if length is not None and len(text) > length else text
    if issubclass(python_type, bytes):
        return f"probe{index}".encode()
    if issubclass(python_type, dict):
        return {"probe": index}
    if issubclass(python_type, list | tuple | set | frozenset):
        return []
    return None


def own_python_type(decorator: sqltypes.TypeDecorator[Any]) -> type | None:
    """The Python type a ``TypeDecorator`` declares itself, when it is not just its impl's."""
    if "python_type" not in {name for klass in type(decorator).__mro__ for name in vars(klass)} - set(
        vars(sqltypes.TypeDecorator)
    ):
        return None
    try:
        declared = decorator.python_type
    except Exception:  # noqa: BLE001 - NotImplementedError and its relatives
        return None
    return declared if isinstance(declared, type) else None


def accepted(column_type: Any, value: Any, dialect: Dialect | None) -> bool:
    """Whether the column's type binds ``value`` for ``dialect`` without raising."""
    if dialect is None:
        return True
    try:
        # A decorator's processor runs its process_bind_param, then its impl's own processing.
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processor(value)
    except Exception:  # noqa: BLE001 - the type refuses the value: try another
        return False
    return True


def candidates(
    column: Column[Any], declared: type | None, key: str, index: int, impl_value: Any
) -> Iterator[Any]:
    """Values to try for a decorated column, most telling first (see the module docstring)."""
    length = getattr(getattr(column.type, "impl_instance", None), "length", None)
    own = own_python_type(column.type) if isinstance(column.type, sqltypes.TypeDecorator) else None
    for python_type in (declared, own):
        value = value_of_type(python_type, key, index, length) if python_type is not None else None
        if value is not None:
            yield value
            if isinstance(value, uuid.UUID):
                yield str(value)
                yield value.hex
    yield impl_value
    # Nothing declared that the generator knows (``Mapped[GUID]`` names the decorator itself): the
    # usual suspects for what such types store.
    guid = probe_uuid(f"{key}.{index}")
    yield from (guid, str(guid), guid.hex, {"probe": index}, [index], index)
