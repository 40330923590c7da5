"""FR6xx: Pydantic v2 schemas (Rules #14, #15).

FR601 and FR603-FR605 read the imported model classes and the routes that use them; FR602
(``pydantic.v1`` API) reads the app's source.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from pytest_fastapi_rules.facts import is_subclass, type_hints, unwrap_callable
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
from pytest_fastapi_rules.source.index import SourceIndex, _index, function_tree
from pytest_fastapi_rules.source.inference import instance_type
from pytest_fastapi_rules.source.parsing import FunctionInfo, _quote, _shadowed

if typing.TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts, RouteFacts
    from pytest_fastapi_rules.options import RulesOptions

#: How deep nested models are followed (cycles are cut separately; this bounds pathological generics).
_MAX_DEPTH = 8


# -- annotations -----------------------------------------------------------------------------------


def _is_model_class(obj: Any) -> bool:
    return is_subclass(obj, BaseModel) and obj is not BaseModel


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


# -- FR603: evidence that a route hands ORM objects to its response model -------------------------

#: Methods that turn an object into plain data: what they return is no ORM object.
_SERIALIZERS = frozenset(
    {"to_dict", "as_dict", "dict", "_asdict", "model_dump", "to_json", "json", "serialize", "dump"}
)
#: Query builders whose first argument is the ORM class whose objects the query returns
#: (``select(User)``, ``session.get(User, id)``, ``session.query(User)``).
_ORM_QUERIES = frozenset({"select", "query", "get", "get_one"})
#: Builtins that keep the objects they are given (``list(rows)``, ``sorted(rows)``).
_KEEPERS = frozenset({"list", "tuple", "set", "sorted", "reversed", "next", "iter"})
#: How far the search follows calls: the endpoint, its service, the service's repository.
_MAX_CALL_DEPTH = 2


def _class_of(annotation: Any) -> Any:
    """The class an annotation stands for (``Annotated[X, ...]``, ``X | None`` -> ``X``), or None."""
    for _ in range(_MAX_DEPTH):
        if inspect.isclass(annotation):
            return annotation
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if (origin is typing.Union or origin is types.UnionType) and len(members) == 1:
            annotation = members[0]
            continue
        return None
    return None


class _OrmFlow:
    """Reads an endpoint's source to tell whether it answers with ORM objects.

    Evidence is what the code says, never a coincidence of field names: a return annotation that
    names a mapped class (``-> Post``, ``-> Sequence[Post]``), a call whose callee is annotated to
    return one (``await service.get_post(id)``, followed through the parameter's annotation, up to
    the service's repository), a query built on a mapped class (``select(Post)``,
    ``session.get(Post, id)``), the mapped class's constructor, or ``from_attributes=True`` /
    ``from_orm`` at a conversion. Values are followed through assignments, loops and
    comprehensions; attribute reads (``post.title``) and serialisers (``post.to_dict()``) end the
    trail. What cannot be read (no source, an unannotated library call, a TypeVar such as
    FastCRUD's ``ModelType``, an abstract method whose implementation is chosen at runtime) is no
    evidence.
    """

    def __init__(self, facts: AppFacts) -> None:
        self.facts = facts
        self.mapped = frozenset(facts.mapped_classes)
        self._returns: dict[int, bool] = {}

    # -- annotations ------------------------------------------------------------------------

    def mentions_orm(self, annotation: Any, namespace: dict[str, Any] | None = None, depth: int = 0) -> bool:
        """Whether an annotation names a mapped class (through generics, unions, Annotated)."""
        if depth > _MAX_DEPTH or annotation is None:
            return False
        if isinstance(annotation, str | typing.ForwardRef):
            text = annotation if isinstance(annotation, str) else annotation.__forward_arg__
            names = re.findall(r"[A-Za-z_][\w.]*", text)
            found = [(namespace or {}).get(name.split(".")[-1]) for name in names]
            return any(inspect.isclass(obj) and obj in self.mapped for obj in found)
        if inspect.isclass(annotation):
            return annotation in self.mapped
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            args = args[:1]
        return any(self.mentions_orm(arg, namespace, depth + 1) for arg in args)

    def returns_orm(self, func: Any, depth: int) -> bool:
        """Whether a callable hands out ORM objects: by its annotation, else by its source."""
        func = unwrap_callable(func)
        if inspect.isclass(func):
            return func in self.mapped  # the constructor of a mapped class
        func = getattr(func, "__func__", func)
        if not inspect.isfunction(func) or getattr(func, "__isabstractmethod__", False):
            # An abstract method's annotation is a promise its implementations need not keep
            # (fastapi-boilerplate's use case says `list[User]`, its service returns `UserRead`s).
            return False
        key = id(func.__code__)
        if key in self._returns:
            return self._returns[key]
        self._returns[key] = False  # recursion guard
        annotation = type_hints(func).get("return")
        if annotation is not None:
            result = self.mentions_orm(annotation, getattr(func, "__globals__", {}))
        elif depth > _MAX_CALL_DEPTH:
            result = False
        else:
            result = _FunctionReader(self, func, depth).returns_orm(conversions=False)
        self._returns[key] = result
        return result

    def endpoint_evidence(self, endpoint: Any) -> bool:
        """Whether an endpoint answers with ORM objects (or converts them into its answer)."""
        func = unwrap_callable(endpoint)
        func = getattr(func, "__func__", func)
        if not inspect.isfunction(func):
            return False
        annotation = type_hints(func).get("return")
        if annotation is not None and self.mentions_orm(annotation, getattr(func, "__globals__", {})):
            return True
        return _FunctionReader(self, func, 0).returns_orm(conversions=True)


class _FunctionReader:
    """One function's source, read for ORM values (see :class:`_OrmFlow`)."""

    def __init__(self, flow: _OrmFlow, func: Any, depth: int) -> None:
        self.flow = flow
        self.func = func
        self.depth = depth
        self.namespace: dict[str, Any] = dict(getattr(func, "__globals__", {}) or {})
        self.hints = type_hints(func)
        self.owner = self._owner_class()
        self.tainted: set[str] = {
            name
            for name, annotation in self.hints.items()
            if name != "return" and flow.mentions_orm(annotation, self.namespace)
        }
        self.tree = self._parse()
        #: Parameters without an annotation: unknown values, never the module global of that name.
        self.unknown: set[str] = set()
        if isinstance(self.tree, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = self.tree.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
            every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
            self.unknown = {a.arg for a in every if a.arg not in self.hints and a.arg != "self"}

    def _owner_class(self) -> Any:
        """The class a method is defined in (for ``self.repository``), when it is a module global."""
        parts = str(getattr(self.func, "__qualname__", "")).split(".")
        if len(parts) < 2 or "<locals>" in parts:
            return None
        owner = self.namespace.get(parts[0])
        for part in parts[1:-1]:
            owner = getattr(owner, part, None)
        return owner if inspect.isclass(owner) else None

    def _parse(self) -> ast.AST | None:
        tree = function_tree(self.flow.facts, self.func)
        if tree is None or isinstance(tree, ast.FunctionDef | ast.AsyncFunctionDef):
            return tree
        for node in getattr(tree, "body", []):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    # -- resolving names to objects and types ---------------------------------------------------

    def _type_of_attribute(self, cls: Any, attr: str) -> Any:
        """The declared type of ``instance.attr``: a class annotation, else ``__init__``'s parameter."""
        hinted = type_hints(cls).get(attr) if inspect.isclass(cls) else None
        if hinted is None:
            init_hints = type_hints(getattr(cls, "__init__", None))
            hinted = init_hints.get(attr) or init_hints.get(attr.lstrip("_"))
        return _class_of(hinted)

    def resolve(self, node: ast.expr, depth: int = 0) -> tuple[str, Any] | None:
        """``("obj", value)`` for a known object, ``("type", cls)`` for an instance of a class."""
        if depth > 12:
            return None
        if isinstance(node, ast.Await):
            return self.resolve(node.value, depth + 1)
        if isinstance(node, ast.Name):
            if node.id == "self" and self.owner is not None:
                return ("type", self.owner)
            if node.id in self.hints and node.id != "return":
                cls = _class_of(self.hints[node.id])
                return ("type", cls) if cls is not None else None
            if node.id in self.unknown:
                return None
            if node.id in self.namespace:
                return ("obj", self.namespace[node.id])
            return None
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value, depth + 1)
            if base is None:
                return None
            kind, value = base
            if kind == "obj":
                try:
                    return ("obj", getattr(value, node.attr))
                except Exception:  # noqa: BLE001 - lazy proxies, properties that raise
                    return None
            member = inspect.getattr_static(value, node.attr, None)
            if member is not None and callable(getattr(member, "__func__", member)):
                return ("obj", getattr(member, "__func__", member))
            cls = self._type_of_attribute(value, node.attr)
            return ("type", cls) if cls is not None else None
        if isinstance(node, ast.Call):
            callee = self.resolve(node.func, depth + 1)
            if callee is None or callee[0] != "obj":
                return None
            target = unwrap_callable(callee[1])
            if inspect.isclass(target):
                return ("type", target)
            cls = _class_of(type_hints(target).get("return")) if callable(target) else None
            return ("type", cls) if cls is not None else None
        return None

    # -- ORM values -------------------------------------------------------------------------------

    def _is_mapped(self, node: ast.expr) -> bool:
        resolved = self.resolve(node)
        return resolved is not None and resolved[0] == "obj" and resolved[1] in self.flow.mapped

    def call_gives_orm(self, call: ast.Call) -> bool:
        """A call that produces ORM objects: an annotated callee, a query on a mapped class, a
        mapped constructor."""
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in _ORM_QUERIES and call.args and self._is_mapped(call.args[0]):
            return True
        callee = self.resolve(func)
        if callee is None or callee[0] != "obj":
            return False
        return self.flow.returns_orm(callee[1], self.depth + 1)

    def carries_orm(self, node: ast.expr | None) -> bool:
        """Whether the value of ``node`` is (or holds) ORM objects."""
        if node is None:
            return False
        if isinstance(node, ast.Name):
            return node.id in self.tainted
        if isinstance(node, ast.Await | ast.Starred):
            return self.carries_orm(node.value)
        if isinstance(node, ast.Subscript):
            return self.carries_orm(node.value)
        if isinstance(node, ast.IfExp):
            return self.carries_orm(node.body) or self.carries_orm(node.orelse)
        if isinstance(node, ast.BoolOp):
            return any(self.carries_orm(value) for value in node.values)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return any(self.carries_orm(element) for element in node.elts)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            self._taint_generators(node.generators)
            return self.carries_orm(node.elt)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                if func.attr in _SERIALIZERS:
                    return False
                if self._rooted_in_taint(func.value):  # result.scalars().all(), rows.first()
                    return True
            if isinstance(func, ast.Name) and func.id in _KEEPERS:
                return any(self.carries_orm(arg) for arg in node.args)
            if any(isinstance(n, ast.Call) and n is not node and self._is_query(n) for n in ast.walk(node)):
                return True  # (await session.execute(select(Post))).scalars()
            return self.call_gives_orm(node)
        return False

    def _is_query(self, call: ast.Call) -> bool:
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        return name in _ORM_QUERIES and bool(call.args) and self._is_mapped(call.args[0])

    def _rooted_in_taint(self, node: ast.expr) -> bool:
        while True:
            if isinstance(node, ast.Name):
                return node.id in self.tainted
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute) and node.func.attr in _SERIALIZERS:
                    return False
                node = node.func
            elif isinstance(node, ast.Attribute | ast.Subscript | ast.Await):
                node = node.value
            else:
                return False

    def _taint_targets(self, target: ast.expr) -> bool:
        names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        new = set(names) - self.tainted
        self.tainted.update(names)
        return bool(new)

    def _taint_generators(self, generators: list[ast.comprehension]) -> None:
        for generator in generators:
            if self.carries_orm(generator.iter):
                self._taint_targets(generator.target)

    def _propagate(self) -> None:
        """Taint every name assigned (or looped over) from an ORM value, to a fixed point."""
        assert self.tree is not None
        for _ in range(4):
            changed = False
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign):
                    if self.carries_orm(node.value):
                        for target in node.targets:
                            changed |= self._taint_targets(target)
                    continue
                value: ast.expr | None
                if isinstance(node, ast.For | ast.AsyncFor):
                    value, target = node.iter, node.target
                elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                    value, target = node.value, node.target
                else:
                    continue
                if self.carries_orm(value):
                    changed |= self._taint_targets(target)
            if not changed:
                return

    def _converts_orm(self, node: ast.expr) -> bool:
        """An answer built from ORM values: the values themselves, or a call (a model's
        constructor, ``model_validate``) or a container that is handed them; attribute reads
        (``post.title``) are plain values."""
        if self.carries_orm(node):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "from_orm":
                return True
            if any(k.arg == "from_attributes" and _is_true(k.value) for k in node.keywords):
                return True
            if isinstance(func, ast.Attribute) and func.attr in _SERIALIZERS:
                return False
            values = [*node.args, *(k.value for k in node.keywords)]
            return any(self._converts_orm(value) for value in values)
        if isinstance(node, ast.Dict):
            return any(self._converts_orm(value) for value in node.values if value is not None)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return any(self._converts_orm(element) for element in node.elts)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            self._taint_generators(node.generators)
            return self._converts_orm(node.elt)
        if isinstance(node, ast.DictComp):
            self._taint_generators(node.generators)
            return self._converts_orm(node.value)
        if isinstance(node, ast.IfExp):
            return self._converts_orm(node.body) or self._converts_orm(node.orelse)
        if isinstance(node, ast.Await):
            return self._converts_orm(node.value)
        return False

    def returns_orm(self, *, conversions: bool) -> bool:
        """Whether any ``return`` hands out ORM objects (with ``conversions``: or an answer built
        from them, as an endpoint's ``PostOut.model_validate(post)``)."""
        if self.tree is None:
            return False
        self._propagate()
        judge = self._converts_orm if conversions else self.carries_orm
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Return) and node.value is not None and judge(node.value):
                return True
        return False


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _orm_filled_models(facts: AppFacts, options: RulesOptions) -> tuple[dict[type[BaseModel], str], int]:
    """Models answered by routes whose code hands them ORM objects (nested ones included) -> the
    first such route; and how many API routes declare a response model at all."""
    flow = _OrmFlow(facts)
    used_by: dict[type[BaseModel], str] = {}
    declared = 0
    for route in facts.routes:
        if not is_api_route(route, options):
            continue
        models = response_models(route)
        if not models:
            continue
        declared += 1
        try:
            evidence = flow.endpoint_evidence(route.endpoint)
        except Exception:  # noqa: BLE001 - unreadable code is no evidence, never a crash
            evidence = False
        if not evidence:
            continue
        for model in iter_nested_models(models):
            used_by.setdefault(model, route.target)
    return used_by, declared


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
        "until someone converts explicitly). A model is judged only when a route's code shows it "
        "is filled from ORM objects: the endpoint's return annotation names a mapped class, or it "
        "returns (or converts) what a call annotated to return mapped classes gives (its service "
        "and repository are followed), a query on a mapped class (`select(Post)`, "
        "`session.get(Post, id)`) or a mapped constructor, or it converts with "
        "`from_attributes=True`/`from_orm`. Field names that merely coincide with columns are no "
        "evidence (FastCRUD-style apps build responses from dicts), and neither is code the "
        "plugin cannot read. A judged model counts as ORM-backed when one mapped class has "
        "attributes for all its fields."
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
    used_by, declared = _orm_filled_models(facts, context.options)
    if not declared:
        raise RuleSkipped("no API route declares a Pydantic response model")
    if not used_by:
        raise RuleSkipped(
            f"none of the {declared} routes with a response model shows that it answers with ORM "
            "objects (no ORM return annotation, no call annotated to return a mapped class, no "
            "query on a mapped class, no from_attributes conversion in its code): responses built "
            "from dicts need no from_attributes"
        )
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


_NOT_AN_ADDRESS = "not-an-address"


def _accepts_non_address(model: type[BaseModel], name: str) -> bool:
    """Whether ``model`` validates with ``name`` set to something that is not an address (the other
    fields from a generated valid instance); False when no valid instance can be made to try."""
    try:
        from polyfactory.factories.pydantic_factory import ModelFactory

        factory = ModelFactory.create_factory(model, __allow_none_optionals__=False)
        data = factory.build().model_dump(by_alias=False)
    except Exception:  # noqa: BLE001 - a model the generator cannot build: trust its validator
        return False
    data[name] = _NOT_AN_ADDRESS
    try:
        model.model_validate(data)
    except Exception:  # noqa: BLE001 - refused (ValidationError, or a validator raising): it validates
        return False
    return True


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
            annotation = getattr(field, "annotation", None)
            if name in validated:
                # A validator of its own is judged by what it does, not by being there.
                if _unvalidated_email(name, annotation, []) and _accepts_non_address(model, name):
                    yield Finding(
                        message=f"request field `{_name(model)}.{name}` has a validator of its own, yet "
                        f"accepts {_NOT_AN_ADDRESS!r}, which is not an e-mail address",
                        location=facts.location_of(model),
                        fix="Declare the field as `EmailStr` (pydantic[email]), or make its validator "
                        "refuse what is not an address.",
                    )
                continue
            if _unvalidated_email(name, annotation, list(getattr(field, "metadata", None) or [])):
                yield Finding(
                    message=f"request field `{_name(model)}.{name}` is a plain `str`, not `EmailStr`",
                    location=facts.location_of(model),
                )


# -- FR602 -----------------------------------------------------------------------------------------

_V1_VALIDATORS = frozenset(
    {
        "pydantic.validator",
        "pydantic.root_validator",
        "pydantic.class_validators.validator",
        "pydantic.class_validators.root_validator",
        "pydantic.deprecated.class_validators.validator",
        "pydantic.deprecated.class_validators.root_validator",
    }
)


#: v1 methods and their v2 names.
_V1_METHODS = {
    "dict": "model_dump()",
    "json": "model_dump_json()",
    "copy": "model_copy()",
    "parse_obj": "model_validate()",
    "parse_raw": "model_validate_json()",
    "parse_file": "model_validate_json(path.read_text())",
    "from_orm": "model_validate() with from_attributes=True",
    "schema": "model_json_schema()",
    "schema_json": "json.dumps(Model.model_json_schema())",
    "construct": "model_construct()",
    "update_forward_refs": "model_rebuild()",
}


def _pydantic_base() -> type:
    from pydantic import BaseModel

    return BaseModel


def _v1_method_owner(cls: type, method: str) -> bool:
    """Whether ``cls.method`` is pydantic's own (deprecated) method, not one the app defined."""
    for klass in cls.__mro__:
        if method in vars(klass):
            owner = (getattr(klass, "__module__", "") or "").split(".")[0]
            return owner in ("pydantic", "sqlmodel")  # SQLModel keeps the deprecated v1 names too
    return False


@rule(
    code="FR602",
    name="no-pydantic-v1-api",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.SOURCE,
    section="Rule #14",
    summary="No `pydantic.v1` import, `@validator`, `@root_validator`, `.dict()`, `.json()`, "
    "`.parse_obj()`, `.from_orm()` on models.",
    rationale=(
        "The v1 API is deprecated in Pydantic 2 (warnings on every call) and removed in v3; "
        "`pydantic.v1` models do not mix with v2 models in FastAPI."
    ),
    fix="Use the v2 API: `model_dump()`, `model_dump_json()`, `model_validate()`, "
    "`@field_validator`, `@model_validator`.",
    bad_example="user_dict = user.dict()\nuser = UserResponse.from_orm(db_user)",
    good_example="user_dict = user.model_dump()\nuser = UserResponse.model_validate(db_user)",
)
def check_no_pydantic_v1_api(context: CheckContext) -> Iterator[Finding]:
    """Methods count only on something known to be a Pydantic model: a ``BaseModel`` subclass named
    directly, or an instance typed by an annotation, built by ``Model(...)``/``Model.model_validate``,
    held in ``self.attr`` with a known type, or a module global (``settings.dict()``). ``.json()`` on
    an HTTP response or ``.dict()`` on a dataclass or dict is never a finding; nor is a method the
    model class defines itself."""
    index = _index(context)
    base = _pydantic_base()
    for module in index:
        for item in module.imported_names:
            if (
                item.target == "pydantic.v1"
                or item.target.startswith("pydantic.v1.")
                or (item.module == "pydantic" and item.name == "v1")
            ):
                yield Finding(
                    message=f"module `{module.name}` imports the Pydantic v1 API: "
                    f"{_quote(module, item.node)}",
                    location=module.location(item.node),
                )
        for node in module.nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    if module.resolve(target) in _V1_VALIDATORS:
                        yield Finding(
                            message=f"`{node.name}` uses the v1 decorator {_quote(module, decorator)}",
                            location=module.location(decorator),
                            fix="Use `@field_validator(...)` with `@classmethod` "
                            "(`@model_validator(mode=...)` for root validators).",
                        )
        for info in module.functions:
            for call in info.calls():
                func = call.func
                if not isinstance(func, ast.Attribute) or func.attr not in _V1_METHODS:
                    continue
                model = _model_class(info, func.value, index, base)
                if model is None or not _v1_method_owner(model, func.attr):
                    continue
                yield Finding(
                    message=f"`.{func.attr}()` on the Pydantic model `{model.__name__}` is the v1 API "
                    f"(v2: `{_V1_METHODS[func.attr]}`): {_quote(module, call)}",
                    location=module.location(call),
                    fix=f"Use `{_V1_METHODS[func.attr]}`.",
                )


def _model_class(info: FunctionInfo, receiver: ast.AST, index: SourceIndex, base: type) -> type | None:
    module = info.module
    if not _shadowed(info, receiver):
        value = module.value_of(receiver)
        if inspect.isclass(value):
            return value if is_subclass(value, base) else None
    cls = instance_type(info, receiver, index)
    if is_subclass(cls, base):
        return cls
    return None
