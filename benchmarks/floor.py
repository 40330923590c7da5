"""The floor: the least work any runtime checker of an app must do.

Two shapes of it. For an app made by ``generate_app.py`` (``python benchmarks/floor.py APP_DIR``):
import the app, run its lifespan, create and seed an isolated SQLite database once, and send one
request to every route; it fails if any answer is a 5xx. For any other app, whose database and
auth the floor cannot know (``python benchmarks/floor.py --app MODULE:ATTR``, from the project's
directory, with the project's environment; ``real_app.py`` runs it): import the app, run its
lifespan, and send one GET to every GET route without path parameters; it prints how the answers
went (a real app may answer 401 or 5xx to an anonymous GET on its own data) and fails only when
the app cannot be imported or started. Both send their requests in process, through httpx's
ASGITransport.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi.routing import APIRoute

#: Seconds the app's lifespan may take to start: a real app may run its migrations there.
STARTUP_TIMEOUT = 120.0


async def main(app_dir: Path) -> int:
    folder = Path(tempfile.mkdtemp(prefix="fastapi-rules-floor-"))
    try:
        return await _floor(app_dir, folder / "floor.db")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _floor(app_dir: Path, database: Path) -> int:
    os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    os.environ.setdefault("API_KEY", "benchmark-key")
    sys.path.insert(0, str(app_dir))

    from app.database import Base, sessionmanager
    from app.main import app
    from sqlalchemy import insert

    async with LifespanManager(app) as manager:
        assert sessionmanager.engine is not None
        async with sessionmanager.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
            for table in Base.metadata.sorted_tables:
                rows = []
                for index in range(1, 4):
                    row: dict[str, object] = {}
                    for column in table.columns:
                        if column.foreign_keys or column.type.python_type is int:
                            row[column.name] = index
                        elif column.type.python_type is bool:
                            row[column.name] = True
                        else:
                            row[column.name] = f"{column.name}-{index}"
                    rows.append(row)
                await connection.execute(insert(table), rows)
        requests: list[tuple[str, str, Any]] = []
        for route in _api_routes(app, APIRoute):
            for method in sorted(route.methods):
                path = re.sub(r"\{[^}]+\}", "1", route.path)
                requests.append((method, path, {} if method in {"POST", "PUT", "PATCH"} else None))
        statuses = await _send(manager.app, requests, {"X-API-Key": os.environ["API_KEY"]})
    sent = sum(statuses.values())
    failed = sum(count for status, count in statuses.items() if status >= 500)
    print(f"floor: {sent} requests, {failed} answered 5xx")
    return 1 if failed else 0


async def any_app(app_path: str) -> int:
    """The floor of any app: import ``MODULE:ATTR``, start it, one GET per parameterless GET route.

    The current directory is the project's, put first on the import path as pytest's rootdir is
    for the plugin. Prints one line, ``floor: `` and a JSON object: the app's API routes, its
    (method, path) pairs, the GETs sent and their answers by status class.
    """
    sys.path.insert(0, os.getcwd())
    module_name, _, attribute = app_path.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    routes = _api_routes(app, APIRoute)
    gets = [("GET", route.path, None) for route in routes if "GET" in route.methods and "{" not in route.path]
    async with LifespanManager(app, startup_timeout=STARTUP_TIMEOUT) as manager:
        statuses = await _send(manager.app, gets, {})
    by_class = collections.Counter(f"{status // 100}xx" for status in statuses.elements())
    summary = {
        "api_routes": len(routes),
        "operations": sum(len(route.methods) for route in routes),
        "parameterless_gets": len(gets),
        "answers": dict(sorted(by_class.items())),
    }
    print(f"floor: {json.dumps(summary)}")
    return 0


async def _send(
    app: Any, requests: Sequence[tuple[str, str, Any]], headers: dict[str, str]
) -> collections.Counter[int]:
    """Send ``requests`` (method, path, JSON body or None) one after the other; count the statuses.

    The app's exceptions become 500 answers (``raise_app_exceptions=False``), as a server's would.
    """
    statuses: collections.Counter[int] = collections.Counter()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=headers) as client:
        for method, path, body in requests:
            response = await client.request(method, path, json=body)
            statuses[response.status_code] += 1
    return statuses


def _api_routes(app: object, api_route: type) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts

        return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, api_route)]  # type: ignore[attr-defined]
    except ImportError:
        return [r for r in app.routes if isinstance(r, api_route)]  # type: ignore[attr-defined]


if __name__ == "__main__":
    if sys.argv[1] == "--app":
        raise SystemExit(asyncio.run(any_app(sys.argv[2])))
    raise SystemExit(asyncio.run(main(Path(sys.argv[1]))))
