"""Generate a FastAPI app of N routes in the rulebook's layout, for the benchmark.

Each domain package has ``models.py`` (a parent and a child table), ``schemas.py``,
``repository.py``, ``service.py``, ``dependencies.py`` and ``router.py`` with ten routes (list, get,
create, replace, update, delete, action, list children, get child, create child). The app has a
lifespan that creates its engine, a session manager, domain and generic error handlers, CORS, health
routes and pydantic-settings configuration, like the rulebook's templates.

Usage: ``python benchmarks/generate_app.py OUT_DIR ROUTES`` (ROUTES a multiple of 10).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

ROUTES_PER_DOMAIN = 10

CORE = {
    "__init__.py": "",
    "config.py": """
        from functools import lru_cache

        from pydantic_settings import BaseSettings, SettingsConfigDict


        class Settings(BaseSettings):
            model_config = SettingsConfigDict(extra="ignore")

            DATABASE_URL: str = "sqlite+aiosqlite:///./bench.db"
            API_KEY: str = ""
            ENVIRONMENT: str = "development"


        @lru_cache
        def get_settings() -> Settings:
            return Settings()
    """,
    "database.py": """
        from collections.abc import AsyncIterator

        from sqlalchemy import MetaData
        from sqlalchemy.ext.asyncio import (
            AsyncAttrs,
            AsyncEngine,
            AsyncSession,
            async_sessionmaker,
            create_async_engine,
        )
        from sqlalchemy.orm import DeclarativeBase

        convention = {
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }


        class Base(AsyncAttrs, DeclarativeBase):
            metadata = MetaData(naming_convention=convention)


        class SessionManager:
            def __init__(self) -> None:
                self.engine: AsyncEngine | None = None
                self.factory: async_sessionmaker[AsyncSession] | None = None

            def init(self, url: str) -> None:
                self.engine = create_async_engine(
                    url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=3600
                )
                self.factory = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

            async def close(self) -> None:
                if self.engine is not None:
                    await self.engine.dispose()
                self.engine = None
                self.factory = None


        sessionmanager = SessionManager()


        async def get_db() -> AsyncIterator[AsyncSession]:
            assert sessionmanager.factory is not None
            async with sessionmanager.factory() as session:
                try:
                    yield session
                    await session.commit()
                except Exception:
                    await session.rollback()
                    raise
    """,
    "errors.py": """
        class DomainError(Exception):
            status_code = 400
            code = "domain_error"


        class NotFoundError(DomainError):
            status_code = 404
            code = "not_found"
    """,
    "security.py": """
        from fastapi import Depends, HTTPException, status
        from fastapi.security import APIKeyHeader

        from app.config import get_settings

        api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


        async def require_api_key(key: str | None = Depends(api_key_header)) -> str:
            if not key or key != get_settings().API_KEY:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
                )
            return key
    """,
}

MAIN = """
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import JSONResponse

    from app.config import get_settings
    from app.database import sessionmanager
    from app.errors import DomainError
    {imports}


    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sessionmanager.init(get_settings().DATABASE_URL)
        yield
        await sessionmanager.close()


    def create_application() -> FastAPI:
        production = get_settings().ENVIRONMENT == "production"
        app = FastAPI(
            lifespan=lifespan,
            docs_url=None if production else "/docs",
            redoc_url=None if production else "/redoc",
            openapi_url=None if production else "/openapi.json",
        )
        app.add_middleware(
            CORSMiddleware,
            allow_origins=["http://localhost:3000"],
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            max_age=600,
        )

        @app.exception_handler(DomainError)
        async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
            return JSONResponse({{"error": exc.code, "message": str(exc)}}, status_code=exc.status_code)

        @app.exception_handler(Exception)
        async def unhandled(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({{"error": "internal_server_error", "message": "unexpected"}}, status_code=500)

        @app.get("/health", tags=["health"])
        async def health() -> dict[str, str]:
            return {{"status": "ok"}}

        {includes}
        return app


    app = create_application()
"""

DOMAIN = {
    "__init__.py": "",
    "models.py": """
        from sqlalchemy import ForeignKey, String
        from sqlalchemy.orm import Mapped, mapped_column, relationship

        from app.database import Base


        class {P}(Base):
            __tablename__ = "{d}_items"

            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(String(100))
            is_active: Mapped[bool] = mapped_column(default=True)
            children: Mapped[list["{C}"]] = relationship(
                back_populates="parent", lazy="raise", cascade="all, delete-orphan"
            )


        class {C}(Base):
            __tablename__ = "{d}_children"

            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(String(100))
            parent_id: Mapped[int] = mapped_column(ForeignKey("{d}_items.id"))
            parent: Mapped[{P}] = relationship(back_populates="children", lazy="raise")
    """,
    "schemas.py": """
        from pydantic import BaseModel, ConfigDict, Field


        class {P}Create(BaseModel):
            name: str = Field(min_length=1, max_length=100)


        class {P}Update(BaseModel):
            name: str | None = Field(None, min_length=1, max_length=100)
            is_active: bool | None = None


        class {C}Create(BaseModel):
            title: str = Field(min_length=1, max_length=100)


        class {C}Out(BaseModel):
            model_config = ConfigDict(from_attributes=True)

            id: int
            title: str
            parent_id: int


        class {P}Out(BaseModel):
            model_config = ConfigDict(from_attributes=True)

            id: int
            name: str
            is_active: bool
            children: list[{C}Out] = []
    """,
    "repository.py": """
        from sqlalchemy import select
        from sqlalchemy.ext.asyncio import AsyncSession
        from sqlalchemy.orm import selectinload

        from app.{d}.models import {C}, {P}


        class {P}Repository:
            def __init__(self, session: AsyncSession) -> None:
                self.session = session

            async def list_all(self, skip: int, limit: int) -> list[{P}]:
                stmt = select({P}).options(selectinload({P}.children)).offset(skip).limit(limit)
                return list((await self.session.scalars(stmt)).all())

            async def get(self, item_id: int) -> {P} | None:
                stmt = select({P}).options(selectinload({P}.children)).where({P}.id == item_id)
                return (await self.session.scalars(stmt)).first()

            async def add(self, item: {P} | {C}) -> None:
                self.session.add(item)
                await self.session.flush()

            async def delete(self, item: {P}) -> None:
                await self.session.delete(item)
                await self.session.flush()

            async def children(self, item_id: int, skip: int, limit: int) -> list[{C}]:
                stmt = select({C}).where({C}.parent_id == item_id).offset(skip).limit(limit)
                return list((await self.session.scalars(stmt)).all())

            async def child(self, child_id: int) -> {C} | None:
                return await self.session.get({C}, child_id)
    """,
    "service.py": """
        from app.errors import NotFoundError
        from app.{d}.models import {C}, {P}
        from app.{d}.repository import {P}Repository
        from app.{d}.schemas import {C}Create, {P}Create, {P}Update


        class {P}Service:
            def __init__(self, repository: {P}Repository) -> None:
                self.repository = repository

            async def list_all(self, skip: int, limit: int) -> list[{P}]:
                return await self.repository.list_all(skip, limit)

            async def get(self, item_id: int) -> {P}:
                item = await self.repository.get(item_id)
                if item is None:
                    raise NotFoundError(f"{P} {{item_id}} not found")
                return item

            async def create(self, data: {P}Create) -> {P}:
                item = {P}(name=data.name, children=[])
                await self.repository.add(item)
                return item

            async def update(self, item_id: int, data: {P}Update) -> {P}:
                item = await self.get(item_id)
                for key, value in data.model_dump(exclude_unset=True).items():
                    setattr(item, key, value)
                return item

            async def delete(self, item_id: int) -> None:
                await self.repository.delete(await self.get(item_id))

            async def children(self, item_id: int, skip: int, limit: int) -> list[{C}]:
                await self.get(item_id)
                return await self.repository.children(item_id, skip, limit)

            async def child(self, child_id: int) -> {C}:
                child = await self.repository.child(child_id)
                if child is None:
                    raise NotFoundError(f"{C} {{child_id}} not found")
                return child

            async def add_child(self, item_id: int, data: {C}Create) -> {C}:
                await self.get(item_id)
                child = {C}(title=data.title, parent_id=item_id)
                await self.repository.add(child)
                return child
    """,
    "dependencies.py": """
        from fastapi import Depends
        from sqlalchemy.ext.asyncio import AsyncSession

        from app.database import get_db
        from app.{d}.repository import {P}Repository
        from app.{d}.service import {P}Service


        async def get_service(session: AsyncSession = Depends(get_db)) -> {P}Service:
            return {P}Service({P}Repository(session))
    """,
    "router.py": """
        from typing import Annotated

        from fastapi import APIRouter, Depends, Query, status

        from app.security import require_api_key
        from app.{d}.dependencies import get_service
        from app.{d}.schemas import {C}Create, {C}Out, {P}Create, {P}Out, {P}Update
        from app.{d}.service import {P}Service

        router = APIRouter(prefix="/api/v1/{d}", tags=["{d}"])
        Service = Annotated[{P}Service, Depends(get_service)]
        Skip = Annotated[int, Query(ge=0)]
        Limit = Annotated[int, Query(ge=1, le=100)]


        @router.get("", response_model=list[{P}Out])
        async def list_items(service: Service, skip: Skip = 0, limit: Limit = 20) -> list[{P}Out]:
            return [{P}Out.model_validate(i) for i in await service.list_all(skip, limit)]


        @router.get("/{{item_id}}", response_model={P}Out)
        async def get_item(item_id: int, service: Service) -> {P}Out:
            return {P}Out.model_validate(await service.get(item_id))


        @router.post("", response_model={P}Out, status_code=status.HTTP_201_CREATED, dependencies=[Depends(require_api_key)])
        async def create_item(data: {P}Create, service: Service) -> {P}Out:
            return {P}Out.model_validate(await service.create(data))


        @router.patch("/{{item_id}}", response_model={P}Out, dependencies=[Depends(require_api_key)])
        async def update_item(item_id: int, data: {P}Update, service: Service) -> {P}Out:
            return {P}Out.model_validate(await service.update(item_id, data))


        @router.put("/{{item_id}}", response_model={P}Out, dependencies=[Depends(require_api_key)])
        async def replace_item(item_id: int, data: {P}Create, service: Service) -> {P}Out:
            return {P}Out.model_validate(await service.update(item_id, {P}Update(name=data.name)))


        @router.delete("/{{item_id}}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(require_api_key)])
        async def delete_item(item_id: int, service: Service) -> None:
            await service.delete(item_id)


        @router.post("/{{item_id}}/activate", response_model={P}Out, dependencies=[Depends(require_api_key)])
        async def activate_item(item_id: int, service: Service) -> {P}Out:
            return {P}Out.model_validate(await service.update(item_id, {P}Update(is_active=True)))


        @router.get("/{{item_id}}/children", response_model=list[{C}Out])
        async def list_children(item_id: int, service: Service, skip: Skip = 0, limit: Limit = 20) -> list[{C}Out]:
            return [{C}Out.model_validate(c) for c in await service.children(item_id, skip, limit)]


        @router.get("/children/{{child_id}}", response_model={C}Out)
        async def get_child(child_id: int, service: Service) -> {C}Out:
            return {C}Out.model_validate(await service.child(child_id))


        @router.post("/{{item_id}}/children", response_model={C}Out, status_code=status.HTTP_201_CREATED, dependencies=[Depends(require_api_key)])
        async def create_child(item_id: int, data: {C}Create, service: Service) -> {C}Out:
            return {C}Out.model_validate(await service.add_child(item_id, data))
    """,
}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


PYPROJECT = """
[project]
name = "benchmark-app"
version = "0.1.0"
requires-python = ">=3.10"

[tool.pytest.ini_options]
fastapi_rules_auth_headers = ["X-API-Key: benchmark-key"]
"""


def generate(out: Path, routes: int) -> Path:
    """Write the app under ``out/app`` and return ``out``; ``app.main:app`` is the app."""
    if routes % ROUTES_PER_DOMAIN:
        raise ValueError(f"routes must be a multiple of {ROUTES_PER_DOMAIN}")
    domains = [f"d{index:04d}" for index in range(routes // ROUTES_PER_DOMAIN)]
    package = out / "app"
    for name, text in CORE.items():
        _write(package / name, text)
    for domain in domains:
        names = {"d": domain, "P": f"Parent{domain.upper()}", "C": f"Child{domain.upper()}"}
        for name, text in DOMAIN.items():
            _write(package / domain / name, textwrap.dedent(text).format(**names))
    imports = "\n    ".join(f"from app.{d}.router import router as {d}_router" for d in domains)
    includes = "\n        ".join(f"app.include_router({d}_router)" for d in domains)
    _write(package / "main.py", MAIN.format(imports=imports, includes=includes))
    # How a user configures the plugin for this app: the writes need the API key.
    _write(out / "pyproject.toml", PYPROJECT)
    return out


if __name__ == "__main__":
    generate(Path(sys.argv[1]), int(sys.argv[2]))
