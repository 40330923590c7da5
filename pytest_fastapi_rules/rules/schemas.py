"""FR6xx: Pydantic v2 schemas (Rules #14, #15).

FR602 (``pydantic.v1`` API in the source) is a source rule and lives with the source rules; the
rules here read the imported model classes and the routes that use them.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    RuleSkipped,
    Scope,
    Severity,
    rule,
)
from pytest_fastapi_rules.rules.common import is_api_route

if typing.TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions

#: How deep nested models are followed (cycles are cut separately; this bounds pathological generics).
_MAX_DEPTH = 8


# -- annotations -----------------------------------------------------------------------------------


def _is_model_class(obj: Any) -> bool:
    try:
        return inspect.isclass(obj) and issubclass(obj, BaseModel) and obj is not BaseModel
    except TypeError:  # Python 3.10: `list[int]` passes isclass() but not issubclass()
        return False


def _type_args(annotation: Any) -> tuple[Any, ...]:
    """The arguments of a generic alias, union or ``Annotated`` (``Annotated``: the type only)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return (typing.get_args(annotation)[0],)
    return typing.get_args(annotation)


def model_classes_in(annotation: Any, depth: int = 0) -> list[type[BaseModel]]:
    """Pydantic model classes an annotation stands for, through ``Annotated``, unions, containers.

    ``list[PostResponse] | None`` gives ``[PostResponse]``; a model's own fields are not followed.
    """
    if depth > _MAX_DEPTH or annotation is None:
        return []
    if _is_model_class(annotation):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in _type_args(annotation):
        for model in model_classes_in(arg, depth + 1):
            if model not in found:
                found.append(model)
    return found


def iter_nested_models(roots: Iterable[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """The given models and every model reachable through their fields, each once."""
    seen: set[type[BaseModel]] = set()
    stack = list(roots)
    while stack:
        model = stack.pop(0)
        if model in seen:
            continue
        seen.add(model)
        yield model
        for field in _model_fields(model).values():
            stack.extend(model_classes_in(getattr(field, "annotation", None)))


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    fields = getattr(model, "model_fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def _param_annotation(param: Any) -> Any:
    """The annotation of one of FastAPI's ``ModelField`` parameters (all supported versions)."""
    field_info = getattr(param, "field_info", None)
    annotation = getattr(field_info, "annotation", None)
    if annotation is None:
        annotation = getattr(param, "outer_type_", None) or getattr(param, "type_", None)
    return annotation


def _param_metadata(param: Any) -> list[Any]:
    return list(getattr(getattr(param, "field_info", None), "metadata", None) or [])


def body_params(route: RouteFacts) -> list[Any]:
    """Body parameters (JSON and form) of the route and of every dependency it uses."""
    return [param for dependant in route.iter_dependants() for param in dependant.body_params]


def body_models(route: RouteFacts) -> list[type[BaseModel]]:
    """Pydantic model classes the route reads from the request body."""
    found: list[type[BaseModel]] = []
    for param in body_params(route):
        for model in model_classes_in(_param_annotation(param)):
            if model not in found:
                found.append(model)
    return found


def response_models(route: RouteFacts) -> list[type[BaseModel]]:
    """Pydantic model classes of the route's response model (declared or from the annotation)."""
    return model_classes_in(route.response_model)


def _has_pydantic_body(route: RouteFacts, options: RulesOptions) -> bool:
    return is_api_route(route, options) and bool(body_models(route))


def _takes_request_fields(route: RouteFacts, options: RulesOptions) -> bool:
    if not is_api_route(route, options):
        return False
    return any(d.body_params or d.query_params for d in route.iter_dependants())


def _name(obj: Any) -> str:
    return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or obj)


# -- FR601 -----------------------------------------------------------------------------------------


def _declares_orm_mode(model: type[BaseModel]) -> bool:
    """Whether ``model`` itself (not a parent) puts ``orm_mode`` in its configuration.

    Pydantic 2 keeps an unknown ``orm_mode`` key in the merged ``model_config`` of every subclass,
    so a parent's key is only reported on the parent.
    """
    config = model.__dict__.get("model_config")
    if not isinstance(config, dict) or "orm_mode" not in config:
        return False
    for base in model.__mro__[1:]:
        base_config = base.__dict__.get("model_config") if _is_model_class(base) else None
        if isinstance(base_config, dict) and "orm_mode" in base_config:
            return False
    return True


@rule(
    code="FR601",
    name="pydantic-v2-config",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #14",
    summary=(
        "Pydantic models of the app (settings classes included) configure themselves with "
        "`model_config = ConfigDict(...)`: no inner `class Config`, no `orm_mode`."
    ),
    rationale=(
        "An inner `class Config` is a deprecated v1 shim (a class cannot mix it with "
        "`model_config`, and it goes away in Pydantic 3). `orm_mode` does nothing in Pydantic 2 "
        "beyond a warning that it was renamed `from_attributes`: a model relying on it fails to "
        "convert ORM objects."
    ),
    fix="Replace `class Config:` with `model_config = ConfigDict(...)` (`SettingsConfigDict` for "
    "settings) and rename `orm_mode=True` to `from_attributes=True`.",
    bad_example="class UserResponse(BaseModel):\n    id: int\n\n    class Config:\n        orm_mode = True",
    good_example="class UserResponse(BaseModel):\n    model_config = ConfigDict(from_attributes=True)"
    "\n\n    id: int",
)
def check_pydantic_v2_config(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    for model in facts.own_pydantic_models:
        inner_config = model.__dict__.get("Config")
        has_inner_config = inspect.isclass(inner_config)
        orm_mode = _declares_orm_mode(model) or (has_inner_config and hasattr(inner_config, "orm_mode"))
        if not has_inner_config and not orm_mode:
            continue
        if has_inner_config:
            what = "defines an inner `class Config`"
            if orm_mode:
                what += " with `orm_mode`"
        else:
            what = "sets `orm_mode` in `model_config` (v2 name: `from_attributes`)"
        yield Finding(
            message=f"model `{_name(model)}` {what}",
            location=facts.location_of(model),
        )


# -- FR603 -----------------------------------------------------------------------------------------


def _orm_attribute_names(mapped: type) -> frozenset[str]:
    """``sqlalchemy.inspect(cls).attrs.keys()``: columns, relationships, synonyms."""
    from sqlalchemy import inspect as sa_inspect

    try:
        mapper: Any = sa_inspect(mapped, raiseerr=False)
        # attrs configures the mappers: a broken relationship elsewhere raises here.
        return frozenset(str(key) for key in mapper.attrs.keys())  # noqa: SIM118 - no dict
    except Exception:  # noqa: BLE001 - a mapper that cannot configure matches nothing
        return frozenset()


def _field_read_names(name: str, field: Any) -> set[str]:
    """The attribute names ``from_attributes`` may read a field from: its name or string alias."""
    names = {name}
    for alias in (getattr(field, "validation_alias", None), getattr(field, "alias", None)):
        if isinstance(alias, str):
            names.add(alias)
    return names


_ORM_AFFIXES = ("model", "row", "orm", "table", "entity", "record", "db")


def _stem(name: str) -> str:
    """``ItemRow``/``DBItem``/``ItemModel`` -> ``item``: the entity an ORM class is named after."""
    stem = name.lower()
    for affix in _ORM_AFFIXES:
        if stem.endswith(affix) and len(stem) > len(affix):
            stem = stem[: -len(affix)]
        if stem.startswith(affix) and len(stem) > len(affix):
            stem = stem[len(affix) :]
    return stem


def _fit(model: type[BaseModel], orm_class: type, names: frozenset[str]) -> tuple[bool, int, str]:
    """Sort key of the ORM class a model most likely mirrors: named alike (``TierRead`` and
    ``Tier``, ``ItemOut`` and ``ItemRow``), then the fewest attributes the model leaves out."""
    named_alike = _stem(_name(orm_class)) in _name(model).lower()
    return (not named_alike, len(names) - len(_model_fields(model)), _name(orm_class))


def _api_response_models(facts: AppFacts, options: RulesOptions) -> dict[type[BaseModel], str]:
    """Every model an API route answers with (nested ones included) -> the first route using it."""
    used_by: dict[type[BaseModel], str] = {}
    for route in facts.routes:
        if not is_api_route(route, options):
            continue
        for model in iter_nested_models(response_models(route)):
            used_by.setdefault(model, route.target)
    return used_by


@rule(
    code="FR603",
    name="response-from-attributes",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rules #14, #15",
    summary=(
        "A response model that mirrors an ORM class (2+ fields, all of them attributes of one "
        "mapped class) sets `from_attributes=True`; checked once per model, not per route."
    ),
    rationale=(
        "Rule #15 converts ORM objects explicitly with `Model.model_validate(orm_obj)`, which only "
        "reads attributes when the model (and every model nested in it) sets "
        "`from_attributes=True`; otherwise the conversion fails with a validation error at "
        "runtime (FastAPI's own response validation reads attributes anyway, which hides the gap "
        "until someone converts explicitly). A model counts as ORM-backed when one mapped class "
        "has attributes for all its fields."
    ),
    fix="Add `model_config = ConfigDict(from_attributes=True)` to the response model.",
    bad_example="class PostResponse(BaseModel):  # mirrors the Post ORM class\n    id: int\n    title: str",
    good_example="class PostResponse(BaseModel):\n    model_config = ConfigDict(from_attributes=True)"
    "\n\n    id: int\n    title: str",
)
def check_response_from_attributes(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    attributes = {cls: _orm_attribute_names(cls) for cls in facts.mapped_classes}
    attributes = {cls: names for cls, names in attributes.items() if names}
    if not attributes:
        raise RuleSkipped("the app maps no SQLAlchemy ORM classes, so no response is ORM-backed")
    used_by = _api_response_models(facts, context.options)
    if not used_by:
        raise RuleSkipped("no API route declares a Pydantic response model")
    for model, target in used_by.items():
        if not facts.is_own_object(model) or model in attributes:
            continue
        fields = _model_fields(model)
        if len(fields) < 2:
            continue
        config = getattr(model, "model_config", None) or {}
        if isinstance(config, dict) and config.get("from_attributes"):
            continue
        matches = [
            cls
            for cls, names in attributes.items()
            if all(_field_read_names(name, field) & names for name, field in fields.items())
        ]
        if not matches:
            continue
        orm_class = min(matches, key=lambda cls: _fit(model, cls, attributes[cls]))
        yield Finding(
            message=(
                f"response model `{_name(model)}` (of {target}) mirrors ORM class "
                f"`{_name(orm_class)}` but does not set `from_attributes=True`"
            ),
            location=facts.location_of(model),
        )


# -- FR604 -----------------------------------------------------------------------------------------


@rule(
    code="FR604",
    name="distinct-io-schemas",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #14",
    summary=(
        "A route's request body model and its response model are different classes "
        "(compared through `list[...]`, `Optional` and `Annotated`)."
    ),
    rationale=(
        "Input and output have different fields: the client must not send `id` or `created_at`, "
        "and the server must not echo a `password`. One class for both either accepts fields the "
        "client must not set or leaks fields it must not see (UserCreate / UserResponse)."
    ),
    fix="Split the model into a create/update schema for the body and a response schema "
    "(they may share a base class).",
    applies_to=_has_pydantic_body,
    bad_example='@router.post("/posts")\nasync def create_post(data: Post) -> Post: ...',
    good_example='@router.post("/posts")\nasync def create_post(data: PostCreate) -> PostResponse: ...',
)
def check_distinct_io_schemas(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    responses = response_models(route)
    for model in body_models(route):
        if model in responses:
            yield Finding(
                message=f"`{_name(model)}` is both the request body and the response model",
                location=route.location,
            )


# -- FR605 -----------------------------------------------------------------------------------------


_VALIDATOR_MARKERS = ("AfterValidator", "BeforeValidator", "PlainValidator", "WrapValidator")


def _is_email_name(name: str) -> bool:
    lowered = name.lower()
    return lowered == "email" or lowered.endswith("_email")


def _is_plain_str(annotation: Any) -> bool:
    """``str``, possibly ``Optional``/``Annotated``; ``EmailStr``, ``NewType``s and others are not."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_plain_str(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_plain_str(a) for a in args)
    return False


def _metadata_validates(metadata: Iterable[Any]) -> bool:
    """A validator or a pattern in the field's metadata: the app checks the value its own way."""
    for item in metadata:
        if type(item).__name__ in _VALIDATOR_MARKERS:
            return True
        if getattr(item, "pattern", None):
            return True
    return False


def _annotated_metadata(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        return list(typing.get_args(annotation)[1:])
    metadata: list[Any] = []
    for arg in typing.get_args(annotation):
        metadata.extend(_annotated_metadata(arg))
    return metadata


def _validated_fields(model: type[BaseModel]) -> set[str]:
    """Fields that a ``@field_validator`` (or a v1-style ``@validator``) of the model checks."""
    decorators = getattr(model, "__pydantic_decorators__", None)
    names: set[str] = set()
    for group in ("field_validators", "validators"):
        for decorator in (getattr(decorators, group, None) or {}).values():
            fields = getattr(getattr(decorator, "info", None), "fields", ()) or ()
            if "*" in fields:
                return set(_model_fields(model))
            names.update(str(f) for f in fields)
    return names


def _unvalidated_email(name: str, annotation: Any, metadata: list[Any]) -> bool:
    if not _is_email_name(name) or not _is_plain_str(annotation):
        return False
    return not _metadata_validates(metadata + _annotated_metadata(annotation))


@rule(
    code="FR605",
    name="email-fields-validated",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="Rule #14",
    summary=(
        "Request fields named `email` or `*_email` (body models, nested models, form and query "
        "parameters) are `EmailStr` or carry a validator of their own; non-`str` fields pass."
    ),
    rationale=(
        "A plain `str` accepts any text as an address: accounts get created for addresses that "
        "cannot receive mail, and lookups by email miss. The rulebook's schemas use `EmailStr`."
    ),
    fix="Annotate the field as `pydantic.EmailStr` (needs the `email-validator` package), or "
    "validate it with a `@field_validator`.",
    applies_to=_takes_request_fields,
    bad_example="class UserCreate(BaseModel):\n    email: str",
    good_example="class UserCreate(BaseModel):\n    email: EmailStr",
)
def check_email_fields_validated(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    facts = context.facts
    roots: list[type[BaseModel]] = []
    for dependant in route.iter_dependants():
        for kind, params in (("body", dependant.body_params), ("query", dependant.query_params)):
            for param in params:
                annotation = _param_annotation(param)
                roots.extend(model_classes_in(annotation))
                name = str(getattr(param, "name", "") or "")
                if _unvalidated_email(name, annotation, _param_metadata(param)):
                    yield Finding(
                        message=f"{kind} parameter `{name}` is a plain `str`, not `EmailStr`",
                        location=route.location,
                    )
    for model in iter_nested_models(roots):
        if not facts.is_own_object(model):
            continue  # a library's schema: not the app's to change (its nested models still count)
        validated = _validated_fields(model)
        for name, field in _model_fields(model).items():
            if name in validated:
                continue
            annotation = getattr(field, "annotation", None)
            if _unvalidated_email(name, annotation, list(getattr(field, "metadata", None) or [])):
                yield Finding(
                    message=f"request field `{_name(model)}.{name}` is a plain `str`, not `EmailStr`",
                    location=facts.location_of(model),
                )
