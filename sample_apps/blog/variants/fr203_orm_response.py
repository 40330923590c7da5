"""FR203 violation: the endpoint returns the ORM object itself (`response_model=None`, `-> Post`)."""

from fastapi import APIRouter

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.models import Post

router = APIRouter()


@router.get("/{post_id}/raw", response_model=None)
async def get_raw_post(post_id: int, service: PostServiceDep) -> Post:
    return await service.get_post(post_id)


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
