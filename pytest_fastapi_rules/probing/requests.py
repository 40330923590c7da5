"""Requests built from the routes: valid ones, invalid ones (FR210), and ones for missing ids (FR211).

- Path parameters come from seeded primary keys of the matching table: ``/users/{user_id}`` and
  ``/users/{id}`` both map to the ``users`` table (by the parameter's name, else by the path segment
  before it); a parameter named like a column of that table (``{username}``) takes that column's
  value. Nested parameters pick consistent rows (the post of that user) when the seed shows which.
- Query parameters are sent only when required, with values generated within their declared
  constraints (``ge``/``le``/``max_length``/``pattern``, enums and literals).
- Bodies are generated from the route's request model by polyfactory (``None`` never chosen for
  optional fields, so a PATCH sends every field), dumped as JSON, or as form fields for ``Form``
  bodies. A field named ``password`` gets a known value, so FR705 can look for it in the database.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import decimal
import enum
import json
import random
import re
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_origin

from polyfactory.factories.pydantic_factory import ModelFactory
from pydantic import BaseModel, create_model
from sqlalchemy import Table
from sqlalchemy import types as sqltypes

from pytest_fastapi_rules.compat import autoincrement_column
from pytest_fastapi_rules.facts import is_subclass, plain_annotation
from pytest_fastapi_rules.probing.column_values import probe_uuid
from pytest_fastapi_rules.probing.seeding import SeedResult, column_type, singular

if typing.TYPE_CHECKING:
    from pytest_fastapi_rules.facts import RouteFacts

_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")
_ID_SUFFIXES = ("_id", "_pk", "_uuid", "id", "_key")
PASSWORD_FIELD = re.compile(r"^(password|new_password|password1|plain_password|passwd|pwd)$", re.IGNORECASE)
MISSING_STR = "fastapi-rules-missing"
BAD_VALUE = "not-a-valid-value"


@dataclass
class ProbeRequest:
    """One request the probes send."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json_body: Any = None
    form: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: What the request is, for messages ("a body generated from PostCreate").
    description: str = ""
    #: The plain password this request carries, if any (FR705).
    password: str | None = None
    #: The route's path template (``/users/{user_id}``): what messages show.
    template: str = ""

    @property
    def shown(self) -> str:
        """``GET /users/{user_id}``: the route, not the concrete URL.

        The concrete ids and generated query values differ from run to run (UUID keys, random
        values); a message must read the same every time, or baselines and reports churn.
        """
        return f"{self.method} {self.template or self.path}"


@dataclass
class PathBinding:
    """How a path parameter maps to seeded data."""

    name: str
    table: Table | None
    column: str | None


def _stem(name: str) -> str:
    lowered = name.lower()
    for suffix in _ID_SUFFIXES:
        if lowered.endswith(suffix) and len(lowered) > len(suffix):
            return lowered[: -len(suffix)].rstrip("_")
    return "" if lowered in {"id", "pk", "uuid", "key"} else lowered


def path_param_names(path: str) -> list[str]:
    return [match.group(1) for match in _PARAM.finditer(path)]


def _segment_before(path: str, name: str) -> str:
    segments = [s for s in path.split("/") if s]
    for index, segment in enumerate(segments):
        if segment.startswith("{") and segment[1:].split(":")[0].rstrip("}") == name and index > 0:
            previous = segments[index - 1]
            return "" if previous.startswith("{") else previous
    return ""


class TableIndex:
    """The app's tables by the words a path can name them with, indexed once per probe run.

    A path parameter is bound by name (``{post_id}`` -> ``posts``), by a module-prefixed name
    (``blog_posts``) or by a unique column (``{username}``); scanning every table for every route
    made binding quadratic in the size of the app.
    """

    def __init__(self, tables: list[Table], class_names: dict[str, str]) -> None:
        self.tables = tables
        #: singular table name / lowercased class name -> position of the first such table.
        self._by_name: dict[str, int] = {}
        self._by_class: dict[str, int] = {}
        #: ``wanted`` -> [(table, prefix)] of the tables whose singular name ends in ``_wanted``.
        self._by_suffix: dict[str, list[tuple[Table, str]]] = {}
        #: column name -> the tables where it is unique (or the primary key).
        self._unique_owners: dict[str, list[Table]] = {}
        for position, table in enumerate(tables):
            name = singular(table.name.lower())
            self._by_name.setdefault(name, position)
            class_name = class_names.get(table.name, "").lower()
            if class_name:
                self._by_class.setdefault(class_name, position)
            for index, char in enumerate(name):
                if char == "_":
                    self._by_suffix.setdefault(name[index + 1 :], []).append((table, name[:index]))
            for column in table.columns:
                if column.unique or column.primary_key:
                    self._unique_owners.setdefault(column.key, []).append(table)

    def matching(self, word: str, path: str = "") -> Table | None:
        """The table a path word names: ``posts``/``post`` -> table ``posts`` or class ``Post``.

        Failing an exact match, a table named with a module prefix (``blog_posts``), when only one
        table ends so, or when the path names the prefix too (``/blog/posts/{post_id}``).
        """
        if not word:
            return None
        wanted = singular(word.replace("-", "_").lower())
        positions = [
            found
            for found in (self._by_name.get(wanted), self._by_class.get(wanted.replace("_", "")))
            if found is not None
        ]
        if positions:
            return self.tables[min(positions)]
        prefixed = dict(self._by_suffix.get(wanted, []))
        if len(prefixed) > 1:
            segments = {segment.lower().replace("-", "_") for segment in path.split("/") if segment}
            prefixed = {table: prefix for table, prefix in prefixed.items() if prefix in segments}
        return next(iter(prefixed)) if len(prefixed) == 1 else None

    def by_column(self, name: str) -> tuple[Table | None, str | None]:
        """The table a parameter names by a column: ``{username}`` (a unique column of one table), or
        ``{tier_name}`` (column ``name`` of table ``tier``). Unique columns only: they name one row."""
        owners = self._unique_owners.get(name, [])
        if len(owners) == 1:
            return owners[0], name
        prefix, _, suffix = name.rpartition("_")
        if prefix and suffix:
            table = self.matching(prefix)
            if table is not None and suffix in table.columns:
                return table, suffix
        return None, None


def bind_path_params(route: RouteFacts, index: TableIndex) -> list[PathBinding]:
    """Map each path parameter to the table (and column) its value comes from."""
    bindings: list[PathBinding] = []
    for name in path_param_names(route.path):
        table = index.matching(_stem(name), route.path)
        if table is None:
            table = index.matching(_segment_before(route.path, name), route.path)
        if table is None:
            table, named = index.by_column(name)
            if table is not None:
                bindings.append(PathBinding(name=name, table=table, column=named))
                continue
        column = None
        if table is not None:
            pk_names = [c.name for c in table.primary_key.columns]
            serial = autoincrement_column(table)
            if name in table.columns and name not in pk_names:
                column = name
            elif len(pk_names) == 1:
                column = pk_names[0]
            elif name in pk_names:
                # One column of a composite key, named as such: ``/{username}/post/{id}``.
                column = name
            elif serial is not None and serial.name in pk_names:
                # A composite key whose integer column is the database's own counter: it names a
                # row alone (``{post_id}`` for ``post (id serial, uuid)``).
                column = serial.name
            else:
                table = None
        bindings.append(PathBinding(name=name, table=table, column=column))
    return bindings


def _fill_path(path: str, values: dict[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1), "1")
        return str(value.value if isinstance(value, enum.Enum) else value)

    return _PARAM.sub(replace, path)


def is_typed_param(annotation: Any) -> bool:
    """Whether a wrong value of this type is a validation error (ints, uuids, enums, dates...)."""
    plain = plain_annotation(annotation)
    if get_origin(plain) is Literal:
        return True
    if is_subclass(plain, enum.Enum):
        return True
    return is_subclass(plain, (int, float, uuid.UUID, datetime.date, datetime.datetime)) and not is_subclass(
        plain, str
    )


_GENERATED: dict[tuple[Any, str], Any] = {}


def generate_value(annotation: Any, field_info: Any = None) -> Any:
    """A value for ``annotation`` within ``field_info``'s constraints (polyfactory), or None.

    The draw is seeded by the annotation, so the same annotation and constraints always give the
    same value: it is built once (a pydantic model and a factory per call cost milliseconds, and
    every route's path and query parameters ask several times) and copied out of the cache.
    """
    # The constraints only (ge, max_length, pattern...): a parameter's FieldInfo also carries its
    # alias, and polyfactory would then build the value under the alias and fail validation.
    metadata = list(getattr(field_info, "metadata", None) or [])
    # The annotation itself, not its repr: two apps' enums may both print as <enum 'Status'>.
    key = (annotation, repr(metadata))
    try:
        if key not in _GENERATED:
            _GENERATED[key] = _draw_value(annotation, metadata)
    except TypeError:  # an unhashable annotation: drawn every time
        return _draw_value(annotation, metadata)
    return copy.deepcopy(_GENERATED[key])


def _draw_value(annotation: Any, metadata: list[Any]) -> Any:
    try:
        constrained: Any = typing.Annotated[(annotation, *metadata)] if metadata else annotation
        model = create_model("ProbeValue", value=(constrained, ...))
        factory = _ProbeFactory.create_factory(
            model, __allow_none_optionals__=False, **_seeded(repr(annotation))
        )
        for _ in range(5):
            try:
                return getattr(factory.build(), "value", None)
            except Exception:  # noqa: BLE001 - retry with other random values
                continue
    except Exception:  # noqa: BLE001 - an annotation polyfactory cannot build
        return None
    return None


_FAKER: list[Any] = []
#: Seconds the app's own validators may take to accept one generated body before the route's
#: requests are given up (a validator that loops over a huge generated number never ends).
BUILD_SECONDS = 5.0


class _ProbeFactory(ModelFactory[Any]):
    """polyfactory's pydantic factory, drawing the modest values a real client sends.

    Faker's unbounded numbers (``pyfloat`` gives 7e9) make an app's validators do work no client
    would ask of them (mealie formats a quantity as a mixed fraction by counting up to it), and
    ``object`` fields would get an ``object()`` that JSON cannot hold.
    """

    __is_base_factory__ = True
    _probe_provider_map: tuple[Any, Any, dict[Any, Callable[[], Any]]] | None = None

    @classmethod
    def get_provider_map(cls) -> dict[Any, Callable[[], Any]]:
        """polyfactory's map with modest numbers, built once per factory and its generators.

        polyfactory builds the map again for every field it fills (a hundred entries, each read
        through Faker's proxy): most of the time a body took on mealie. The entries only bind
        the factory's ``__random__`` and ``__faker__``, so the same map serves while those stay.
        It is kept on the class itself (each body makes its own factory class, which goes with it),
        and read from the class's own ``__dict__``: a nested model's factory subclasses this one.
        """
        draw, faker = cls.__random__, cls.__faker__
        cached = cls.__dict__.get("_probe_provider_map")
        if cached is not None and cached[0] is draw and cached[1] is faker:
            return dict(cached[2])
        providers = super().get_provider_map()
        providers.update(
            {
                int: lambda: draw.randint(1, 100),
                float: lambda: round(draw.uniform(0.5, 100.0), 2),
                decimal.Decimal: lambda: decimal.Decimal(f"{draw.uniform(0.5, 100.0):.2f}"),
                object: lambda: f"probe-{draw.randint(0, 999)}",
            }
        )
        cls._probe_provider_map = (draw, faker, providers)
        return dict(providers)

    @classmethod
    def get_field_value(cls, field_meta: Any, *args: Any, **kwargs: Any) -> Any:
        """polyfactory's value, with two corrections a real client would make.

        A plain ``str`` field named like an e-mail gets an address (the app may store it and answer
        with an ``EmailStr``); a constrained type polyfactory has no constrained generator for
        (SQLModel's ``EmailStr = Field(max_length=255)``) gets the unconstrained value, which the
        model's own validation then accepts or refuses, instead of failing the whole body.
        """
        from polyfactory.exceptions import ParameterException

        name = str(getattr(field_meta, "name", "") or "")
        if "email" in name.lower() and plain_annotation(getattr(field_meta, "annotation", None)) is str:
            return f"probe{cls.__random__.randint(0, 99999)}@example.com"
        try:
            return super().get_field_value(field_meta, *args, **kwargs)
        except ParameterException:
            if not getattr(field_meta, "constraints", None):
                raise
            relaxed = copy.copy(field_meta)
            relaxed.constraints = None
            return super().get_field_value(relaxed, *args, **kwargs)


class BuildTimeout(Exception):
    """Building one request took longer than :data:`BUILD_SECONDS` (in the app's validators)."""


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with :class:`BuildTimeout`, where Python can.

    Only on the main thread of a POSIX process, and only when nothing else uses ``SIGALRM``
    (pytest-timeout's signal method does): elsewhere the block runs unbounded, as before.
    """
    import signal
    import threading

    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not usable:
        yield
        return

    def expired(_signum: int, _frame: Any) -> None:
        raise BuildTimeout(f"building a request body took over {seconds:g} s in the app's validators")

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _seeded(key: str) -> dict[str, Any]:
    """Factory options seeded by ``key``: the same request body on every run of the same app.

    The plugin's own ``Random`` and ``Faker`` (polyfactory's shared ones belong to the user's tests).
    """
    options: dict[str, Any] = {"__random__": random.Random(key)}
    with contextlib.suppress(Exception):
        if not _FAKER:
            from faker import Faker

            _FAKER.append(Faker())
        _FAKER[0].seed_instance(key)
        options["__faker__"] = _FAKER[0]
    return options


def declared_example(field_info: Any) -> Any:
    """The first example a non-model body declares (``Body(examples=[...])`` or
    ``openapi_examples``) that its annotation accepts, or None.

    A free-form ``dict`` body has no schema to generate from: random keys are not what the endpoint
    reads (``body["title"]``), so its valid request would fail for the probe's sake, and every rule
    that needs a valid answer (FR210's edge requests first) would have nothing to judge. The app's
    own example is what a client sends.
    """
    from pydantic import TypeAdapter

    candidates = list(getattr(field_info, "examples", None) or [])
    openapi = getattr(field_info, "openapi_examples", None) or {}
    if isinstance(openapi, dict):
        candidates.extend(item.get("value") for item in openapi.values() if isinstance(item, dict))
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            TypeAdapter(field_info.annotation).validate_python(candidate)
            return _jsonable(copy.deepcopy(candidate))
        except Exception:  # noqa: BLE001 - an example the annotation refuses (or cannot adapt)
            continue
    return None


def _jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


#: Words that make a second password field the confirmation of the first (`confirm_password`,
#: `password_repeat`, `password_again`, `retype_password`).
_CONFIRMING_WORDS = ("confirm", "repeat", "again", "retype")


def _confirms_password(name: str, other: str) -> bool:
    """Whether field ``other`` repeats password field ``name``: a password field named for
    confirming, or the same name with another number (teamhide/fastapi-boilerplate's `password1`
    and `password2`, which the app refuses with 401 when they differ)."""
    lowered = other.lower()
    if "password" not in lowered and "passwd" not in lowered:
        return False
    if re.sub(r"\d+$", "", other) == re.sub(r"\d+$", "", name):
        return True
    return any(word in lowered for word in _CONFIRMING_WORDS)


class RequestBuilder:
    """Builds the probe requests of one route from the seeded data."""

    def __init__(self, tables: list[Table], class_names: dict[str, str], headers: dict[str, str]) -> None:
        self.tables = tables
        self.index = TableIndex(tables, class_names)
        self.headers = dict(headers)
        self.seed: SeedResult | None = None
        self.counter = 0
        self._bindings: dict[int, list[PathBinding]] = {}
        #: ``{target: exception}``: routes whose requests the builder could not make (its own bug);
        #: their items report it, and every other route is probed as usual.
        self.failures: dict[str, BaseException] = {}
        #: ``{target: why}``: routes whose requests the app's own code kept from being built.
        self.given_up: dict[str, str] = {}

    def record_failure(self, route: RouteFacts, exc: BaseException) -> None:
        """Remember why the requests of ``route`` could not be built; its items report it."""
        if isinstance(exc, BuildTimeout):
            self.given_up.setdefault(route.target, str(exc))
        else:
            self.failures.setdefault(route.target, exc)

    def bindings(self, route: RouteFacts) -> list[PathBinding]:
        """:func:`bind_path_params` for the route, worked out once per route (the tables are fixed)."""
        key = id(route)
        if key not in self._bindings:
            self._bindings[key] = bind_path_params(route, self.index)
        return self._bindings[key]

    # -- parameters ---------------------------------------------------------------------------------

    @staticmethod
    def params(route: RouteFacts, kind: str) -> list[Any]:
        """ModelFields of kind ``path``/``query``/``header``/``cookie`` of the whole dependency tree."""
        seen: dict[str, Any] = {}
        for dependant in route.iter_dependants():
            for model_field in getattr(dependant, f"{kind}_params", []) or []:
                seen.setdefault(getattr(model_field, "alias", model_field.name), model_field)
        return list(seen.values())

    def _row_for(self, table: Table, chosen: dict[str, dict[str, Any]], pick: str) -> dict[str, Any] | None:
        assert self.seed is not None
        rows = self.seed.rows.get(table.name) or []
        if not rows:
            keys = self.seed.pks.get(table.name) or []
            if not keys:
                return None
            key = keys[-1] if pick == "last" else keys[0]
            return dict(zip([c.name for c in table.primary_key.columns], key, strict=False))
        candidates = rows
        for constraint in table.foreign_key_constraints:
            parent = chosen.get(constraint.referred_table.name)
            if parent is None:
                continue
            matching = [
                row
                for row in candidates
                if all(row.get(el.parent.name) == parent.get(el.column.name) for el in constraint.elements)
            ]
            if matching:
                candidates = matching
        return candidates[-1] if pick == "last" else candidates[0]

    def path_values(self, route: RouteFacts, pick: str = "first") -> dict[str, Any]:
        """Values for every path parameter: seeded keys where the parameter maps to a table."""
        values: dict[str, Any] = {}
        chosen: dict[str, dict[str, Any]] = {}
        fields = {getattr(f, "alias", f.name): f for f in self.params(route, "path")}
        for binding in self.bindings(route):
            row = None
            if binding.table is not None and self.seed is not None:
                row = self._row_for(binding.table, chosen, pick)
            if row is not None and binding.column is not None and row.get(binding.column) is not None:
                chosen[binding.table.name] = row  # type: ignore[union-attr]
                values[binding.name] = row[binding.column]
                continue
            model_field = fields.get(binding.name)
            generated = None
            if model_field is not None:
                generated = generate_value(model_field.field_info.annotation, model_field.field_info)
            values[binding.name] = generated if generated is not None else 1
        return values

    def missing_values(self, route: RouteFacts) -> dict[str, Any] | None:
        """Path values where the last parameter names a row that does not exist (FR211)."""
        bindings = self.bindings(route)
        if not bindings or self.seed is None:
            return None
        last = bindings[-1]
        if last.table is None or not route.path.rstrip("/").endswith("}"):
            return None
        values = self.path_values(route)
        column = last.table.columns[last.column] if last.column else None
        if column is None:
            return None

        type_ = column_type(column)
        if isinstance(type_, sqltypes.Integer):
            existing = [k[0] for k in self.seed.pks.get(last.table.name, []) if isinstance(k[0], int)]
            values[last.name] = max(existing, default=0) + 100_000
        elif isinstance(type_, sqltypes.Uuid):
            values[last.name] = str(probe_uuid(f"fastapi-rules-missing.{route.path}"))
        else:
            values[last.name] = MISSING_STR
        return values

    def query_values(self, route: RouteFacts) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for model_field in self.params(route, "query"):
            if not model_field.field_info.is_required():
                continue
            value = generate_value(model_field.field_info.annotation, model_field.field_info)
            if value is not None:
                values[getattr(model_field, "alias", model_field.name)] = _jsonable(value)
        return values

    # -- bodies -------------------------------------------------------------------------------------

    @staticmethod
    def body_field(route: RouteFacts) -> Any:
        return route.effective.get("body_field")

    @staticmethod
    def body_kind(route: RouteFacts) -> str | None:
        """``json``, ``form``, ``file`` or None (no body)."""
        body = route.effective.get("body_field")
        if body is None:
            return None
        from fastapi import params

        info = body.field_info
        if isinstance(info, params.File):
            return "file"
        if isinstance(info, params.Form):
            annotation = plain_annotation(info.annotation)
            if is_subclass(annotation, BaseModel):
                for sub in annotation.model_fields.values():
                    if "UploadFile" in repr(sub.annotation) or "bytes" in repr(sub.annotation):
                        return "file"
            return "form"
        return "json"

    def body(self, route: RouteFacts) -> tuple[Any, str | None, str]:
        """A valid body for the route: ``(value, plain password or None, description)``."""
        body = self.body_field(route)
        annotation = plain_annotation(body.field_info.annotation)
        name = getattr(annotation, "__name__", repr(annotation))
        self.counter += 1
        password = None
        if is_subclass(annotation, BaseModel):
            value = self._model_body(annotation)
            if isinstance(value, dict):
                password = self._set_password(annotation, value)
            return value, password, f"a body generated from {name}"
        example = declared_example(body.field_info)
        if example is not None:
            return example, None, f"the {name} body the route declares as its example"
        value = generate_value(body.field_info.annotation, body.field_info)
        return _jsonable(value), None, f"a body generated from {name}"

    def _model_body(self, model: type[BaseModel]) -> Any:
        try:
            factory = _ProbeFactory.create_factory(
                model,
                __allow_none_optionals__=False,
                **_seeded(f"{model.__module__}.{model.__qualname__}.{self.counter}"),
            )
        except Exception:  # noqa: BLE001 - a model polyfactory cannot build
            return {}
        with _bounded(BUILD_SECONDS):
            for _ in range(8):
                try:
                    instance = factory.build()
                    # In the try: a field typed ``Any`` may get a value JSON cannot hold.
                    return instance.model_dump(mode="json", by_alias=True)
                except BuildTimeout:
                    raise
                except Exception:  # noqa: BLE001 - a validator refused this draw; try another
                    continue
        return {}

    def _set_password(self, model: type[BaseModel], value: dict[str, Any]) -> str | None:
        """Give a password field a known value (kept only if the model still validates)."""
        for name, model_field in model.model_fields.items():
            key = model_field.alias or name
            if not PASSWORD_FIELD.match(name) or key not in value:
                continue
            # Deterministic (a run reads like the last one) and unique within the run.
            plain = f"Probe-{self.counter:06d}-pw"
            candidate = dict(value)
            candidate[key] = plain
            for other_name, other in model.model_fields.items():
                if other_name != name and _confirms_password(name, other_name):
                    candidate[other.alias or other_name] = plain
            try:
                model.model_validate(candidate)
            except Exception:  # noqa: BLE001 - the app's rules refuse it; keep the generated one
                return None
            value.clear()
            value.update(candidate)
            return plain
        return None

    # -- requests -----------------------------------------------------------------------------------

    def happy(self, route: RouteFacts, pick: str = "first") -> ProbeRequest | None:
        """A valid request for the route, or None when its body cannot be built (file uploads), or
        when building it failed (recorded in :attr:`failures`, or :attr:`given_up` when the app's
        own validators never finished: that route is not built again)."""
        if route.target in self.given_up or route.target in self.failures:
            return None
        try:
            return self._happy(route, pick)
        except Exception as exc:  # noqa: BLE001 - this route's problem only
            self.record_failure(route, exc)
            return None

    def _happy(self, route: RouteFacts, pick: str) -> ProbeRequest | None:
        kind = self.body_kind(route)
        if kind == "file":
            return None
        request = ProbeRequest(
            method=route.method,
            path=_fill_path(route.path, self.path_values(route, pick)),
            params=self.query_values(route),
            headers=dict(self.headers),
            description="a valid request",
            template=route.path,
        )
        if kind is not None:
            value, password, description = self.body(route)
            request.description = description
            request.password = password
            if kind == "form":
                request.form = {
                    str(k): str(v)
                    for k, v in (value or {}).items()
                    if v is not None and not isinstance(v, dict | list)
                }
            else:
                request.json_body = value
        return request

    def missing(self, route: RouteFacts) -> ProbeRequest | None:
        try:
            values = self.missing_values(route)
        except Exception as exc:  # noqa: BLE001 - this route's problem only
            self.record_failure(route, exc)
            return None
        if values is None:
            return None
        request = self.happy(route)
        if request is None:
            return None
        request.path = _fill_path(route.path, values)
        request.description = "an id that does not exist"
        return request

    def bad_inputs(self, route: RouteFacts, limit: int = 2) -> list[ProbeRequest]:
        """Malformed bodies and wrongly typed parameters (FR210), at most ``limit`` of them.

        What turns bad input into a 500 is nearly always app-wide (a validation-error handler that
        reads the body or cannot serialise the errors, a middleware that parses JSON), so a couple
        of variants per route find it; the most telling come first: a malformed JSON body (it
        reaches code that re-reads the body), then a typed path parameter, a typed query
        parameter, a body whose fields all have the wrong type, a JSON array for an object.
        """
        try:
            return self._bad_inputs(route, limit)
        except Exception as exc:  # noqa: BLE001 - this route's problem only
            self.record_failure(route, exc)
            return []

    def _bad_inputs(self, route: RouteFacts, limit: int) -> list[ProbeRequest]:
        base = self.happy(route)
        if base is None:
            return []
        json_body = self.body_kind(route) == "json"
        made: list[ProbeRequest] = []
        if json_body:
            made.append(
                _variant(
                    base,
                    json_body=None,
                    content=b'{"broken": ',
                    headers={**base.headers, "content-type": "application/json"},
                    description="a malformed JSON body",
                )
            )
        for model_field in self.params(route, "path"):
            if is_typed_param(model_field.field_info.annotation):
                values = self.path_values(route)
                values[getattr(model_field, "alias", model_field.name)] = BAD_VALUE
                made.append(
                    _variant(
                        base,
                        path=_fill_path(route.path, values),
                        description=f"path parameter `{model_field.name}`={BAD_VALUE!r}",
                    )
                )
                break
        for model_field in self.params(route, "query"):
            if is_typed_param(model_field.field_info.annotation):
                params = dict(base.params)
                params[getattr(model_field, "alias", model_field.name)] = BAD_VALUE
                made.append(
                    _variant(
                        base, params=params, description=f"query parameter `{model_field.name}`={BAD_VALUE!r}"
                    )
                )
                break
        if json_body:
            annotation = plain_annotation(self.body_field(route).field_info.annotation)
            if is_subclass(annotation, BaseModel) and annotation.model_fields:
                wrong = {
                    (f.alias or name): {"unexpected": [1, "two"]}
                    for name, f in annotation.model_fields.items()
                }
                made.append(
                    _variant(base, json_body=wrong, description="a body whose every field has the wrong type")
                )
                array = "a JSON array where an object is expected"
                made.append(_variant(base, json_body=[1, 2, 3], description=array))
        return made[:limit]


def _variant(base: ProbeRequest, **changes: Any) -> ProbeRequest:
    values = {**base.__dict__, **changes}
    values["password"] = None
    return ProbeRequest(**values)


def encode_json(value: Any) -> bytes:
    return json.dumps(value).encode()
