"""FR307 violation: a service that answers "404" itself with FastAPI's HTTPException."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostResponse
from src.posts.service import PostService

router = APIRouter()


class PublishedPostService(PostService):
    """Only published posts are visible through this service."""

    async def get_published_post(self, post_id: int) -> PostResponse:
        post = await self.get_post(post_id)
        if not post.is_published:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Post not found")
        return PostResponse.model_validate(post)


async def get_published_post_service(posts: PostServiceDep) -> PublishedPostService:
    return PublishedPostService(posts.repository)


@router.get("/{post_id}")
async def get_published_post(
    post_id: int, service: Annotated[PublishedPostService, Depends(get_published_post_service)]
) -> PostResponse:
    return await service.get_published_post(post_id)


app = create_application()
app.include_router(router, prefix="/api/v1/published", tags=["Posts"])
