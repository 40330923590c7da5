"""FR403 violation: a dashboard service runs two repository queries at once with asyncio.gather.

Both go through `self.repository`, whose methods share one AsyncSession: concurrent use of one
session. The route is for superusers only (nobody the probes can log in as reaches it).
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from src.auth.dependencies import get_current_superuser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostResponse
from src.posts.service import PostService

router = APIRouter()


class Dashboard(BaseModel):
    featured: PostResponse | None
    latest: list[PostResponse]


class DashboardService(PostService):
    async def get_dashboard(self, featured_id: int) -> Dashboard:
        featured, latest = await asyncio.gather(
            self.repository.get_by_id(featured_id),
            self.repository.get_all(skip=0, limit=5),
        )
        return Dashboard(
            featured=PostResponse.model_validate(featured) if featured else None,
            latest=[PostResponse.model_validate(post) for post in latest],
        )


async def get_dashboard_service(posts: PostServiceDep) -> DashboardService:
    return DashboardService(posts.repository)


@router.get("", dependencies=[Depends(get_current_superuser)])
async def get_dashboard(
    service: Annotated[DashboardService, Depends(get_dashboard_service)],
    featured: int = Query(1, ge=1, description="Id of the featured post"),
) -> Dashboard:
    return await service.get_dashboard(featured)


app = create_application()
app.include_router(router, prefix="/api/v1/dashboard", tags=["Dashboard"])
