"""FR302 violation: a "quick" lookup endpoint that skips the service and queries the repository."""

from typing import Annotated

from fastapi import APIRouter, Depends

from src.main import create_application
from src.posts.dependencies import get_post_repository
from src.posts.exceptions import PostNotFoundError
from src.posts.repository import PostRepository
from src.posts.schemas import PostResponse

router = APIRouter()


@router.get("/{post_id}/lookup")
async def lookup_post(
    post_id: int, repository: Annotated[PostRepository, Depends(get_post_repository)]
) -> PostResponse:
    post = await repository.get_by_id(post_id)
    if post is None:
        raise PostNotFoundError(f"Post {post_id} not found", details={"post_id": post_id})
    return PostResponse.model_validate(post)


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
