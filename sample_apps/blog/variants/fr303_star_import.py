"""FR303 violation: a router that star-imports the posts schemas."""

from fastapi import APIRouter

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import *  # noqa: F403

router = APIRouter()


@router.get("/{post_id}/preview")
async def preview_post(post_id: int, service: PostServiceDep) -> PostResponse:  # noqa: F405
    return PostResponse.model_validate(await service.get_post(post_id))  # noqa: F405


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
