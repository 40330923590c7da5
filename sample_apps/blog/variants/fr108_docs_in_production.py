"""FR108 violation: a custom Swagger UI page that stays on in production.

The factory turns FastAPI's own docs off in production, but this page (added for a custom CDN)
serves /docs whatever the environment.
"""

from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from src.main import create_application

app = create_application()


@app.get("/docs", include_in_schema=False)
async def custom_swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Blog API docs")
