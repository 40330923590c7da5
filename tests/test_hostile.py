"""A hostile app never hangs the run, never crashes the plugin, and costs one clear error once.

Each case runs pytest in a subprocess with a timeout (a case that regresses must not hang the suite)
and asserts the outcome, the message and a bounded wall time: the configured timeouts (2 s here)
plus a few seconds for pytest, the app and the production-mode child.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

TIMEOUTS = ("--fastapi-rules-startup-timeout=2", "--fastapi-rules-request-timeout=2")
#: What a run may take beyond its timeouts: starting pytest and the app twice (the production
#: child), on a busy two-core machine.
SLACK = 25.0


def _run(pytester: pytest.Pytester, app: str, *args: str, limit: float = SLACK) -> tuple[Any, dict[str, Any]]:
    report = pytester.path / "report.json"
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        f"--fastapi-app={app}",
        f"--fastapi-rules-json={report}",
        "-p",
        "no:cacheprovider",
        *args,
        timeout=limit + 60,
    )
    elapsed = time.monotonic() - started
    assert elapsed < limit, f"the run took {elapsed:.1f} s:\n{result.stdout.str()[-3000:]}"
    data = json.loads(report.read_text()) if report.exists() else {"results": []}
    return result, data


def _outcomes(data: dict[str, Any], code: str) -> dict[str, str]:
    return {r["target"]: r["outcome"] for r in data["results"] if r["code"] == code}


def _message(data: dict[str, Any], code: str, target: str = "app") -> str:
    (found,) = [r["message"] for r in data["results"] if r["code"] == code and r["target"] == target]
    return str(found)


def _quiet(output: str) -> None:
    """No sign of the plugin's own trouble: internal errors, asyncio's complaints, raw timeouts."""
    for sign in (
        "internal error",
        "INTERNALERROR",
        "Task was destroyed",
        "was never awaited",
        "PytestUnraisableExceptionWarning",
        "TimeoutError",
    ):
        assert sign not in output, f"{sign!r} in the output:\n{output[-3000:]}"


ROUTES_APP = """
import sys
import time

from fastapi import FastAPI


class Custom(BaseException):
    pass


app = FastAPI()


@app.get("/api/v1/ok", tags=["x"])
async def ok() -> dict[str, str]:
    return {"ok": "yes"}


@app.get("/api/v1/exit", tags=["x"])
async def do_exit() -> dict[str, str]:
    sys.exit(0)


@app.get("/api/v1/interrupt", tags=["x"])
async def interrupt() -> dict[str, str]:
    raise KeyboardInterrupt


@app.get("/api/v1/custom", tags=["x"])
async def custom() -> dict[str, str]:
    raise Custom("the app's own")
"""


def test_routes_that_raise_system_exit_or_keyboard_interrupt_are_the_apps_failures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(routes=ROUTES_APP)
    result, data = _run(pytester, "routes:app", "--fastapi-rules-select=FR509,FR510", *TIMEOUTS)
    _quiet(result.stdout.str())
    # The innocent route is probed as usual; each other route's items say what the app raised.
    assert _outcomes(data, "FR509")["GET /api/v1/ok"] == "passed"
    for target, raised in (
        ("GET /api/v1/exit", "SystemExit: 0"),
        ("GET /api/v1/interrupt", "KeyboardInterrupt"),
        ("GET /api/v1/custom", "Custom: the app's own"),
    ):
        assert _outcomes(data, "FR509")[target] == "skipped"
        assert f"every valid probe request to {target} raised {raised} (a BaseException the app raised" in (
            _message(data, "FR509", target)
        )
    assert result.ret == 0


BLOCKING_ROUTE_APP = """
import time

from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/ok", tags=["x"])
async def ok() -> dict[str, str]:
    return {"ok": "yes"}


@app.get("/api/v1/stuck", tags=["x"])
async def stuck() -> dict[str, str]:
    time.sleep(3600)
    return {}
"""


def test_a_route_that_blocks_the_loop_is_fr402s_finding_and_the_run_ends_in_bounded_time(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(stuck=BLOCKING_ROUTE_APP)
    result, data = _run(pytester, "stuck:app", "--fastapi-rules-select=FR102,FR402,FR509", *TIMEOUTS)
    _quiet(result.stdout.str())
    assert _outcomes(data, "FR402")["GET /api/v1/stuck"] == "failed"
    finding = _message(data, "FR402", "GET /api/v1/stuck")
    assert "GET /api/v1/stuck blocked the event loop for over 2 s, at stuck.py:15 in stuck" in finding
    pointer = "see fastapi-rules::FR402[GET /api/v1/stuck]"
    for code, target in (("FR102", "app"), ("FR509", "GET /api/v1/ok"), ("FR402", "GET /api/v1/ok")):
        message = _message(data, code, target)
        assert message.endswith(pointer) and "the probes stopped when GET /api/v1/stuck" in message


LIFESPAN_APP = """
import sys
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def lifespan(app):
    {body}
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/ok", tags=["x"])
async def ok() -> dict[str, str]:
    return {{"ok": "yes"}}
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("sys.exit(1)", "the lifespan failed at startup: SystemExit: 1"),
        ("raise KeyboardInterrupt", "the lifespan failed at startup: KeyboardInterrupt"),
        (
            "time.sleep(3600)",
            "the lifespan failed at startup: The app's lifespan blocked the event loop for over 2 s at "
            "startup, at ",
        ),
    ],
    ids=["system-exit", "keyboard-interrupt", "blocking-call"],
)
def test_a_lifespan_that_exits_or_blocks_is_fr102s_finding_once(
    pytester: pytest.Pytester, body: str, expected: str
) -> None:
    pytester.makepyfile(life=LIFESPAN_APP.format(body=body))
    result, data = _run(pytester, "life:app", "--fastapi-rules-select=FR102,FR501,FR509", *TIMEOUTS)
    _quiet(result.stdout.str())
    assert _outcomes(data, "FR102") == {"app": "failed"}
    assert expected in _message(data, "FR102"), _message(data, "FR102")
    # The items that need the running app say so, without waiting for it again.
    assert _outcomes(data, "FR501") == {"app": "error"}
    assert "cannot check, the app did not start" in _message(data, "FR501")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung database)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for connection in held:
            connection.close()
        server.close()


NO_DB_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/items/{item_id}", tags=["items"])
async def item(item_id: int) -> int:
    return item_id


@app.get("/api/v1/other/{item_id}", tags=["items"])
async def other(item_id: int) -> int:
    return item_id
"""


def test_a_named_database_server_that_never_answers_costs_its_timeout_once(
    pytester: pytest.Pytester, silent_server: int
) -> None:
    pytester.makepyfile(nodb=NO_DB_APP)
    url = f"postgresql+asyncpg://u:secret@127.0.0.1:{silent_server}/x"
    result, data = _run(
        pytester,
        "nodb:app",
        "--fastapi-rules-select=FR501,FR509,FR210",
        f"--fastapi-rules-db-url={url}",
        *TIMEOUTS,
        limit=SLACK + 15,
    )
    output = result.stdout.str()
    assert "internal error" not in output and "secret" not in output
    errors = [r for r in data["results"] if r["outcome"] == "error"]
    assert errors, output
    for error in errors:
        assert f"127.0.0.1:{silent_server} did not answer within 10 s" in error["message"], error
    # One probe item carries the cause; the others point at it.
    skipped = [r for r in data["results"] if r["outcome"] == "skipped" and r["code"] in ("FR509", "FR210")]
    assert skipped and all("see fastapi-rules::" in r["message"] for r in skipped)


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (
            ("--fastapi-rules-startup-timeout=-1",),
            "",
            "--fastapi-rules-startup-timeout: must be positive, got '-1'.",
        ),
        (
            ("--fastapi-rules-request-timeout=soon",),
            "",
            "--fastapi-rules-request-timeout: 'soon' is not a number",
        ),
        (
            (),
            "fastapi_rules_startup_timeout = 0",
            "fastapi_rules_startup_timeout: must be positive, got '0'.",
        ),
        (
            (),
            "fastapi_rules_max_page_size = -5",
            "fastapi_rules_max_page_size: must be at least 1, got '-5'.",
        ),
        (
            ("--fastapi-rules-edge-requests=-1",),
            "",
            "--fastapi-rules-edge-requests: must be at least 0, got '-1'.",
        ),
        (
            (),
            "fastapi_rules_edge_requests = some",
            "fastapi_rules_edge_requests: 'some' is not a whole number of requests.",
        ),
        (
            (),
            "fastapi_rules_strict = maybe",
            "fastapi_rules_strict: invalid truth value 'maybe'; use true or false.",
        ),
        (
            (),
            "fastapi_rules_engines = engine",
            "fastapi_rules_engines: 'engine' needs the form module:attribute",
        ),
    ],
)
def test_every_setting_is_checked_the_same_way_from_either_source(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, expected: str
) -> None:
    pytester.makepyfile(nodb=NO_DB_APP)
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest_subprocess(
        "--fastapi-app=nodb:app", "-p", "no:cacheprovider", *args, timeout=60
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert expected in result.stderr.str(), result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_an_engine_module_that_does_not_exist_is_one_error_naming_the_setting(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(nodb=NO_DB_APP)
    pytester.makeini("[pytest]\nfastapi_rules_engines = nosuch.mod:engine\n")
    result = pytester.runpytest_subprocess("--fastapi-app=nodb:app", "-p", "no:cacheprovider", timeout=60)
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, output
    assert (
        "fastapi_rules_engines = nosuch.mod:engine: the module 'nosuch.mod' cannot be imported "
        "(ModuleNotFoundError: No module named 'nosuch')" in output
    )
    assert "internal error" not in output


ROOT_PATH_APP = """
from fastapi import APIRouter, FastAPI

app = FastAPI(root_path="/prefix")
router = APIRouter(prefix="/api/v1/things", tags=["things"])


@router.get("")
async def things() -> list[int]:
    return [1]


app.include_router(router)
"""


def test_a_deployment_prefix_is_not_part_of_the_apis_paths(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(rootpath=ROOT_PATH_APP)
    _result, data = _run(pytester, "rootpath:app", "--fastapi-rules-select=FR109,FR509", *TIMEOUTS)
    assert _outcomes(data, "FR109") == {"GET /api/v1/things": "passed"}
    assert _outcomes(data, "FR509") == {"GET /api/v1/things": "passed"}


NOISY_APP = """
import sys

for index in range(3000):
    print(f"line {{index}} " + "y" * 1000)
    sys.stderr.write(f"err {{index}} " + "z" * 200 + "\\n")
{tail}
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/ok", tags=["x"])
async def ok() -> dict[str, str]:
    return {{"ok": "yes"}}
"""


@pytest.mark.parametrize("fails", [False, True], ids=["imports", "fails-after-printing"])
def test_what_the_app_prints_at_import_stays_out_of_the_report(
    pytester: pytest.Pytester, fails: bool
) -> None:
    tail = 'raise RuntimeError("the import fails after all that")' if fails else ""
    pytester.makepyfile(noisy=NOISY_APP.format(tail=tail))
    result = pytester.runpytest_subprocess(
        "--fastapi-app=noisy:app", "--fastapi-rules-select=FR201", "-p", "no:cacheprovider", timeout=60
    )
    output = result.stdout.str() + result.stderr.str()
    assert len(output) < 20_000, len(output)
    if fails:
        assert "RuntimeError: the import fails after all that" in output
        assert "What the app printed meanwhile:" in output and "earlier bytes not shown" in output
    else:
        assert "yyyy" not in output and result.ret == 0
