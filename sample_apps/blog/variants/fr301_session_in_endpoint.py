"""FR301 violation: an endpoint takes the database session and wires the service by hand."""

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from src.database import get_db
from src.main import create_application
from src.posts.dependencies import get_post_repository, get_post_service
from src.users.schemas import UserPublic

router = APIRouter()


@router.get("/{post_id}/author")
async def get_post_author(
    post_id: int, db: Annotated[AsyncSession, Depends(get_db)]
) -> UserPublic:
    service = await get_post_service(await get_post_repository(db))
    post = await service.get_post(post_id)
    return UserPublic.model_validate(post.author)


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
