"""A synchronous engine, as mealie and the full-stack template have (psycopg on PostgreSQL).

``DATABASE_URL`` names the async form (``sqlite+aiosqlite``, ``postgresql+asyncpg``); the app turns
it into the sync one (``sqlite``, ``postgresql+psycopg``), and the probes follow that.
"""

import os
from collections.abc import Iterator
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

URL = os.environ["DATABASE_URL"].replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
engine = create_engine(URL, pool_pre_ping=True)
SessionLocal = sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Recipe(Base):
    __tablename__ = "recipes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


class RecipeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


def get_session() -> Iterator[Session]:
    with SessionLocal() as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    Base.metadata.create_all(engine)
    try:
        yield
    finally:
        engine.dispose()


app = FastAPI(lifespan=lifespan)
DB = Annotated[Session, Depends(get_session)]


@app.get("/api/v1/recipes", tags=["recipes"])
def list_recipes(db: DB, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[RecipeOut]:
    return [RecipeOut.model_validate(row) for row in db.scalars(select(Recipe).order_by(Recipe.id).limit(limit))]


@app.get("/api/v1/recipes/{recipe_id}", tags=["recipes"])
def get_recipe(recipe_id: int, db: DB) -> RecipeOut:
    recipe = db.get(Recipe, recipe_id)
    if recipe is None:
        raise HTTPException(status_code=404, detail="recipe not found")
    return RecipeOut.model_validate(recipe)
