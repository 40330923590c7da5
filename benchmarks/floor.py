"""The floor: the least work any runtime checker of an app must do.

Import the app, run its lifespan, create and seed an isolated SQLite database once, and send one
request to every route through httpx's ASGITransport. Usage: ``python benchmarks/floor.py APP_DIR``
(an app made by ``generate_app.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path


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

    import httpx
    from app.database import Base, sessionmanager
    from app.main import app
    from asgi_lifespan import LifespanManager
    from fastapi.routing import APIRoute
    from sqlalchemy import insert

    sent = failed = 0
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
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        headers = {"X-API-Key": os.environ["API_KEY"]}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers=headers
        ) as client:
            for route in _api_routes(app, APIRoute):
                for method in sorted(route.methods):
                    path = re.sub(r"\{[^}]+\}", "1", route.path)
                    body = {} if method in {"POST", "PUT", "PATCH"} else None
                    response = await client.request(method, path, json=body)
                    sent += 1
                    failed += response.status_code >= 500
    print(f"floor: {sent} requests, {failed} answered 5xx")
    return 1 if failed else 0


def _api_routes(app: object, api_route: type) -> list[object]:
    try:
        from fastapi.routing import iter_route_contexts

        return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, api_route)]  # type: ignore[attr-defined]
    except ImportError:
        return [r for r in app.routes if isinstance(r, api_route)]  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(Path(sys.argv[1]))))
