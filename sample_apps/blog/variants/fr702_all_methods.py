"""FR702 violation: CORS allows every method instead of the API's list.

allow_methods=["*"] replaced the explicit list "to stop fighting preflight errors"; origins are
still the configured ones.
"""

from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from src.config import get_settings
from src.main import create_application

app = create_application()

# Starlette builds the middleware stack on the first request: the entry can still be replaced.
cors = Middleware(
    CORSMiddleware,
    allow_origins=get_settings().BACKEND_CORS_ORIGINS,
    allow_credentials=True,
    allow_methods=["*"],
    allow_headers=["Authorization", "Content-Type"],
    max_age=600,
)
app.user_middleware = [cors if m.cls is CORSMiddleware else m for m in app.user_middleware]
