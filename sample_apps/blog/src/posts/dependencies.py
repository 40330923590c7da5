"""Dependency chain: get_post_service -> get_post_repository -> get_db."""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from src.database import get_db
from src.posts.repository import PostRepository
from src.posts.service import PostService


async def get_post_repository(
    session: Annotated[AsyncSession, Depends(get_db)],
) -> PostRepository:
    return PostRepository(session)


async def get_post_service(
    repository: Annotated[PostRepository, Depends(get_post_repository)],
) -> PostService:
    return PostService(repository)


PostServiceDep = Annotated[PostService, Depends(get_post_service)]
