"""The plugin's core behaviour: collection, selection, severity, reports, and staying out of the way."""

from __future__ import annotations

import json
import os
import re

import pytest

from pytest_fastapi_rules.facts import Memo, MemoKey
from tests.conftest import RulesRun, RunRules, installed

SMALL_APP = """
from fastapi import APIRouter, FastAPI

router = APIRouter(tags=["items"])


@router.get("/items")
def list_items() -> list[int]:
    return [1, 2]


@router.get("/items/{item_id}")
async def get_item(item_id: int) -> int:
    return item_id


def create_app() -> FastAPI:
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    return app


app = create_app()
"""

USER_TEST = """
def test_users_own_test():
    assert 1 + 1 == 2
"""


@pytest.fixture
def small_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(small=SMALL_APP)


def test_without_an_app_the_plugin_adds_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=USER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    assert "fastapi-rules::" not in result.stdout.str()
    assert "fastapi-rules: app" not in result.stdout.str()


def test_rule_items_are_collected_beside_the_users_tests(pytester: pytest.Pytester, small_app: None) -> None:
    pytester.makepyfile(test_mine=USER_TEST)
    pytester.makeini("[pytest]\ntestpaths = test_mine.py\n")
    result = pytester.runpytest("--fastapi-app=small:app", "--co", "-q", "-p", "no:cacheprovider")
    lines = result.stdout.lines
    assert "test_mine.py::test_users_own_test" in lines
    assert "fastapi-rules::FR201[GET /api/v1/items]" in lines
    assert "fastapi-rules::FR201[GET /api/v1/items/{item_id}]" in lines
    assert "fastapi-rules::FR101" in lines


@pytest.mark.skipif(
    installed("pytest") < (9,), reason="pytest shows a string failure's first line in the summary from 9.0"
)
def test_a_failing_item_reads_like_a_linter(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules
) -> None:
    run: RulesRun = run_rules("small:app", "--fastapi-rules-select=FR201")
    run.result.assert_outcomes(passed=1, failed=1)
    output = run.output
    run.result.stdout.fnmatch_lines(
        ["FAILED fastapi-rules::FR201[[]GET /api/v1/items[]] - FR201 async-endpoint: *"]
    )
    assert "small.py:7: FR201 [error] GET /api/v1/items: endpoint `list_items` is a sync `def`" in output
    assert "fix: Declare the endpoint with `async def`" in output
    assert "rulebook Rule #7" in output
    assert "_pytest" not in output and "Traceback" not in output
    assert run.outcomes("FR201") == {
        "GET /api/v1/items": "failed",
        "GET /api/v1/items/{item_id}": "passed",
    }


def test_json_report_is_complete(pytester: pytest.Pytester, small_app: None, run_rules: RunRules) -> None:
    run: RulesRun = run_rules("small:app", "--fastapi-rules-select=FR101,FR201")
    report = run.report
    assert report["version"] == 1
    assert report["app"] == "small:app"
    assert report["summary"]["failed"] == 1 and report["summary"]["passed"] == 2
    failed = next(r for r in report["results"] if r["outcome"] == "failed")
    assert failed == {
        "code": "FR201",
        "name": "async-endpoint",
        "severity": "error",
        "target": "GET /api/v1/items",
        "outcome": "failed",
        "message": failed["message"],
        "location": {"file": "small.py", "line": 7},
        "nodeid": "fastapi-rules::FR201[GET /api/v1/items]",
        "findings": [
            {
                "target": "GET /api/v1/items",
                "message": "endpoint `list_items` is a sync `def`; FastAPI runs it in a worker thread",
                "fix": None,
                "severity": "error",
                "location": {"file": "small.py", "line": 7, "column": None},
                "fingerprint": failed["findings"][0]["fingerprint"],
                "baselined": False,
                "suppressed": False,
            }
        ],
    }
    assert len(failed["findings"][0]["fingerprint"]) == 20
    assert failed["message"].startswith("FR201 async-endpoint: GET /api/v1/items: endpoint")
    assert {r["outcome"] for r in report["results"]} == {"passed", "failed"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-k", "FR201"], {"FR201[GET /api/v1/items]", "FR201[GET /api/v1/items/{item_id}]"}),
        (
            ["-k", "async-endpoint"],
            {"FR201[GET /api/v1/items]", "FR201[GET /api/v1/items/{item_id}]"},
        ),
        (["-k", "FR201 and items/"], {"FR201[GET /api/v1/items/{item_id}]"}),
        (["-m", "FR101"], {"FR101"}),
        (["-m", "FR1xx"], None),
        pytest.param(
            ["-m", "fastapi_rule(code='FR201')"],
            {"FR201[GET /api/v1/items]", "FR201[GET /api/v1/items/{item_id}]"},
            marks=pytest.mark.skipif(
                installed("pytest") < (8, 3), reason="-m matches marker arguments from pytest 8.3"
            ),
        ),
        (["-m", "not fastapi_rules"], set()),
    ],
)
def test_keyword_and_marker_selection(
    pytester: pytest.Pytester, small_app: None, args: list[str], expected: set[str] | None
) -> None:
    result = pytester.runpytest(
        "--fastapi-app=small:app", "--strict-markers", "--co", "-q", "-p", "no:cacheprovider", *args
    )
    names = {line.split("::", 1)[1] for line in result.stdout.lines if line.startswith("fastapi-rules::")}
    if expected is None:  # a family marker: every FR1xx item and nothing else
        assert names and all(name.startswith("FR1") for name in names)
    else:
        assert names == expected
    assert "INTERNALERROR" not in result.stdout.str()


def test_markers_select_under_xdist_with_strict_markers(pytester: pytest.Pytester, small_app: None) -> None:
    """The xdist controller registers no rule markers (it collects nothing); the workers do, so
    ``--strict-markers -m FR201`` selects the same items as in one process, and ``--markers`` on the
    controller still lists them."""
    pytest.importorskip("xdist")
    result = pytester.runpytest(
        "--fastapi-app=small:app",
        "--strict-markers",
        "-m",
        "FR201",
        "-n",
        "2",
        "-v",
        "-p",
        "no:cacheprovider",
    )
    ran = set(re.findall(r"(?:PASSED|FAILED) (fastapi-rules::FR\d+\[[^\]]*\])", result.stdout.str()))
    assert ran == {
        "fastapi-rules::FR201[GET /api/v1/items]",
        "fastapi-rules::FR201[GET /api/v1/items/{item_id}]",
    }
    result.assert_outcomes(passed=1, failed=1)
    listed = pytester.runpytest("--fastapi-app=small:app", "--markers", "-n", "2", "-p", "no:cacheprovider")
    listed.stdout.fnmatch_lines(["@pytest.mark.FR201: pytest-fastapi-rules async-endpoint"])


def test_select_and_ignore_from_command_line_and_ini(pytester: pytest.Pytester, small_app: None) -> None:
    result = pytester.runpytest(
        "--fastapi-app=small:app",
        "--fastapi-rules-select=FR10,FR201",
        "--fastapi-rules-ignore=FR1",
        "--co",
        "-q",
        "-p",
        "no:cacheprovider",
    )
    names = {line for line in result.stdout.lines if line.startswith("fastapi-rules::")}
    assert names == {
        "fastapi-rules::FR201[GET /api/v1/items]",
        "fastapi-rules::FR201[GET /api/v1/items/{item_id}]",
    }

    pytester.makeini(
        "[pytest]\nfastapi_app = small:app\nfastapi_rules_select = FR1 FR2\nfastapi_rules_ignore = FR201\n"
    )
    result = pytester.runpytest("--co", "-q", "-p", "no:cacheprovider")
    names = {line for line in result.stdout.lines if line.startswith("fastapi-rules::")}
    assert "fastapi-rules::FR101" in names
    assert not any("FR201" in name for name in names)


def test_unknown_codes_are_a_usage_error(pytester: pytest.Pytester, small_app: None) -> None:
    result = pytester.runpytest("--fastapi-app=small:app", "--fastapi-rules-select=FR999")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--fastapi-rules-select: 'FR999' matches no rule*--fastapi-rules-list*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_per_route_ignores_deselect_matching_items(pytester: pytest.Pytester, small_app: None) -> None:
    pytester.makeini(
        "[pytest]\nfastapi_rules_per_route_ignores =\n    GET /api/v1/items = FR201\n    POST /api/v1/* = FR2\n"
    )
    result = pytester.runpytest(
        "--fastapi-app=small:app", "--fastapi-rules-select=FR201", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, deselected=1)


def test_per_route_ignores_reject_malformed_lines(pytester: pytest.Pytester, small_app: None) -> None:
    pytester.makeini("[pytest]\nfastapi_rules_per_route_ignores =\n    GET /api/v1/items FR201\n")
    result = pytester.runpytest("--fastapi-app=small:app")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*fastapi_rules_per_route_ignores*needs the form 'PATTERN = CODES'*"])


def test_warnings_do_not_fail_the_run_unless_strict(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules
) -> None:
    pytester.makeini("[pytest]\nfastapi_rules_severity =\n    FR201 = warning\n")
    run: RulesRun = run_rules("small:app", "--fastapi-rules-select=FR201")
    assert run.result.ret == pytest.ExitCode.OK
    assert run.outcomes("FR201")["GET /api/v1/items"] == "warning"
    assert run.results_for("FR201")[0]["severity"] == "warning"
    run.result.stdout.fnmatch_lines(
        [
            "*fastapi-rules warnings*",
            "small.py:7: FR201 async-endpoint: GET /api/v1/items: endpoint*",
            "*1 passed, 1 warned*",
        ]
    )

    strict: RulesRun = run_rules("small:app", "--fastapi-rules-select=FR201", "--fastapi-rules-strict")
    assert strict.result.ret == pytest.ExitCode.TESTS_FAILED
    assert strict.outcomes("FR201")["GET /api/v1/items"] == "failed"


def test_rule_catalog(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fastapi-rules-list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["code *name *severity *basis *summary", "FR101 *lifespan-not-on-event *error *app *"]
    )


def test_header_says_where_the_app_came_from(pytester: pytest.Pytester, small_app: None) -> None:
    pytester.makeini("[pytest]\nfastapi_app = small:app\n")
    result = pytester.runpytest("--co", "-q", "-p", "no:cacheprovider", "-v")
    result.stdout.fnmatch_lines(
        [
            "fastapi-rules: app small:app (from ini)*rules selected; strict: off; probe database: "
            "beside the app's own PostgreSQL when reachable, else SQLite (default)"
        ]
    )


def test_factory_is_called(pytester: pytest.Pytester, small_app: None) -> None:
    result = pytester.runpytest(
        "--fastapi-app=small:create_app", "--fastapi-rules-select=FR201", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)


def test_last_failed_reruns_only_the_failed_rule_items(pytester: pytest.Pytester, small_app: None) -> None:
    pytester.makepyfile(test_mine=USER_TEST)
    first = pytester.runpytest("--fastapi-app=small:app", "--fastapi-rules-select=FR201")
    first.assert_outcomes(passed=2, failed=1)
    again = pytester.runpytest("--fastapi-app=small:app", "--fastapi-rules-select=FR201", "--lf")
    again.assert_outcomes(failed=1, deselected=2)


def test_exitfirst_stops_at_the_first_failing_rule(pytester: pytest.Pytester, small_app: None) -> None:
    result = pytester.runpytest("--fastapi-app=small:app", "-x", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes()["failed"] == 1


def test_a_crashing_rule_is_reported_as_the_plugins_bug(pytester: pytest.Pytester, small_app: None) -> None:
    pytester.makeconftest(
        """
import dataclasses
from pytest_fastapi_rules import registry

_saved = {}

def pytest_configure(config):
    rule = registry.get_rule("FR201")
    _saved["FR201"] = rule
    def boom(context):
        raise KeyError("oops")
    registry._REGISTRY["FR201"] = dataclasses.replace(rule, check=boom)

def pytest_unconfigure(config):
    registry._REGISTRY["FR201"] = _saved["FR201"]
"""
    )
    result = pytester.runpytest(
        "--fastapi-app=small:app", "--fastapi-rules-select=FR201", "-p", "no:cacheprovider"
    )
    output = result.stdout.str()
    assert "internal error in pytest-fastapi-rules" in output
    assert "This is a bug in the plugin, not a finding about your app" in output
    assert "KeyError: 'oops'" in output
    assert result.parseoutcomes().get("errors") == 2


def test_route_rule_without_matching_routes_is_one_skipped_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(empty="from fastapi import FastAPI\napp = FastAPI()\n")
    result = pytester.runpytest(
        "--fastapi-app=empty:app", "--fastapi-rules-select=FR201", "-rs", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*FR201 async-endpoint: the app has no route this rule applies to*"])


def test_xdist_runs_the_same_items_with_the_same_verdicts(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules
) -> None:
    pytest.importorskip("xdist")
    from pytest_fastapi_rules.xdist_scheduling import PROBE_GROUP, work_unit

    serial: RulesRun = run_rules("small:app")
    parallel: RulesRun = run_rules("small:app", "-n", "2", "-v")
    assert parallel.report["results"] == serial.report["results"]
    assert parallel.report["summary"] == serial.report["summary"]
    # Each probe shard ran on one worker: every route was probed once, not once per worker; the
    # app-level probe items (and those waiting for the production-mode children) with shard 0.
    # The items of each other rule ran together on one worker too (one unit per rule).
    workers_by_unit: dict[str, set[str]] = {}
    for line in parallel.output.splitlines():
        match = re.match(r"\[(gw\d+)\] .*?(fastapi-rules::(FR\d+)(?:\[[^\]]*\])?)", line)
        if match:
            workers_by_unit.setdefault(work_unit(match.group(2), 2), set()).add(match.group(1))
    probe_units = {unit for unit in workers_by_unit if unit.startswith(PROBE_GROUP)}
    assert probe_units == {f"{PROBE_GROUP}-0", f"{PROBE_GROUP}-1"}, workers_by_unit
    # Shard k on worker gwK: gw0 knows as it starts that it will start the production-mode child.
    assert workers_by_unit[f"{PROBE_GROUP}-0"] == {"gw0"}, workers_by_unit
    assert workers_by_unit[f"{PROBE_GROUP}-1"] == {"gw1"}, workers_by_unit
    assert "fastapi-rules-FR201" in workers_by_unit, workers_by_unit
    assert all(len(workers) == 1 for workers in workers_by_unit.values()), workers_by_unit
    assert set().union(*workers_by_unit.values()) == {"gw0", "gw1"}, workers_by_unit


def test_only_the_process_that_starts_the_production_child_starts_its_interpreter_early() -> None:
    """The spare child interpreter (issue #20) is started by one process or by the xdist worker that
    gets the probes' shard 0, and only when a rule that reads the child is selected."""
    from types import SimpleNamespace

    from pytest_fastapi_rules.options import PROBE_SHARDS_KEY
    from pytest_fastapi_rules.plugin import _may_start_production_child

    def selects(*codes: str) -> object:
        return SimpleNamespace(rule_is_selected=lambda code: code in codes)

    one_process = SimpleNamespace()
    gw0 = SimpleNamespace(workerinput={"workerid": "gw0", PROBE_SHARDS_KEY: 2})
    gw1 = SimpleNamespace(workerinput={"workerid": "gw1", PROBE_SHARDS_KEY: 2})
    other_scheduler = SimpleNamespace(workerinput={"workerid": "gw0"})
    decide = _may_start_production_child
    assert decide(one_process, selects("FR108")) and decide(gw0, selects("FR802"))  # type: ignore[arg-type]
    assert not decide(gw1, selects("FR108")) and not decide(other_scheduler, selects("FR108"))  # type: ignore[arg-type]
    assert not decide(one_process, selects("FR201"))  # type: ignore[arg-type]


class _FakeWorker:
    """The part of xdist's WorkerController a scheduler talks to."""

    def __init__(self, name: str) -> None:
        self.gateway = type("Gateway", (), {"id": name})()
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_xdist_scheduler_bookkeeping_matches_loadscope() -> None:
    """The scheduler's O(1) positions and pending counts give loadscope's own answers at every step,
    and every item is sent once."""
    pytest.importorskip("xdist")
    from types import SimpleNamespace

    from xdist.scheduler import LoadScopeScheduling

    from pytest_fastapi_rules.xdist_scheduling import ProbeGroupScheduling

    routes = [f"GET /api/v1/things{index}" for index in range(40)]
    collection = (
        ["tests/test_own.py::test_one", "tests/test_own.py::test_two"]
        + [f"fastapi-rules::FR201[{route}]" for route in routes]
        + [f"fastapi-rules::FR509[{route}]" for route in routes]
        + ["fastapi-rules::FR102", "fastapi-rules::FR701"]
    )
    config = SimpleNamespace(getvalue=lambda name: ["2*popen"], option=SimpleNamespace(loadscopereorder=True))
    scheduler = ProbeGroupScheduling(config)
    workers = [_FakeWorker("gw0"), _FakeWorker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, list(collection))
    scheduler.schedule()
    done: list[str] = []
    while scheduler.has_pending:
        for worker in workers:
            workload = scheduler.assigned_work.get(worker, {})
            assert scheduler._pending_of(workload) == LoadScopeScheduling._pending_of(scheduler, workload)
            running = [i for i in worker.sent if collection[i] not in done]
            if running:
                done.append(collection[running[0]])
                scheduler.mark_test_complete(worker, running[0])
    sent = [collection[index] for worker in workers for index in worker.sent]
    assert sorted(sent) == sorted(collection)
    assert sorted(done) == sorted(collection)
    assert all(worker.sent for worker in workers)


def test_the_app_module_is_imported_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        counted=SMALL_APP
        + "\nimport os\nos.environ['COUNTED_IMPORTS'] = str(int(os.environ.get('COUNTED_IMPORTS', '0')) + 1)\n",
        test_count="""
import os

def test_imported_once():
    assert os.environ["COUNTED_IMPORTS"] == "1"
""",
    )
    result = pytester.runpytest_subprocess(
        "--fastapi-app=counted:app", "-p", "no:cacheprovider", "-k", "imported_once or FR201"
    )
    result.assert_outcomes(passed=2, failed=1)


def test_a_crashing_route_predicate_is_one_plugin_error_not_a_collection_error(
    pytester: pytest.Pytester, small_app: None
) -> None:
    pytester.makeconftest(
        """
import dataclasses
from pytest_fastapi_rules import registry

_saved = {}

def pytest_configure(config):
    rule = registry.get_rule("FR201")
    _saved["FR201"] = rule
    def broken(route, options):
        raise ImportError("cannot import name 'x'")
    registry._REGISTRY["FR201"] = dataclasses.replace(rule, applies_to=broken)

def pytest_unconfigure(config):
    registry._REGISTRY["FR201"] = _saved["FR201"]
"""
    )
    result = pytester.runpytest(
        "--fastapi-app=small:app", "--fastapi-rules-select=FR101,FR201", "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 1 and outcomes["errors"] == 1
    result.stdout.fnmatch_lines(
        [
            "*FR201 async-endpoint: internal error in pytest-fastapi-rules*",
            "*ImportError: cannot import name 'x'*",
        ]
    )
    assert "ERROR collecting" not in result.stdout.str()


FREEZE_PROBE = """
import gc


def test_users_own_test_sees_the_heap_frozen(record_property):
    with open("freeze-count.txt", "w") as out:
        out.write(str(gc.get_freeze_count()))
"""


def test_the_heap_is_frozen_after_collection_and_unfrozen_after_the_session(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules
) -> None:
    """What lives for the whole session is kept out of the collector's full collections, and given
    back at the end; a heap someone else froze is left as it was."""
    import gc

    pytester.makepyfile(test_freeze=FREEZE_PROBE)
    before = gc.get_freeze_count()  # 0, or the few hundred objects CPython 3.12 starts with frozen
    run = run_rules("small:app")
    assert run.result.ret in (0, 1), run.output
    assert int((pytester.path / "freeze-count.txt").read_text()) > before
    assert gc.get_freeze_count() <= before
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        run_rules("small:app")
        # Frozen objects freed meanwhile leave the count; the plugin froze nothing more, unfroze nothing.
        assert 0 < int((pytester.path / "freeze-count.txt").read_text()) <= frozen
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def _frozen_at_exit_of_a_pytest_command(pytester: pytest.Pytester) -> int:
    """Run ``python -m pytest`` with the plugin on ``small:app``; how many objects were frozen when
    its process exited."""
    pytester.makeconftest(
        """
import atexit, gc

def _record():
    with open("freeze-count-at-exit.txt", "w") as out:
        out.write(str(gc.get_freeze_count()))

atexit.register(_record)
"""
    )
    result = pytester.runpytest_subprocess(
        "--fastapi-app=small:app", "--fastapi-rules-select=FR101,FR201", "-p", "no:cacheprovider"
    )
    assert result.ret in (0, 1), result.stdout.str()
    return int((pytester.path / "freeze-count-at-exit.txt").read_text())


def test_a_pytest_command_that_exits_with_the_session_keeps_the_heap_frozen_to_the_end(
    pytester: pytest.Pytester, small_app: None
) -> None:
    """``python -m pytest`` exits when the session ends: the heap stays frozen, so the interpreter's
    collections at exit do not walk it again (an in-process run gets it back, the test above)."""
    assert _frozen_at_exit_of_a_pytest_command(pytester) > 0


def test_the_heap_is_frozen_once_the_app_is_imported(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules
) -> None:
    """The app is frozen before its facts and the items are built, so the collections meanwhile
    do not walk it (at 1,000 routes, 1.1 s of full collections during collection)."""
    import gc

    pytester.makeconftest(
        """
import gc

def pytest_collection_modifyitems(items):
    with open("frozen-when-collected.txt", "w") as out:
        out.write(str(gc.get_freeze_count()))
"""
    )
    before = gc.get_freeze_count()
    run = run_rules("small:app")
    assert run.result.ret in (0, 1), run.output
    # Read before the plugin's own freeze after collection (``pytest_collection_finish``).
    assert int((pytester.path / "frozen-when-collected.txt").read_text()) > before


FREEZE_COUNTS_CONFTEST = """
import gc, json

counts = []

def pytest_runtestloop(session):
    counts.append(["start", gc.get_freeze_count()])

def pytest_runtest_protocol(item, nextitem):
    counts.append([item.nodeid, gc.get_freeze_count()])

def pytest_sessionfinish(session):
    with open("freeze-counts.json", "w") as out:
        json.dump(counts, out)
"""


@pytest.mark.parametrize("users_test_first", [False, True], ids=["rules-only", "users-test-first"])
def test_what_the_probe_run_leaves_is_frozen_unless_a_users_test_ran_before(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules, users_test_first: bool
) -> None:
    """After the probe run (the first probe item's shared work), what it leaves alive is frozen,
    so the full collections while the rule items run do not walk it (1.3 s at 1,000 routes); not
    when a test of the user's ran before it (the rule items come after the user's tests), whose
    objects are not the plugin's to keep from the collector."""
    pytester.makeconftest(FREEZE_COUNTS_CONFTEST)
    if users_test_first:
        pytester.makepyfile(test_mine=USER_TEST)
    run = run_rules("small:app", "--fastapi-rules-select=FR103,FR201")
    assert run.result.ret in (0, 1), run.output
    counts = json.loads((pytester.path / "freeze-counts.json").read_text())
    nodeids = [nodeid for nodeid, _ in counts]
    assert nodeids[1].startswith("test_mine.py::") is users_test_first, nodeids
    at_start = counts[0][1]
    at_probe_item = next(count for nodeid, count in counts if nodeid == "fastapi-rules::FR103")
    if users_test_first:
        assert at_probe_item <= at_start
    else:
        assert at_probe_item > at_start


def test_the_shared_work_is_wrapped_only_while_some_is_left(
    pytester: pytest.Pytester, small_app: None, run_rules: RunRules
) -> None:
    """The output capture and coverage pause around a rule item's shared work are entered only
    while there is shared work left for it (the first item loads the app and runs the probes):
    45 us an item otherwise, 0.6 s at 1,000 routes. The verdicts stay the same."""
    pytester.makeconftest(
        """
from pytest_fastapi_rules import plugin

entered = []
_quiet = plugin._quiet


def counting_quiet():
    entered.append(1)
    return _quiet()


def pytest_configure(config):
    plugin._quiet = counting_quiet


def pytest_unconfigure(config):
    plugin._quiet = _quiet
    with open("quiet-entered.txt", "w") as out:
        out.write(str(len(entered)))
"""
    )
    run = run_rules("small:app", "--fastapi-rules-select=FR103,FR201")
    assert run.result.ret == 1, run.output
    run.result.assert_outcomes(passed=1, failed=1, skipped=1)
    # FR103 first (code order) loads the app and runs the probe run, and the app is stopped after
    # the last rule item; the two FR201 items find nothing left to do (4 before: one per item).
    assert (pytester.path / "quiet-entered.txt").read_text() == "2"


def test_what_the_session_made_is_frozen_for_exit_and_its_garbage_still_finalized(
    pytester: pytest.Pytester, small_app: None
) -> None:
    """At the end of a ``python -m pytest`` run, what is alive (the probe answers, the reports) is
    frozen too, so that pytest's collections at the end and the interpreter's at exit do not walk
    it (about 2 s at 1,000 routes); garbage left at the end, here a cycle with a finalizer made
    after every item with automatic collection off, is collected first and finalized as before."""
    pytester.makepyfile(test_freeze=FREEZE_PROBE)
    pytester.makeconftest(
        """
import atexit, gc

def _record():
    with open("freeze-count-at-exit.txt", "w") as out:
        out.write(str(gc.get_freeze_count()))

atexit.register(_record)


class Finalized:
    def __init__(self):
        self.cycle = self

    def __del__(self):
        with open("finalized.txt", "w") as out:
            out.write("yes")


def pytest_sessionfinish(session):
    gc.disable()
    Finalized()
"""
    )
    result = pytester.runpytest_subprocess(
        "--fastapi-app=small:app", "--fastapi-rules-select=FR101,FR201", "-p", "no:cacheprovider"
    )
    assert result.ret in (0, 1), result.stdout.str()
    during_the_session = int((pytester.path / "freeze-count.txt").read_text())
    at_exit = int((pytester.path / "freeze-count-at-exit.txt").read_text())
    assert at_exit > during_the_session
    assert (pytester.path / "finalized.txt").read_text() == "yes"


def test_a_heap_frozen_before_pytest_started_is_frozen_again_after_collection(
    pytester: pytest.Pytester, small_app: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPython 3.12 starts with objects in the collector's permanent generation (375 on 3.12.1), as
    if something had frozen the heap: the plugin froze nothing then, and every full collection
    walked the app and the items again (6.7 s of mealie's 25 s run, issue #20)."""
    site = pytester.mkdir("site")
    (site / "sitecustomize.py").write_text(
        "import gc, os\n"
        "gc.freeze()\n"
        "with open(os.path.join(os.getcwd(), 'frozen-at-start.txt'), 'w') as out:\n"
        "    out.write(str(gc.get_freeze_count()))\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    at_exit = _frozen_at_exit_of_a_pytest_command(pytester)
    assert 0 < int((pytester.path / "frozen-at-start.txt").read_text()) < at_exit


def test_a_session_memo_computes_each_key_once_and_keeps_no_failure() -> None:
    """``facts.memo``: one value per key and per memo (a second session's facts start empty), and a
    computation that raised is tried again rather than remembered."""
    first_key: MemoKey[list[int]] = MemoKey("first")
    second_key: MemoKey[list[int]] = MemoKey("second")
    memo, other_session = Memo(), Memo()
    calls: list[str] = []

    def compute(name: str) -> list[int]:
        calls.append(name)
        return [len(calls)]

    value = memo(first_key, lambda: compute("first"))
    assert memo(first_key, lambda: compute("again")) is value
    assert memo(second_key, lambda: compute("second")) == [2]
    assert other_session(first_key, lambda: compute("other")) == [3]
    assert calls == ["first", "second", "other"]

    failing: MemoKey[int] = MemoKey("failing")

    def fail() -> int:
        raise RuntimeError("no value")

    with pytest.raises(RuntimeError):
        memo(failing, fail)
    assert memo(failing, lambda: 7) == 7
