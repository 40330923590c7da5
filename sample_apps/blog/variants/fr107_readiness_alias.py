"""FR107 violation: the readiness check lives at `/health/readiness`, not the rulebook's `/health/ready`.

The same check as the conforming app's, served under another name: a probe configured for the
rulebook's path finds no readiness route (``fastapi_rules_readiness_path`` accepts the alias).
"""

from fastapi.routing import APIRoute

from src.main import create_application

app = create_application()
_ready = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.path == "/health/ready")
app.router.routes.remove(_ready)
app.add_api_route("/health/readiness", _ready.endpoint, methods=["GET"], tags=["Health"])
