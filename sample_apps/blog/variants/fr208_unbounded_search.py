"""FR208 violation: a search endpoint whose free-text `q` has no max_length."""

from fastapi import APIRouter, Query

from src.main import create_application
from src.shared.schemas import SortOrder
from src.users.dependencies import UserServiceDep
from src.users.schemas import UserPublic, UserSortBy

router = APIRouter()


@router.get("/users")
async def search_users(
    service: UserServiceDep,
    q: str | None = None,
    skip: int = Query(0, ge=0),
    limit: int = Query(20, ge=1, le=100),
) -> list[UserPublic]:
    users = await service.list_users(
        skip=skip, limit=limit, search=q, sort_by=UserSortBy.USERNAME, order=SortOrder.ASC
    )
    return [UserPublic.model_validate(user) for user in users]


app = create_application()
app.include_router(router, prefix="/api/v1/search", tags=["Search"])
