"""FR602 violation: a summary endpoint built with the Pydantic v1 `.dict()` on a response model."""

from fastapi import APIRouter
from pydantic import BaseModel

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostResponse

router = APIRouter()


class PostSummary(BaseModel):
    id: int
    title: str
    words: int


@router.get("/{post_id}/summary")
async def get_post_summary(post_id: int, service: PostServiceDep) -> PostSummary:
    post = PostResponse.model_validate(await service.get_post(post_id))
    return PostSummary(**post.dict(include={"id", "title"}), words=len(post.content.split()))


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
