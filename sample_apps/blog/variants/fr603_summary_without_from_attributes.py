"""FR603 violation: a new response schema mirrors the Post ORM class without from_attributes.

The endpoint works only because its author passes `from_attributes=True` at the call site;
the next `PostSummary.model_validate(post)` elsewhere fails with a validation error.
"""

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.shared.schemas import ErrorResponse


class PostSummary(BaseModel):
    id: int
    title: str
    is_published: bool
    created_at: datetime


router = APIRouter()


@router.get("/{post_id}/summary")
async def get_post_summary(post_id: int, service: PostServiceDep) -> PostSummary:
    """The post without its content, for link previews."""
    post = await service.get_post(post_id)
    return PostSummary.model_validate(post, from_attributes=True)


app = create_application()
app.include_router(
    router, prefix="/api/v1/posts", tags=["Posts"], responses={"default": {"model": ErrorResponse}}
)
