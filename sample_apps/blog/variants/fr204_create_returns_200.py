"""FR204 violation: a second create route that forgot `status_code=201` (answers FastAPI's 200).

`/drafts` is a collection the app serves (GET lists it), so the POST on it is a create.
"""

from typing import Annotated

from fastapi import APIRouter, Query

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostCreate, PostResponse

router = APIRouter()


@router.get("/drafts")
async def list_drafts(
    service: PostServiceDep,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[PostResponse]:
    posts = await service.list_posts(skip=skip, limit=limit)
    return [PostResponse.model_validate(post) for post in posts if not post.is_published]


@router.post("/drafts")
async def create_draft(data: PostCreate, current_user: CurrentUser, service: PostServiceDep) -> PostResponse:
    draft = data.model_copy(update={"is_published": False})
    return PostResponse.model_validate(await service.create_post(draft, author=current_user))


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
