"""FR210 violation: an import route takes a free-form `dict` body and indexes it unguarded.

`data["title"]` raises KeyError on a body without that key: FastAPI accepts any JSON object for a
`dict` body, so `{}` becomes a 500 instead of a 422.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, status

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostCreate, PostResponse

router = APIRouter()

EXAMPLE = {"title": "Imported post", "content": "Written elsewhere, imported here."}


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_post(
    data: Annotated[dict[str, Any], Body(examples=[EXAMPLE])],
    current_user: CurrentUser,
    service: PostServiceDep,
) -> PostResponse:
    post_data = PostCreate(title=data["title"], content=data["content"])  # {}: KeyError
    return PostResponse.model_validate(await service.create_post(post_data, author=current_user))


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
