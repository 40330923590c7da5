"""What an expression of the app's source holds, and which of the app's functions a call runs.

Answers for the source rules, when the code says it plainly (an annotation, ``Cls(...)``, ``self``,
an attribute typed in the class or its ``__init__``), and None whenever it is not certain: the
rules prefer a miss to a false positive.
"""

from __future__ import annotations

import ast
import inspect
from types import ModuleType
from typing import Any

from pytest_fastapi_rules.source.index import SourceIndex
from pytest_fastapi_rules.source.parsing import (
    MISSING,
    FunctionInfo,
    SourceModule,
    runtime_class,
    safe_attribute,
)

# -- types of expressions, for the rules ------------------------------------------------------------


def self_class(info: FunctionInfo) -> type | None:
    """The runtime class a method belongs to (None for functions and local classes)."""
    if info.class_node is None:
        return None
    return info.module.runtime_class(info.class_qualname)


def attribute_types(cls: type, index: SourceIndex) -> dict[str, type]:
    """Types of instance attributes: class-level annotations, and ``self.x = param`` in ``__init__``
    where the parameter is annotated (looked up through the MRO's own ``__init__`` methods)."""
    cached = index.attribute_cache.get(cls)
    if cached is None:
        cached = index.attribute_cache[cls] = _attribute_types(cls, index)
    return cached


def _attribute_types(cls: type, index: SourceIndex) -> dict[str, type]:
    types: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        module = index.get(getattr(klass, "__module__", None))
        if module is None:
            continue
        for name, annotation in list(vars(klass).get("__annotations__", {}).items()):
            if isinstance(annotation, str):
                try:
                    found = module.annotation_type(ast.parse(annotation, mode="eval").body)
                except SyntaxError:
                    found = None
            else:
                found = runtime_class(annotation)
            if found is not None:
                types[name] = found
        init = vars(klass).get("__init__")
        info = index.function_info(init) if init is not None else None
        if info is None:
            continue
        for node in info.body():
            target: ast.expr | None = None
            value: ast.expr | None = None
            annotation_node: ast.expr | None = None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign):
                target, value, annotation_node = node.target, node.value, node.annotation
            if not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                continue
            found_type = None
            if annotation_node is not None:
                found_type = module.annotation_type(annotation_node)
            elif isinstance(value, ast.Name):
                found_type = info.module.annotation_type(info.annotation_of(value.id))
            if found_type is not None:
                types[target.attr] = found_type
    return types


def instance_type(info: FunctionInfo, expr: ast.AST, index: SourceIndex) -> type | None:
    """The class of the object an expression holds, when the code says it plainly.

    Parameters and locals with annotations, locals assigned from ``Cls(...)`` or
    ``Cls.classmethod(...)``, ``self``, ``self.attr`` (see :func:`attribute_types`), and instances
    held in module globals. None whenever it is not certain.
    """
    module = info.module
    if isinstance(expr, ast.Name):
        name = expr.id
        if name == "self" and info.class_node is not None and name in info.parameters:
            return self_class(info)
        annotation = info.annotation_of(name)
        if annotation is not None:
            return module.annotation_type(annotation)  # type: ignore[no-any-return]
        bound = info.bindings.get(name)
        if bound:
            classes = {_class_of_value(module, info, value) for value in bound}
            if len(classes) == 1:
                return classes.pop()
            return None
        if name in info.parameters:
            return None
        value = module.value_of(expr)
        if value is MISSING or inspect.isclass(value) or inspect.isroutine(value):
            return None
        return None if isinstance(value, ModuleType) else type(value)
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "self"
        and info.class_node is not None
    ):
        cls = self_class(info)
        if cls is None:
            return None
        return attribute_types(cls, index).get(expr.attr)
    return None


def _class_of_value(module: SourceModule, info: FunctionInfo, value: ast.AST) -> type | None:
    """``x = Cls(...)`` or ``x = Cls.model_validate(...)`` -> Cls; None otherwise."""
    if not isinstance(value, ast.Call):
        return None
    func = value.func
    if isinstance(func, ast.Name) and func.id in info.local_names:
        return None
    called = module.value_of(func)
    if inspect.isclass(called):
        return called
    if isinstance(func, ast.Attribute):
        owner = module.value_of(func.value)
        if inspect.isclass(owner) and func.attr in (
            "model_validate",
            "model_validate_json",
            "model_construct",
            "parse_obj",
            "parse_raw",
            "from_orm",
            "construct",
        ):
            return owner
    return None


def resolve_callee(info: FunctionInfo, call: ast.Call, index: SourceIndex) -> FunctionInfo | None:
    """The app's own ``def`` a call runs, when it can be named without guessing.

    ``helper()`` (this module or imported), ``module.func()``, ``self.method()``, ``Cls.method()``,
    ``obj.method()`` with ``obj`` typed by :func:`instance_type`, and a function nested in the
    caller. Classes (constructors) are not followed.
    """
    func = call.func
    module = info.module
    if isinstance(func, ast.Name):
        nested = info.nested_function(func.id)
        if nested is not None:
            return nested
        if func.id in info.local_names:
            return None
        value = module.value_of(func)
        if value is MISSING:
            for candidate in module.functions:
                if candidate.parent is None and candidate.class_node is None and candidate.name == func.id:
                    return candidate
            return None
        return _function_of(value, index)
    if isinstance(func, ast.Attribute):
        receiver = func.value
        if isinstance(receiver, ast.Name) and receiver.id not in info.local_names:
            value = module.value_of(func)
            if value is not MISSING:
                return _function_of(value, index)
        cls = instance_type(info, receiver, index)
        if cls is None and isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
            cls = self_class(info)
        if cls is not None:
            return _function_of(safe_attribute(cls, func.attr), index)
    return None


def _function_of(value: Any, index: SourceIndex) -> FunctionInfo | None:
    if value is MISSING or value is None or inspect.isclass(value):
        return None
    if isinstance(value, property):
        return None
    if not (inspect.isfunction(value) or inspect.ismethod(value) or hasattr(value, "__wrapped__")):
        return None
    return index.function_info(value)
