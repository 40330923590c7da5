"""The code index: the app's own source, found through the running app and parsed once with ``ast``.

Source rules (FR302-FR307, FR401, FR403, FR602, FR703) read the code the app is made of, not whatever
lies on disk. The index starts from the facts:

- the imported modules of the app's own top-level packages (``AppFacts.own_modules``);
- the modules of the endpoints, of every callable in their dependency trees, of the exception
  handlers, the middleware classes, the lifespan, the ORM models and the settings classes, when those
  modules are project code (not the standard library, not site-packages, not a virtual environment);
- the modules of the app's own top-level packages (``AppFacts.own_packages``) that are on disk but not
  imported yet (a service imported lazily inside a function, a module nobody imports), found by
  walking the package folders. The walk skips test code (``tests/`` folders, ``test_*.py``,
  ``conftest.py``), virtual environments, ``site-packages``, migrations, hidden folders, and modules
  that build an app of their own at import time (another entry point, a script, a sample variant):
  they are not part of *this* app.

Each module is parsed once; the index is cached on the facts object (:func:`source_index`). Name
resolution is deliberately simple and conservative: imports are read statically, and where a name's
meaning matters (an annotation, a class, a module global), the already-imported module is asked at
runtime, without calling anything.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib.util
import inspect
import sys
import sysconfig
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_fastapi_rules.facts import AppFacts, is_subclass, unwrap_callable
from pytest_fastapi_rules.registry import CheckContext, RuleSkipped
from pytest_fastapi_rules.source.parsing import FunctionInfo, SourceModule

_INDEX_ATTRIBUTE = "_fastapi_rules_source_index"

_LIBRARY_DIRS = tuple(
    sorted(
        {
            str(Path(path).resolve())
            for key in ("purelib", "platlib", "stdlib", "platstdlib")
            if (path := sysconfig.get_paths().get(key))
        }
    )
)
#: Folders the disk walk never enters: tests, tooling, environments, generated code.
_SKIPPED_DIRS = frozenset(
    {
        "tests",
        "test",
        "testing",
        "__pycache__",
        "node_modules",
        "site-packages",
        "dist-packages",
        "migrations",
        "alembic",
        "build",
        "dist",
    }
)
#: Dotted-name parts that mark test code, for modules that are already imported.
_TEST_PARTS = frozenset({"tests", "test", "testing", "conftest"})

# -- which files are the project's -----------------------------------------------------------------


def is_library_file(path: Path) -> bool:
    """Whether ``path`` belongs to the interpreter or to installed packages (never the app's code)."""
    text = str(path)
    if text.startswith(_LIBRARY_DIRS):
        return True
    return "site-packages" in path.parts or "dist-packages" in path.parts


def is_test_module_name(name: str) -> bool:
    """Test code by its dotted name: a ``tests`` package, ``test_*``/``*_test`` modules, conftest."""
    parts = name.split(".")
    if any(part in _TEST_PARTS for part in parts):
        return True
    last = parts[-1]
    return last.startswith("test_") or last.endswith("_test")


def _module_file(module: ModuleType | None) -> Path | None:
    file = getattr(module, "__file__", None)
    if not file or not str(file).endswith(".py"):
        return None
    try:
        return Path(file).resolve()
    except OSError:
        return None


# -- the index --------------------------------------------------------------------------------------


@dataclass
class SourceIndex:
    """The app's own modules, parsed: see the module docstring for which modules and why."""

    facts: AppFacts
    modules: dict[str, SourceModule] = field(default_factory=dict)
    #: Files that could not be read or parsed, with the reason (reported by no rule; for debugging).
    errors: dict[str, str] = field(default_factory=dict)
    build_seconds: float = 0.0

    def __iter__(self) -> Iterator[SourceModule]:
        if len(self._ordered) != len(self.modules):
            self._ordered = [self.modules[name] for name in sorted(self.modules)]
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self.modules)

    def get(self, name: str | None) -> SourceModule | None:
        return self.modules.get(name) if name else None

    by_path: dict[Path, SourceModule] = field(default_factory=dict)
    _filenames: dict[str, SourceModule | None] = field(default_factory=dict, repr=False)
    _ordered: list[SourceModule] = field(default_factory=list, repr=False)
    _module_names: dict[str, bool] = field(default_factory=dict, repr=False)
    #: Per class, the instance attribute types :func:`attribute_types` found.
    attribute_cache: dict[type, dict[str, type]] = field(default_factory=dict, repr=False)

    def module_of(self, obj: Any) -> SourceModule | None:
        """The indexed module an object (function, class, instance) is defined in."""
        target = unwrap_callable(obj)
        if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
            target = type(target)
        return self.get(getattr(target, "__module__", None))

    def function_info(self, func: Any) -> FunctionInfo | None:
        """The indexed ``def`` of a runtime function (decorators and partials unwrapped)."""
        target = unwrap_callable(func)
        if inspect.ismethod(target):
            target = target.__func__
        code = getattr(target, "__code__", None)
        if code is None:
            return None
        module = self._module_by_filename(code.co_filename)
        if module is None:
            return None
        return module.functions_by_first_line.get(code.co_firstlineno)

    def _module_by_filename(self, filename: str) -> SourceModule | None:
        if filename not in self._filenames:
            try:
                self._filenames[filename] = self.by_path.get(Path(filename).resolve())
            except OSError:
                self._filenames[filename] = None
        return self._filenames[filename]

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def build(cls, facts: AppFacts) -> SourceIndex:
        started = time.perf_counter()
        index = cls(facts)
        # Parsing creates many long-lived objects: the cyclic collector would rescan the growing
        # heap again and again for no garbage (about half the build time on a 700-module app).
        paused = gc.isenabled()
        gc.disable()
        try:
            for module in index._seed_modules():
                index._add(module.__name__, _module_file(module), module)
            index._walk_own_packages()
            index._add_sibling_imports()
        finally:
            if paused:
                gc.enable()
        index.build_seconds = time.perf_counter() - started
        return index

    def _seed_modules(self) -> list[ModuleType]:
        """Imported modules the app is made of (see the module docstring)."""
        facts = self.facts
        seeds: dict[str, ModuleType] = {module.__name__: module for module in facts.own_modules}
        objects: list[Any] = [facts.loaded.module]
        for route in facts.routes:
            objects.append(route.endpoint)
            for dependant in route.iter_dependants():
                if dependant.call is not None:
                    objects.append(dependant.call)
        objects.extend(facts.exception_handlers.values())
        objects.extend(middleware.cls for middleware in facts.middleware)
        objects.append(getattr(getattr(facts.app, "router", None), "lifespan_context", None))
        with contextlib.suppress(Exception):  # an app without SQLAlchemy models
            objects.extend(facts.mapped_classes)
        objects.extend(settings_classes(facts))
        for obj in objects:
            if obj is None:
                continue
            target = unwrap_callable(obj)
            if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
                target = type(target)
            module = sys.modules.get(getattr(target, "__module__", None) or "")
            if module is not None:
                seeds.setdefault(module.__name__, module)
        return [seeds[name] for name in sorted(seeds)]

    @cached_property
    def project_dirs(self) -> tuple[Path, ...]:
        """Where the project's files live: the rootdir, and the app module's top-level package
        (imported from ``--fastapi-app-dir`` it may lie outside the rootdir)."""
        dirs = [self.facts.root.resolve()]
        module = self.facts.loaded.module
        top = sys.modules.get(module.__name__.split(".")[0], module)
        for directory in getattr(top, "__path__", None) or []:
            dirs.append(Path(directory).resolve())
        file = _module_file(top)
        if file is not None and not getattr(top, "__path__", None):
            dirs.append(file.parent)
        return tuple(dirs)

    def is_project_file(self, path: Path) -> bool:
        """Under the project's folders and not a library (a library on PYTHONPATH outside the
        project, a ``--target`` install, a virtual environment's site-packages)."""
        if is_library_file(path):
            return False
        return any(path == directory or directory in path.parents for directory in self.project_dirs)

    def _add(self, name: str, path: Path | None, module: ModuleType | None) -> None:
        if (
            path is None
            or name in self.modules
            or is_test_module_name(name)
            or not self.is_project_file(path)
        ):
            return
        if path in self.by_path:
            return
        try:
            raw = path.read_bytes()
            source = importlib.util.decode_source(raw)
            tree = ast.parse(raw, filename=str(path))
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError) as exc:
            self.errors[str(path)] = f"{type(exc).__name__}: {exc}"
            return
        added = SourceModule(
            name=name,
            path=path,
            display=self.facts.relative(path),
            source=source,
            tree=tree,
            module=module,
            module_names=self._module_names,
        )
        self.modules[name] = added
        self.by_path[path] = added

    def _walk_own_packages(self) -> None:
        """Add the modules of the own top-level packages that are on disk but not imported."""
        spec_attribute = self.facts.loaded.spec.rpartition(":")[2].split(".")[0]
        for package_name in sorted(self.facts.own_packages):
            package = sys.modules.get(package_name)
            for directory in getattr(package, "__path__", None) or []:
                root = Path(directory).resolve()
                if not self.is_project_file(root) or root == self.facts.root.resolve() or not root.is_dir():
                    continue
                for path in _walk_python_files(root):
                    relative = path.relative_to(root).with_suffix("")
                    parts = [package_name, *relative.parts]
                    if parts[-1] == "__init__":
                        parts.pop()
                    if not all(part.isidentifier() for part in parts):
                        continue
                    name = ".".join(parts)
                    if name in self.modules or path in self.by_path:
                        continue
                    imported = sys.modules.get(name)
                    if imported is not None and _module_file(imported) == path:
                        self._add(name, path, imported)
                        continue
                    self._add(name, path, None)
                    added = self.modules.get(name)
                    if added is not None and _builds_its_own_app(added, spec_attribute):
                        del self.modules[name]
                        del self.by_path[path]

    def _add_sibling_imports(self) -> None:
        """Add the project modules of *other* top-level packages that the app's code imports.

        ``own_packages`` knows the app module's package and its endpoints'; a project may keep code
        in a sibling package no endpoint comes from (``core/config.py`` beside ``app/``, imported as
        ``core.config``). That code is the app's too: a literal secret there once went unseen by
        FR703. Followed from import to import; only modules already imported, whose file is a
        project file (never a library, a virtual environment or test code, see :meth:`_add`).
        """
        own = self.facts.own_packages
        pending = list(self.modules.values())
        while pending:
            module = pending.pop()
            for item in module.imported_names:
                name = item.module
                top = name.split(".")[0]
                # the own packages were seeded and walked already (what that left out stays out)
                if name in self.modules or top in own or top in _NEVER_INDEXED:
                    continue
                imported = sys.modules.get(name)
                if imported is None:
                    continue
                self._add(name, _module_file(imported), imported)
                added = self.modules.get(name)
                if added is not None:
                    pending.append(added)


#: Top-level packages imported in the same process that are never the app's code.
_NEVER_INDEXED = frozenset({"pytest_fastapi_rules", "_pytest", "pytest", "pluggy"})


def _walk_python_files(root: Path) -> Iterator[Path]:
    """``*.py`` files below ``root``, pruning test folders, environments and hidden folders."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        if directory != root and (directory / "pyvenv.cfg").exists():
            continue
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                if name.startswith(".") or name in _SKIPPED_DIRS or name.endswith(".egg-info"):
                    continue
                stack.append(entry)
            elif (
                name.endswith(".py")
                and name != "conftest.py"
                and not name.startswith("test_")
                and not name.endswith("_test.py")
            ):
                yield entry


def _builds_its_own_app(module: SourceModule, spec_attribute: str) -> bool:
    """A module that is not imported and builds an app at import time is another entry point.

    ``app = FastAPI(...)``, or ``<name the --fastapi-app spec uses> = <call>`` at module level: a
    second service, a script, a sample variant. Its code is not part of the app under check.
    """
    for node in module.tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Call):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = {target.id for target in targets if isinstance(target, ast.Name)}
        called = module.resolve(node.value.func) or ""
        if called in ("fastapi.FastAPI", "fastapi.applications.FastAPI", "starlette.applications.Starlette"):
            return True
        if spec_attribute in names:
            return True
    return False


def settings_classes(facts: AppFacts) -> list[type]:
    """The app's own ``pydantic_settings.BaseSettings`` subclasses (empty without pydantic-settings)."""
    try:
        from pydantic_settings import BaseSettings
    except ImportError:
        return []
    return [cls for cls in facts.own_classes if is_subclass(cls, BaseSettings) and cls is not BaseSettings]


def source_index(facts: AppFacts) -> SourceIndex:
    """The index of the app's source, built on first use and cached on the facts object."""
    index: SourceIndex | None = facts.__dict__.get(_INDEX_ATTRIBUTE)
    if index is None:
        index = SourceIndex.build(facts)
        setattr(facts, _INDEX_ATTRIBUTE, index)
    return index


def function_tree(facts: AppFacts, function: Any) -> ast.AST | None:
    """The parsed ``def`` of a function: the source index's node when the index holds its module
    (parsed once for every rule; a 1,000-route app's endpoints were each read and parsed again by
    the rules that read bodies), else the function's own source parsed (a module); None when
    neither can be read."""
    with contextlib.suppress(Exception):
        info = source_index(facts).function_info(function)
        if info is not None:
            return info.node
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None


def _index(context: CheckContext) -> SourceIndex:
    """The index for a source rule, or a skip when none of the app's source was found."""
    index = source_index(context.facts)
    if not len(index):
        raise RuleSkipped("no source of the app's own modules was found (is the app installed as a library?)")
    return index
