"""FR202 violation: a summary endpoint that returns a hand-built dict (`-> dict[str, Any]`)."""

from typing import Any

from fastapi import APIRouter

from src.main import create_application
from src.posts.dependencies import PostServiceDep

router = APIRouter()


@router.get("/{post_id}/summary")
async def get_post_summary(post_id: int, service: PostServiceDep) -> dict[str, Any]:
    post = await service.get_post(post_id)
    return {"id": post.id, "title": post.title, "author": post.author.username}


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
