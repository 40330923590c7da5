"""The stack rules (FR8xx): dependencies and their versions, the Dockerfile, settings through
pydantic-settings, production logging, dependency overrides left behind by the user's tests.

FR801 and FR804 on mutated copies of the blog (pyproject.toml, Dockerfile) and their readers
directly; FR805 on its variant and on small apps of the settings shapes real projects have; FR802
and FR806 at runtime (a production-mode child, the probe run). FR803's variant is in
test_probes_variants.py; FR108, FR503 and FR802 sharing one child in test_probes.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_fastapi_rules.dockerfile import Heredoc, heredocs_of, parse_dockerfile
from pytest_fastapi_rules.rules.stack import (
    _older,
    declared_dependencies,
    dockerfile_problems,
    dockerfiles,
)
from tests.conftest import BLOG, OLD_FASTAPI, RunRules, assert_located, installed, line_of, only, only_failure
from tests.source_projects import SELECT_OWN, where, write

# -- FR801, FR804: pyproject and Dockerfile, on mutated copies of the blog -------------------------


def test_requests_dependency_fails_fr801(blog: Path, run_rules: Any) -> None:
    pyproject = blog / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('    "httpx>=0.28",\n', '    "httpx>=0.28",\n    "requests>=2.32",\n')
    )
    # Only the project rules read pyproject.toml: they are the ones that can change.
    run = run_rules("src.main:app", SELECT_OWN + ",FR801")
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR801", "app")], (failing, run.output)
    finding = only([f for f in run.findings("FR801") if not (OLD_FASTAPI and "`fastapi`" in f["message"])])
    assert finding["message"] == "`requests` is a runtime dependency of the project: `requests>=2.32`"
    assert where(finding) == ("pyproject.toml", line_of(pyproject, "requests>=2.32"), 6)


BAD_DOCKERFILE = """
    FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11

    COPY ./src /app/src
    RUN pip install --no-cache-dir -r /app/requirements.txt
    CMD ["/start.sh"]
"""


def test_old_style_dockerfile_fails_fr804(blog: Path, run_rules: Any) -> None:
    write(blog, {"Dockerfile": BAD_DOCKERFILE})
    # Only the project rules read the Dockerfile: they are the ones that can change.
    run = run_rules("src.main:app", SELECT_OWN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR804", "app")], (failing, run.output)
    findings = run.findings("FR804")
    assert [(f["message"], where(f)) for f in findings] == [
        (
            "`Dockerfile` is based on the deprecated image `tiangolo/uvicorn-gunicorn-fastapi:python3.11`: "
            "`FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
        (
            "`Dockerfile` is a single-stage build (no separate builder stage): "
            "`FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
        (
            "`Dockerfile` runs as root (no USER instruction in the final stage): "
            "`FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
        (
            "`Dockerfile` has no HEALTHCHECK: `FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
    ]
    assert "FR804" in run.output


#: A conforming build whose USER and HEALTHCHECK lines sit inside heredoc bodies: file contents or a
#: script, never instructions (BuildKit's reading). ``{body}`` is the heredoc part of each variant.
HEREDOC_DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM python:3.12-slim AS builder
RUN python -m venv /opt/venv

FROM python:3.12-slim
COPY --from=builder /opt/venv /opt/venv
COPY ./src ./src
{body}
CMD ["fastapi", "run", "src/main.py"]
"""


HEREDOC_BODIES = {
    "copy": 'COPY <<EOF /app/notes.txt\nUSER appuser\nHEALTHCHECK CMD python -c "print(1)"\nEOF',
    "run": 'RUN <<EOF\nuseradd appuser\nUSER appuser\nHEALTHCHECK CMD python -c "print(1)"\nEOF',
    "tabs-stripped": 'RUN <<-EOF\n\tUSER appuser\n\tHEALTHCHECK CMD python -c "print(1)"\n\tEOF',
    "quoted": 'COPY <<"EOF" /app/notes.txt\nUSER appuser\nHEALTHCHECK CMD true\nEOF',
    "single-quoted-continued": "RUN cat <<'EOF' > /app/x \\\n    && echo done\nUSER appuser\n"
    "HEALTHCHECK CMD true\nEOF",
    "two-on-one-line": "COPY <<one <<two /app/\nUSER appuser\none\nHEALTHCHECK CMD true\ntwo",
}


@pytest.mark.parametrize("body", HEREDOC_BODIES.values(), ids=HEREDOC_BODIES.keys())
def test_user_and_healthcheck_inside_a_heredoc_fail_fr804(blog: Path, run_rules: Any, body: str) -> None:
    (blog / "Dockerfile").write_text(HEREDOC_DOCKERFILE.format(body=body))
    run = run_rules("src.main:app", SELECT_OWN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR804", "app")], (failing, run.output)
    assert [(f["message"], where(f)) for f in run.findings("FR804")] == [
        (
            "`Dockerfile` runs as root (no USER instruction in the final stage): `FROM python:3.12-slim`",
            ("Dockerfile", 5, 1),
        ),
        ("`Dockerfile` has no HEALTHCHECK: `FROM python:3.12-slim`", ("Dockerfile", 5, 1)),
    ]


def test_user_and_healthcheck_after_a_heredoc_pass_fr804(blog: Path, run_rules: Any) -> None:
    """The body's `FROM`, `USER root` and `CMD` lines are a script's text, not a stage or the command."""
    body = (
        "RUN <<EOF\nFROM ubuntu:24.04\nUSER root\nuseradd appuser\nCMD python -m http.server\nEOF\n"
        'USER appuser\nHEALTHCHECK CMD python -c "print(1)"'
    )
    (blog / "Dockerfile").write_text(HEREDOC_DOCKERFILE.format(body=body))
    run = run_rules("src.main:app", SELECT_OWN)
    assert run.outcomes("FR804") == {"app": "passed"}, (run.findings("FR804"), run.output)


STACK_PROJECT = {
    "pyproject.toml": """
        [project]
        name = "pgapp"
        dependencies = [
            "fastapi>=0.95",
            "psycopg2-binary>=2.9",
        ]
    """,
    "pgapp/__init__.py": "",
    "pgapp/main.py": """
        from fastapi import FastAPI

        app = FastAPI()
    """,
}


def test_stack_versions_are_read_as_minimums(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old FastAPI, no structlog, and PostgreSQL without asyncpg (what is installed is faked)."""
    from pytest_fastapi_rules.rules import stack

    real = stack.installed_version
    fake = {"fastapi": "0.95.2", "structlog": None, "asyncpg": None}
    monkeypatch.setattr(stack, "installed_version", lambda name: fake[name] if name in fake else real(name))
    write(pytester.path, STACK_PROJECT)
    run = run_rules("pgapp.main:app", "--fastapi-rules-select=FR801")
    pyproject = pytester.path / "pyproject.toml"
    assert [(where(f), f["message"]) for f in run.findings("FR801")] == [
        (
            ("pyproject.toml", line_of(pyproject, "fastapi>=0.95"), 6),
            "installed `fastapi` 0.95.2 is older than the rulebook's 0.121.2: `fastapi>=0.95`",
        ),
        (
            ("pyproject.toml", 1, 1),
            "`structlog` is not installed (the rulebook's stack asks for >= 24.4)",
        ),
        (
            ("pyproject.toml", 1, 1),
            "PostgreSQL is used (the project declares `psycopg2-binary`) but `asyncpg` is not installed",
        ),
    ], run.output
    assert run.outcomes("FR801") == {"app": "warning"}


# -- FR801, FR804's readers, directly --------------------------------------------------------------


def test_declared_dependencies(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": """
                [project]
                name = "x"
                dependencies = ["fastapi>=0.121.2", "requests-oauthlib>=2"]

                [project.optional-dependencies]
                dev = ["requests>=2.32"]

                [tool.poetry.dependencies]
                python = "^3.12"
                Requests = "^2.32"
            """,
            "requirements.txt": "# runtime\nhttpx>=0.28  # client\n-r base.txt\n",
            "requirements-dev.txt": "requests\n",
            "requirements/base.txt": "structlog>=24.4\n",
            "requirements/test.txt": "requests\n",
        },
    )
    found = declared_dependencies(tmp_path)
    dependencies_line = (tmp_path / "pyproject.toml").read_text().splitlines()[2]
    assert [(d.name, d.file.name, d.line, d.column) for d in found.declared] == [
        ("fastapi", "pyproject.toml", 3, dependencies_line.index("fastapi") + 1),
        ("requests-oauthlib", "pyproject.toml", 3, dependencies_line.index("requests-oauthlib") + 1),
        ("Requests", "pyproject.toml", 10, 1),
        ("httpx", "requirements.txt", 2, 1),
        ("structlog", "base.txt", 1, 1),
    ]
    assert found.find("requests") is not None and found.find("requests").file.name == "pyproject.toml"


def test_versions_are_minimums() -> None:
    assert _older("0.100.0", "0.121.2") is True
    assert _older("0.165.0", "0.121.2") is False
    assert _older("1.0.0", "0.121.2") is False  # a newer major passes: no caret ranges
    assert _older("2.9.2", "2.10") is True
    assert _older("not-a-version", "2.10") is None


GOOD_DOCKERFILE = """
# syntax=docker/dockerfile:1
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim AS builder
RUN pip install --no-cache-dir \\
    -r requirements.txt

FROM builder AS runtime-base
ENV PYTHONUNBUFFERED=1

FROM runtime-base
USER root
RUN useradd app
USER app
HEALTHCHECK CMD python -c "print('ok')"
CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]
"""


def test_dockerfile_checks() -> None:
    assert dockerfile_problems(GOOD_DOCKERFILE) == []
    messages = [message for _, message in dockerfile_problems(GOOD_DOCKERFILE.replace("USER app", "USER 0"))]
    assert messages == ["runs as root (`USER 0`)"]
    none = GOOD_DOCKERFILE.replace("HEALTHCHECK CMD python -c \"print('ok')\"", "HEALTHCHECK NONE")
    assert [message for _, message in dockerfile_problems(none)] == ["has no HEALTHCHECK"]
    alpine = GOOD_DOCKERFILE.replace("-slim AS builder", "-alpine AS builder")
    assert [message for _, message in dockerfile_problems(alpine)] == [
        "runs on `python:3.12-alpine`, not an official `python:*-slim` image"
    ]
    shell = GOOD_DOCKERFILE.replace(
        'CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]', "CMD python -m http.server"
    )
    problems = dockerfile_problems(shell)
    assert [message for _, message in problems] == ["does not start the app with `fastapi run` (or uvicorn)"]
    assert problems[0][0] is not None and problems[0][0].line == 16
    no_command = GOOD_DOCKERFILE.replace('CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]', "")
    assert dockerfile_problems(no_command) == []  # compose or Kubernetes passes the command
    script = GOOD_DOCKERFILE.replace(
        'CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]', 'CMD ["./start.sh"]'
    )
    assert dockerfile_problems(script) == []  # a script we cannot read is not judged
    assert dockerfile_problems(script, {"start.sh": "exec fastapi run src/main.py\n"}) == []
    assert [m for _, m in dockerfile_problems(script, {"start.sh": "exec python worker.py\n"})] == [
        "does not start the app with `fastapi run` (or uvicorn)"
    ]


def test_dockerfile_reader_follows_buildkit() -> None:
    """Directives, continuations with the escape character, comments, heredocs of every form."""
    text = (
        "# escape=`\n"
        "FROM python:3.12-slim\n"
        "RUN apt-get update `\n"
        "# a comment inside the continuation\n"
        "\n"
        "    && apt-get install -y curl\n"
        "COPY <<-EOF <<'two' /app/\n"
        "\tUSER root\n"
        "\tEOF\n"
        "USER nobody\n"
        "two\n"
        'RUN echo "<<NOT" && cat <<NOT_EITHER\n'
        "FROM ubuntu\n"
        "NOT_EITHER\n"
        "USER app\n"
    )
    assert [(i.line, i.keyword, i.arguments) for i in parse_dockerfile(text)] == [
        (2, "FROM", "python:3.12-slim"),
        (3, "RUN", "apt-get update && apt-get install -y curl"),
        (7, "COPY", "<<-EOF <<'two' /app/"),
        (12, "RUN", 'echo "<<NOT" && cat <<NOT_EITHER'),
        (15, "USER", "app"),
    ]
    assert heredocs_of('<<"EOF" 3<<-x cat<<no "<<no" <<"no') == [
        Heredoc("EOF", strip_tabs=False),
        Heredoc("x", strip_tabs=True),
    ]


def test_development_dockerfiles_are_left_out(tmp_path: Path) -> None:
    for name in ("Dockerfile", "Dockerfile.dev", "Dockerfile.prod", "api.Dockerfile", "test.Dockerfile"):
        (tmp_path / name).write_text("FROM python:3.12-slim\n")
    assert [path.name for path in dockerfiles(tmp_path)] == [
        "Dockerfile",
        "Dockerfile.prod",
        "api.Dockerfile",
    ]


# -- FR805: settings through pydantic-settings, read once ------------------------------------------


def test_fr805_uncached_second_settings_class(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("variants.fr805_uncached_settings:app")
    failure = only_failure(run)
    assert (failure["code"], failure["target"], failure["outcome"]) == ("FR805", "app", "warning")
    [finding] = run.findings("FR805")
    # Only the uncached class: the conforming Settings (lru_cache + module instance) is fine.
    assert "settings class `MailSettings` is not cached" in finding["message"]
    assert "`Settings`" not in finding["message"]
    assert "get_mail_settings" in finding["fix"]
    variant = blog / "variants" / "fr805_uncached_settings.py"
    assert_located(finding, "variants/fr805_uncached_settings.py", line_of(variant, "class MailSettings"))
    assert "FR805 settings-via-pydantic" in run.output


LIBRARY_SETTINGS_APP = """
from fastapi import FastAPI
from pydantic_settings import BaseSettings

# Stands for a settings class shipped by an internal library, used as is.
CommonSettings = type("CommonSettings", (BaseSettings,), {"__module__": "pydantic_settings.main"})

settings = CommonSettings()
app = FastAPI()
"""


def test_library_settings_held_once_count(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    pytester.makepyfile(lib_settings_app=LIBRARY_SETTINGS_APP)
    run = run_rules("lib_settings_app:app", "--fastapi-rules-select=FR805")
    assert run.outcomes("FR805") == {"app": "passed"}


MIXIN_SETTINGS_APP = """
from fastapi import Depends, FastAPI
from pydantic_settings import BaseSettings


class DatabaseSettings(BaseSettings):
    pass


class SQLiteSettings(DatabaseSettings):
    SQLITE_URI: str = "./app.db"


class MySQLSettings(DatabaseSettings):
    MYSQL_USER: str = "user"


class PostgresSettings(DatabaseSettings):
    POSTGRES_USER: str = "postgres"


class AppSettings(BaseSettings):
    APP_NAME: str = "app"


class Settings(AppSettings, PostgresSettings):
    pass


settings = Settings()
USES_MYSQL = isinstance(settings, MySQLSettings)  # reads the class, builds nothing


class SMTPSettings(BaseSettings):
    SMTP_HOST: str = "localhost"


app = FastAPI()


@app.get("/mail")
async def mail_host(smtp: SMTPSettings = Depends(SMTPSettings)) -> dict[str, str]:
    return {"host": smtp.SMTP_HOST}
"""


@pytest.mark.skipif(
    installed("pydantic") < (2, 10),
    reason="the test app's Depends(BaseSettings) does not import on pydantic before 2.10",
)
def test_mixins_and_alternatives_are_not_judged(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    """Bases, mixins and unused alternatives (igorbenav's MySQLSettings/SQLiteSettings) are never
    instantiated: nothing to cache. A class built on every request (Depends(SMTPSettings)) is."""
    path = pytester.makepyfile(mixin_settings_app=MIXIN_SETTINGS_APP)
    run = run_rules("mixin_settings_app:app", "--fastapi-rules-select=FR805")
    [finding] = run.findings("FR805")
    assert finding["message"].startswith("settings class `SMTPSettings` is not cached")
    assert "get_smtp_settings() -> SMTPSettings" in finding["fix"]
    assert_located(finding, "mixin_settings_app.py", line_of(path, "class SMTPSettings"))


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("MailSettings", "mail_settings"),
        ("MySQLSettings", "mysql_settings"),
        ("SQLiteSettings", "sqlite_settings"),
        ("PostgreSQLSettings", "postgresql_settings"),
        ("HTTPClientSettings", "http_client_settings"),
        ("OAuth2Settings", "oauth2_settings"),
        ("S3Settings", "s3_settings"),
        ("Settings", "settings"),
    ],
)
def test_accessor_names_keep_acronyms_together(name: str, snake: str) -> None:
    from pytest_fastapi_rules.rules.stack import _snake

    assert _snake(name) == snake


PYDANTIC_V1_APP = """
import warnings

from fastapi import FastAPI

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pydantic.v1 import BaseSettings


class Settings(BaseSettings):
    name: str = "old"


settings = Settings()
app = FastAPI()
"""


def test_pydantic_v1_settings_are_named(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    path = pytester.makepyfile(v1_app=PYDANTIC_V1_APP)
    run = run_rules("v1_app:app", "--fastapi-rules-select=FR805")
    [finding] = run.findings("FR805")
    assert finding["message"] == (
        "settings class `Settings` subclasses pydantic.v1's `BaseSettings`, not "
        "`pydantic_settings.BaseSettings`"
    )
    assert_located(finding, "v1_app.py", line_of(path, "class Settings"))


NO_PYDANTIC_SETTINGS_APP = """
import os
import sys

from fastapi import FastAPI

sys.modules["pydantic_settings"] = None  # what an environment without pydantic-settings sees

SECRET_KEY = os.getenv("SECRET_KEY", "")
app = FastAPI()
"""


def test_missing_pydantic_settings_is_the_finding(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    path = pytester.makepyfile(no_settings_app=NO_PYDANTIC_SETTINGS_APP)
    run = run_rules("no_settings_app:app", "--fastapi-rules-select=FR805")
    [finding] = run.findings("FR805")
    assert finding["message"].startswith("pydantic-settings is not installed")
    assert_located(finding, "no_settings_app.py", line_of(path, "os.getenv"))


# -- FR802: production mode as the app spells it ---------------------------------------------------

PRODUCTION_SPELLING_APP = """
import os
from typing import Literal

from fastapi import FastAPI
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    ENVIRONMENT: Literal["Development", "Production", "Testing"] = "Development"


settings = Settings()
if settings.ENVIRONMENT == "Production" and os.environ.get("REQUIRE_VAULT"):
    raise RuntimeError("VAULT_TOKEN is required in production")

app = FastAPI()


@app.get("/api/v1/ping", tags=["ping"])
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
"""


def test_fr802_runs_production_mode_with_the_apps_own_spelling_and_skips_when_it_cannot_start(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(spelling=PRODUCTION_SPELLING_APP)
    # ENVIRONMENT=production would be refused by the settings: the app's own value is used.
    run = run_rules("spelling:app", "--fastapi-rules-select=FR802")
    (result,) = run.results_for("FR802")
    assert result["outcome"] == "warning", run.output
    assert "with ENVIRONMENT=Production, structlog is not configured" in result["message"]
    # When production mode cannot start at all, the warning rule is skipped with the reason; it
    # does not fail the run.
    monkeypatch.setenv("REQUIRE_VAULT", "1")
    run = run_rules("spelling:app", "--fastapi-rules-select=FR802")
    (result,) = run.results_for("FR802")
    assert result["outcome"] == "skipped", run.output
    assert "production logging could not be checked" in result["message"]
    assert "VAULT_TOKEN is required in production" in result["message"]
    assert run.result.ret == 0


# -- FR806: an override the user's tests left behind -----------------------------------------------


def test_override_left_by_a_test_is_reported_and_probes_ignore_it(
    blog: Path, run_rules: Any, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(
        test_leaky="""
        from src.database import get_db
        from src.main import app


        async def fake_db():
            yield None


        def test_uses_fake_db():
            app.dependency_overrides[get_db] = fake_db
        """
    )
    run = run_rules(BLOG, "--fastapi-rules-select=FR806,FR509,FR211")
    (finding,) = run.findings("FR806")
    assert "dependency `src.database.get_db` is now overridden by `test_leaky.fake_db`" in finding["message"]
    assert finding["location"]["file"] == "test_leaky.py"
    # The probes ran against the app as loaded, not against the leftover fake session.
    assert set(run.outcomes("FR509").values()) == {"passed"}
    assert set(run.outcomes("FR211").values()) == {"passed"}
