"""FR207 violation: a feed whose page size has a lower bound but no upper bound (`?limit=1000000`)."""

from fastapi import APIRouter, Query

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostResponse

router = APIRouter()


@router.get("")
async def get_feed(
    service: PostServiceDep,
    skip: int = Query(0, ge=0),
    limit: int = Query(20, ge=1),
) -> list[PostResponse]:
    posts = await service.list_posts(skip=skip, limit=limit)
    return [PostResponse.model_validate(post) for post in posts]


app = create_application()
app.include_router(router, prefix="/api/v1/feed", tags=["Posts"])
