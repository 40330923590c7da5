"""The security rules (FR7xx): the heuristics that recognise authentication and token routes, what
counts as a sign-in route, and FR703's secrets in code (never shown whole in a report).

The conforming blog, the variants and the edge cases of FR701, FR702 and FR706 are judged in one run
with the schema rules (test_rules_schemas_security.py); FR703's variant with the other source rules
(test_rules_source.py); FR704 and FR705 at runtime in test_probes.py and test_probes_variants.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from pytest_fastapi_rules.facts import MiddlewareFacts
from pytest_fastapi_rules.rules.common import is_token_path
from pytest_fastapi_rules.rules.security import (
    _regex_matches_unrelated,
    auth_middleware,
    looks_like_auth,
    mask_secret,
)
from tests.conftest import line_of, only
from tests.source_projects import where, write

# -- the heuristics, directly ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_current_user", True),
        ("get_current_active_user", True),
        ("current_user", True),
        ("get_current_superuser", True),
        ("require_admin", True),
        ("login_required", True),
        ("verify_token", True),
        ("get_token_header", True),
        ("verify_key", True),
        ("RoleChecker", True),
        ("PermissionChecker", True),
        ("JWTBearer", True),
        ("authenticate", True),
        ("is_authorized", True),
        ("get_author", False),
        ("get_author_service", False),
        ("get_auth_service", False),
        ("get_user_service", False),
        ("get_db", False),
        ("get_user", False),
        ("pagination", False),
    ],
)
def test_auth_names(name: str, expected: bool) -> None:
    assert looks_like_auth(name) is expected


@pytest.mark.parametrize(
    ("path", "token_url", "expected"),
    [
        ("/api/v1/auth/token", "/api/v1/auth/token", True),
        ("/api/v1/auth/token/", "/api/v1/auth/token", True),
        ("/token", "token", True),
        ("/api/v1/login/access-token", "api/v1/login/access-token", True),
        ("/api/v1/auth/token", "https://idp.example/api/v1/auth/token", True),
        ("/api/v1/auth/token", "/prefix/api/v1/auth/token", True),  # behind a root_path
        ("/api/v1/posts", "/api/v1/auth/token", False),
        ("/api/v1/auth/token-info", "/api/v1/auth/token", False),
        ("/token", "token?scope=read", True),
        ("/api/v1/tokens", "api/v1/token", False),
    ],
)
def test_token_url_comparison(path: str, token_url: str, expected: bool) -> None:
    assert is_token_path(path, token_url) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (".*", "https://evil.example"),
        ("https?://.*", "https://evil.example"),
        (r"http://.*\.test", "http://attacker.test"),
        (r"https://.*\.mycompany\.com", None),
        (r"https://(www\.)?example\.com", None),
        (r"http://localhost:\d+", None),
        ("(", None),  # not a regex: Starlette would refuse it anyway
    ],
)
def test_origin_regex(pattern: str, expected: str | None) -> None:
    assert _regex_matches_unrelated(pattern) == expected


class JWTAuthMiddleware:
    """A pure ASGI middleware that authenticates (by its name)."""


class AuthorTrackingMiddleware:
    """Tracks post authors: `author` is not `auth`."""


async def auth_dispatch(request: Any, call_next: Any) -> Any:
    return await call_next(request)


async def timing_dispatch(request: Any, call_next: Any) -> Any:
    return await call_next(request)


@pytest.mark.parametrize(
    ("cls", "options", "expected"),
    [
        (JWTAuthMiddleware, {}, "JWTAuthMiddleware"),
        (BaseHTTPMiddleware, {"dispatch": auth_dispatch}, "auth_dispatch"),
        (BaseHTTPMiddleware, {"dispatch": timing_dispatch}, None),
        (AuthorTrackingMiddleware, {}, None),
        (CORSMiddleware, {"allow_origins": ["*"]}, None),
        (GZipMiddleware, {}, None),
    ],
)
def test_auth_middleware_names(cls: type, options: dict[str, Any], expected: str | None) -> None:
    facts = SimpleNamespace(middleware=[MiddlewareFacts(cls, options)])
    assert auth_middleware(facts) == expected  # type: ignore[arg-type]


# -- FR706: what a sign-in route is ----------------------------------------------------------------

SIGN_IN_APP = """
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


class Credentials(BaseModel):
    username: str


class Done(BaseModel):
    ok: bool


router = APIRouter(tags=["auth"])


@router.post("/auth/signup")
async def signup(data: Credentials) -> Done:
    return Done(ok=True)


@router.post("/auth/sign-in")
async def sign_in(data: Credentials) -> Done:
    return Done(ok=True)


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int, token: Annotated[str, Depends(oauth2)]) -> None:
    return None


app = FastAPI()
app.include_router(router, prefix="/api/v1")
"""


def test_sign_in_spelling_is_public_only_when_listed(pytester: pytest.Pytester, run_rules: Any) -> None:
    """RULES.md makes register, signup and login public: `sign-in` is another spelling a team may
    choose, judged by default with the setting named, and public once listed."""
    pytester.makepyfile(signinapp=SIGN_IN_APP)
    run = run_rules("signinapp:app", "--fastapi-rules-select=FR706")
    assert run.outcomes("FR706") == {
        "POST /api/v1/auth/signup": "passed",
        "POST /api/v1/auth/sign-in": "warning",
        "DELETE /api/v1/items/{item_id}": "passed",
    }, run.output
    message = only(run.findings("FR706"))["message"]
    assert message.startswith("endpoint `sign_in` changes data without a security dependency"), message
    assert message.endswith(
        "(a sign-in route, not spelled register, signup or login: RULES.md makes only the token "
        "endpoint, register, signup and login public by default; if `POST /api/v1/auth/sign-in` is "
        "public on purpose, list it in fastapi_rules_public_routes)"
    ), message
    pytester.makeini("[pytest]\nfastapi_rules_public_routes =\n    POST /api/v1/auth/sign-in\n")
    listed = run_rules("signinapp:app", "--fastapi-rules-select=FR706")
    assert listed.outcomes("FR706")["POST /api/v1/auth/sign-in"] == "passed", listed.output


# -- FR703: secrets in code, and what is not one ---------------------------------------------------


def test_hardcoded_secret_never_reaches_the_report(blog: Path, run_rules: Any) -> None:
    run = run_rules("variants.fr703_hardcoded_secret:app", "--fastapi-rules-select=FR703")
    secret = re.search(
        r'SHARE_LINK_SECRET = "(\w+)"', (blog / "variants/fr703_hardcoded_secret.py").read_text()
    )
    assert secret is not None
    assert run.outcomes("FR703") == {"app": "failed"}
    assert secret.group(1) not in run.output
    assert secret.group(1) not in str(run.report)


SECRETS_PROJECT = {
    ".env.example": "SECRET_KEY=changeme\nDATABASE_PASSWORD=changeme\n",
    "secretapp/__init__.py": "",
    "secretapp/config.py": """
        import os
        from enum import Enum

        from pydantic import BaseModel, SecretStr
        from pydantic_settings import BaseSettings

        SECRET_KEY = "hard-coded-key-123"
        API_TOKEN = os.environ["API_TOKEN"]
        SMTP_PASSWORD = os.getenv("SMTP_PASSWORD", "")
        ADMIN_PASSWORD = 'hunter2'
        ACCESS_TOKEN = "access_token"  # a form field name, not a secret


        class ErrorCode(str, Enum):
            INVALID_TOKEN = "invalid_token"
            WRONG_PASSWORD = "wrong_password"


        class Database(BaseModel):  # a nested section of the settings, as minimal's are
            password: SecretStr = SecretStr("passwd-change-me")
            username: SecretStr = SecretStr("")


        class Settings(BaseSettings):
            JWT_SECRET: str = "dev-only-secret"
            DATABASE_PASSWORD: str = ""
            ACCESS_TOKEN_EXPIRE_MINUTES: int = 30
            STRIPE_API_KEY: str | None = None
            database: Database = Database()
    """,
    "secretapp/tests/__init__.py": "",
    "secretapp/tests/test_config.py": """
        SECRET_KEY = "test-secret-key"
    """,
    "secretapp/main.py": """
        import jwt
        from fastapi import FastAPI

        from secretapp.config import Settings

        app = FastAPI()


        @app.get("/api/v1/token")
        async def token() -> dict:
            signed = jwt.encode({"sub": "1"}, "literal-signing-key", algorithm="HS256")
            checked = jwt.decode(signed, key=Settings().JWT_SECRET, algorithms=["HS256"])
            return {"token": signed, "sub": checked["sub"]}


        def verify(token: str) -> dict:
            return jwt.decode(token, key="literal-verify-key", algorithms=["HS256"])
    """,
}


def test_secrets_in_code_and_their_look_alikes(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "from-the-environment")
    write(pytester.path, SECRETS_PROJECT)
    run = run_rules("secretapp.main:app", "--fastapi-rules-select=FR703")
    config = pytester.path / "secretapp/config.py"
    main = pytester.path / "secretapp/main.py"
    found = sorted((where(f), f["message"]) for f in run.findings("FR703"))
    assert found == sorted(
        [
            (
                ("secretapp/config.py", line_of(config, r'^SECRET_KEY = "'), 1),
                '`SECRET_KEY` is assigned a literal secret (18 characters): `SECRET_KEY = "har***************"`',
            ),
            (
                # 7 characters: a quarter of it is 1, so one character is shown; the quotes are kept.
                ("secretapp/config.py", line_of(config, r"^ADMIN_PASSWORD = "), 1),
                "`ADMIN_PASSWORD` is assigned a literal secret (7 characters): `ADMIN_PASSWORD = 'h******'`",
            ),
            (
                ("secretapp/config.py", line_of(config, r"password: SecretStr"), 5),
                "`password` is assigned a literal secret (16 characters): "
                '`password: SecretStr = SecretStr("pas*************")`',
            ),
            (
                ("secretapp/config.py", line_of(config, r"JWT_SECRET: str"), 5),
                "settings field `Settings.JWT_SECRET` has a non-empty default secret (15 characters): "
                '`JWT_SECRET: str = "dev************"`',
            ),
            (
                ("secretapp/main.py", line_of(main, r"jwt.encode"), 14),
                "`jwt.encode` is called with a literal key (19 characters): "
                '`jwt.encode({"sub": "1"}, "lit****************", algorithm="HS256")`',
            ),
            (
                ("secretapp/main.py", line_of(main, r"jwt.decode\(token"), 12),
                "`jwt.decode` is called with a literal key (18 characters): "
                '`jwt.decode(token, key="lit***************", algorithms=["HS256"])`',
            ),
        ]
    ), run.output
    for secret in (
        "hard-coded-key-123",
        "passwd-change-me",
        "hunter2",
        "dev-only-secret",
        "literal-signing-key",
        "literal-verify-key",
    ):
        assert secret not in run.output


def test_masked_secret_shows_at_most_three_characters_and_a_quarter() -> None:
    assert mask_secret("abc") == "***"  # under 4 characters: none shown
    assert mask_secret("abcd") == "a***"
    assert mask_secret("abcdefgh") == "ab******"
    assert mask_secret("abcdefghijkl") == "abc*********"
    assert mask_secret("x" * 64) == "xxx" + "*" * 61


SIBLING_CORE_PROJECT = {
    "app/__init__.py": "",
    "app/main.py": """
        from fastapi import FastAPI

        from core.config import settings

        app = FastAPI(title=settings.PROJECT_NAME)


        @app.get("/api/v1/ping", tags=["ping"])
        async def ping() -> dict:
            return {}
    """,
    "core/__init__.py": "",
    "core/config.py": """
        SECRET_KEY = "sibling-package-secret"


        class Settings:
            PROJECT_NAME = "svc"


        settings = Settings()
    """,
    "core/unused.py": """
        API_TOKEN = "never-imported-token"
    """,
}


def test_a_sibling_package_the_app_imports_is_its_code_fr703(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """`core/config.py` beside `app/`, imported as `core.config`: no endpoint lives there, yet it is
    the app's code and its literal secret is reported. A sibling module nothing imports is not."""
    write(pytester.path, SIBLING_CORE_PROJECT)
    run = run_rules("app.main:app", "--fastapi-rules-select=FR703")
    config = pytester.path / "core/config.py"
    finding = only(run.findings("FR703"))
    assert (where(finding), finding["message"]) == (
        ("core/config.py", line_of(config, r"^SECRET_KEY"), 1),
        '`SECRET_KEY` is assigned a literal secret (22 characters): `SECRET_KEY = "sib*******************"`',
    )


def test_fr703_settings_defaults_read_from_the_environment_are_not_literals(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, run_rules: Any
) -> None:
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("API_TOKEN", "from-the-environment-too")
    pytester.makepyfile(
        envsettings="""
import os

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings
from starlette.config import Config

config = Config()


class Settings(BaseSettings):
    SECRET_KEY: str = config("SECRET_KEY")
    API_TOKEN: str = os.getenv("API_TOKEN", "")
    JWT_SECRET: str = Field("literal-jwt-secret")


settings = Settings()
app = FastAPI()
"""
    )
    run = run_rules("envsettings:app", "--fastapi-rules-select=FR703")
    messages = [f["message"] for f in run.findings("FR703")]
    assert len(messages) == 1, messages
    assert "settings field `Settings.JWT_SECRET` has a non-empty default secret" in messages[0]
