"""FR701 violation: CORS opened to every origin while credentials stay allowed.

A quick fix for a new frontend domain: allow_origins=["*"], everything else as before. Starlette
then answers every Origin with itself and Allow-Credentials: any site can read users' data.
"""

from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from src.main import create_application

app = create_application()

# Starlette builds the middleware stack on the first request: the entry can still be replaced.
cors = Middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_credentials=True,
    allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    allow_headers=["Authorization", "Content-Type"],
    max_age=600,
)
app.user_middleware = [cors if m.cls is CORSMiddleware else m for m in app.user_middleware]
