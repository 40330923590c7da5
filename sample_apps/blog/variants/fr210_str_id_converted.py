"""FR210 violation: a post preview takes its id as a plain `str` and converts it unguarded.

`int(post_id)` raises ValueError on an id that is not a number: FastAPI accepts any string for a
`str` parameter, so the client's odd id becomes a 500 instead of a 404 or 422.
"""

from fastapi import APIRouter

from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostResponse

router = APIRouter()


@router.get("/{post_id}/preview")
async def preview_post(post_id: str, service: PostServiceDep) -> PostResponse:
    return PostResponse.model_validate(await service.get_post(int(post_id)))  # "abc": ValueError


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
