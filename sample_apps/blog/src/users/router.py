from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from src.auth.dependencies import CurrentUser, get_current_superuser
from src.shared.schemas import SortOrder
from src.users.dependencies import UserServiceDep
from src.users.schemas import UserPublic, UserReplace, UserResponse, UserSortBy, UserUpdate

router = APIRouter()


@router.get("")
async def list_users(
    service: UserServiceDep,
    skip: Annotated[int, Query(ge=0, description="Number of users to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Max users to return")] = 20,
    search: Annotated[
        str | None, Query(min_length=2, max_length=100, description="Search by username")
    ] = None,
    sort_by: Annotated[UserSortBy, Query(description="Sort field")] = UserSortBy.CREATED_AT,
    order: Annotated[SortOrder, Query(description="Sort order")] = SortOrder.DESC,
) -> list[UserPublic]:
    users = await service.list_users(skip=skip, limit=limit, search=search, sort_by=sort_by, order=order)
    return [UserPublic.model_validate(user) for user in users]


@router.get("/me")
async def read_current_user(current_user: CurrentUser) -> UserResponse:
    return UserResponse.model_validate(current_user)


@router.get("/{user_id}")
async def get_user(user_id: int, service: UserServiceDep) -> UserPublic:
    return UserPublic.model_validate(await service.get_user(user_id))


@router.put("/{user_id}")
async def replace_user(
    user_id: int, data: UserReplace, current_user: CurrentUser, service: UserServiceDep
) -> UserResponse:
    """Replace the whole profile (self or superuser)."""
    user = await service.replace_user(user_id, data, actor=current_user)
    return UserResponse.model_validate(user)


@router.patch("/{user_id}")
async def update_user(
    user_id: int, data: UserUpdate, current_user: CurrentUser, service: UserServiceDep
) -> UserResponse:
    """Change only the fields sent (self or superuser)."""
    user = await service.update_user(user_id, data, actor=current_user)
    return UserResponse.model_validate(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(get_current_superuser)],
)
async def delete_user(user_id: int, service: UserServiceDep) -> None:
    """Delete a user and their posts (superuser only)."""
    await service.delete_user(user_id)


@router.post(
    "/{user_id}/activate",
    status_code=status.HTTP_200_OK,
    dependencies=[Depends(get_current_superuser)],
)
async def activate_user(user_id: int, service: UserServiceDep) -> UserResponse:
    """Action endpoint: POST, answers 200 (superuser only)."""
    return UserResponse.model_validate(await service.activate_user(user_id))
