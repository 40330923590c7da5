"""Version differences of FastAPI and Starlette, in one place.

FastAPI 0.137+ keeps included routers as ``_IncludedRouter`` objects in ``app.routes`` and exposes the
effective routes through ``fastapi.routing.iter_route_contexts``; older versions flatten included
routers into ``APIRoute`` objects. Starlette keeps middleware options in ``Middleware.kwargs`` (new)
or ``Middleware.options`` (old).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Router

_iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)


@dataclass(frozen=True)
class EffectiveRoute:
    """A route as the app serves it: the full path, with router prefixes and dependencies applied."""

    #: Either an ``APIRoute`` (old FastAPI) or a ``RouteContext`` (new FastAPI); both expose
    #: ``path``, ``methods``, ``endpoint``, ``dependant``, ``status_code``, ``response_model``...
    route: Any
    #: The route object as the user declared it (router-relative path on new FastAPI).
    original: BaseRoute
    #: Path prefix of the ``Mount`` this route lives under, if any.
    mount_prefix: str = ""

    @property
    def is_api_route(self) -> bool:
        return isinstance(self.original, APIRoute)

    @property
    def path(self) -> str:
        return self.mount_prefix + str(getattr(self.route, "path", "") or "")

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self.route, name, default)


def _iter_routes(routes: list[BaseRoute], prefix: str, depth: int) -> Iterator[EffectiveRoute]:
    if _iter_route_contexts is not None:
        contexts: Iterator[Any] = _iter_route_contexts(routes)
        for context in contexts:
            original = context.original_route
            if isinstance(original, Mount) and depth < 4:
                yield from _iter_mount(original, prefix + (context.path or ""), depth)
            else:
                yield EffectiveRoute(route=context, original=original, mount_prefix=prefix)
        return
    for route in routes:
        if isinstance(route, Mount) and depth < 4:
            yield from _iter_mount(route, prefix + route.path, depth)
        else:
            yield EffectiveRoute(route=route, original=route, mount_prefix=prefix)


def _iter_mount(mount: Mount, prefix: str, depth: int) -> Iterator[EffectiveRoute]:
    """Routes of a mounted FastAPI sub-app or router, with the mount path prefixed."""
    inner = mount.app
    inner_routes: list[BaseRoute] | None = None
    if isinstance(inner, (Starlette, Router)):
        inner_routes = list(inner.routes)
    if inner_routes is None:
        return
    yield from _iter_routes(inner_routes, prefix, depth + 1)


def iter_effective_routes(app: Starlette) -> Iterator[EffectiveRoute]:
    """Every route of ``app`` as served, including those of included routers and mounted apps."""
    yield from _iter_routes(list(app.routes), "", 0)


def middleware_options(middleware: Any) -> dict[str, Any]:
    """The keyword options a ``starlette.middleware.Middleware`` entry was declared with."""
    options = getattr(middleware, "kwargs", None)
    if options is None:
        options = getattr(middleware, "options", None)
    return dict(options or {})


def middleware_class(middleware: Any) -> Any:
    return getattr(middleware, "cls", None)


def autoincrement_column(table: Any) -> Any:
    """The column the database fills for ``table`` (SQLAlchemy 2.0.0 has only the private name)."""
    found = getattr(table, "autoincrement_column", None)
    if found is None and not hasattr(type(table), "autoincrement_column"):
        found = getattr(table, "_autoincrement_column", None)
    return found
