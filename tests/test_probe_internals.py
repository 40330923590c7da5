"""Unit tests of the probe machinery's building blocks: path binding, exchange lookup, value
generation, seeding inserts and the production-mode child launcher."""

from __future__ import annotations

import asyncio
import enum
import inspect
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import create_async_engine

from pytest_fastapi_rules import catalog, registry
from pytest_fastapi_rules.probing import runner
from pytest_fastapi_rules.probing.requests import ProbeRequest, TableIndex, bind_path_params, generate_value
from pytest_fastapi_rules.probing.results import Exchange, ProbeResults
from pytest_fastapi_rules.probing.seeding import Seeder, schema_hints, singular
from pytest_fastapi_rules.production import launcher


def _tables(*names: str) -> list[Table]:
    metadata = MetaData()
    return [Table(name, metadata, Column("id", Integer, primary_key=True)) for name in names]


def _bound(path: str, tables: list[Table]) -> list[str | None]:
    route: Any = SimpleNamespace(path=path)
    return [
        b.table.name if b.table is not None else None for b in bind_path_params(route, TableIndex(tables, {}))
    ]


def test_a_module_prefixed_table_is_bound_when_the_path_names_the_module() -> None:
    tables = _tables("blog_posts", "shop_posts", "shop_orders")
    assert _bound("/api/v1/blog/posts/{post_id}", tables) == ["blog_posts"]
    assert _bound("/api/v1/shop/posts/{post_id}", tables) == ["shop_posts"]
    # Only one table ends in "_orders": no module needed in the path.
    assert _bound("/orders/{order_id}", tables) == ["shop_orders"]
    # Two candidates and nothing in the path to choose between them: no guess.
    assert _bound("/posts/{post_id}", tables) == [None]


def test_an_exact_table_name_wins_over_prefixed_ones() -> None:
    tables = _tables("blog_posts", "posts")
    assert _bound("/blog/posts/{post_id}", tables) == ["posts"]


def test_schema_hints_go_to_the_tables_a_model_is_named_after() -> None:
    from pydantic import BaseModel, Field

    metadata = MetaData()
    tables = [
        Table(name, metadata, Column("id", Integer, primary_key=True), Column("name", String))
        for name in ("users", "posts", "user_profiles", "people")
    ]

    class UserCreate(BaseModel):
        name: str = Field(pattern=r"^[a-z]+$")

    class UserRead(BaseModel):
        name: str = Field(max_length=8)

    class Postgres(BaseModel):  # named after no table: "post" is followed by a lower-case letter
        name: str = Field(min_length=3)

    class User_profileIn(BaseModel):  # "user" and "user_profile" (its class name): both tables
        name: str = Field(min_length=2)

    class AuthorOut(BaseModel):  # its class maps the "people" table
        name: str = Field(max_length=5)

    class Person(BaseModel):  # the whole name is the singular of "people"
        name: str = Field(max_length=6)

    class PostIn(BaseModel):
        title: str = Field(max_length=5)  # no such column

    hints = schema_hints(
        [UserCreate, UserRead, Postgres, User_profileIn, AuthorOut, Person, PostIn],
        {"users": "User", "user_profiles": "User_profile", "people": "Author"},
        tables,
    )
    assert {key: [rule.owner for rule in rules] for key, rules in hints.items()} == {
        ("users", "name"): ["UserCreate", "UserRead", "User_profileIn"],
        ("user_profiles", "name"): ["User_profileIn"],
        ("people", "name"): ["AuthorOut", "Person"],
    }


def test_irregular_plurals_are_singular() -> None:
    assert singular("children") == "child"
    assert singular("d0001_children") == "d0001_child"
    assert singular("people") == "person"
    assert singular("categories") == "category"
    assert _bound("/children/{child_id}", _tables("children")) == ["children"]


def _exchange(target: str, phase: str) -> Exchange:
    return Exchange(phase=phase, target=target, request=ProbeRequest(method="GET", path="/"))


def test_exchanges_by_target_follow_appends_and_phases() -> None:
    results = ProbeResults()
    results.exchanges.append(_exchange("GET /a", "small"))
    assert [e.phase for e in results.for_target("GET /a")] == ["small"]
    results.exchanges.extend([_exchange("GET /b", "small"), _exchange("GET /a", "missing")])
    assert [e.phase for e in results.for_target("GET /a")] == ["small", "missing"]
    assert [e.phase for e in results.for_target("GET /a", "missing")] == ["missing"]
    assert [e.phase for e in results.for_target("GET /a", ("small", "large"))] == ["small"]
    assert results.for_target("GET /nothing") == []
    results.exchanges.clear()
    assert results.for_target("GET /a") == []


def test_generated_values_are_stable_copies_per_annotation() -> None:
    class First(enum.Enum):
        ONLY = "first-only"

    class Second(enum.Enum):
        ONLY = "second-only"

    Second.__name__ = Second.__qualname__ = "First"  # the same repr as First
    assert generate_value(First) is First.ONLY
    assert generate_value(Second) is Second.ONLY
    value = generate_value(list[int])
    assert value == generate_value(list[int])
    value.append(-1)
    assert generate_value(list[int]) != value


def test_seeding_writes_the_databases_keys_into_the_rows_children_point_at() -> None:
    metadata = MetaData()
    parents = Table("parents", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))
    Table(
        "kids",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", ForeignKey("parents.id"), nullable=False),
    )

    async def go() -> tuple[Any, list[int]]:
        engine = create_async_engine("sqlite+aiosqlite://")
        try:
            seeder = Seeder([metadata])
            await seeder.create_schema(engine)
            async with engine.begin() as connection:  # ids that do not start at 1
                await connection.execute(parents.insert().values(id=41, name="gone"))
                await connection.execute(parents.delete())
            seeded = await seeder.seed(engine, 3)
            async with engine.connect() as connection:
                ids = list((await connection.execute(select(parents.c.id))).scalars())
            return seeded, ids
        finally:
            await engine.dispose()

    seeded, ids = asyncio.run(go())
    assert [row["id"] for row in seeded.rows["parents"]] == ids
    assert {row["parent_id"] for row in seeded.rows["kids"]} <= set(ids)
    assert len(seeded.rows["kids"]) == 6


def test_a_table_that_cannot_be_filled_leaves_the_next_ones_filled() -> None:
    """One connection serves a whole fill; a table whose rows the database refuses is marked broken
    with the reason, and the tables after it are still filled (on a new connection)."""
    metadata = MetaData()
    Table("a_first", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))
    Table(
        "b_refused",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(20)),
        CheckConstraint("1 = 0", name="refuses_every_row"),
    )
    last = Table("c_last", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))

    async def go() -> tuple[Any, Seeder, int]:
        engine = create_async_engine("sqlite+aiosqlite://")
        try:
            seeder = Seeder([metadata])
            await seeder.create_schema(engine)
            seeded = await seeder.seed(engine, 3)
            async with engine.connect() as connection:
                count = len(list((await connection.execute(select(last.c.id))).scalars()))
            return seeded, seeder, count
        finally:
            await engine.dispose()

    seeded, seeder, count = asyncio.run(go())
    assert "a generated row cannot be inserted" in seeder.broken["b_refused"]
    assert "refuses_every_row" in seeder.broken["b_refused"]
    assert set(seeded.rows) == {"a_first", "c_last"}
    assert count == len(seeded.rows["c_last"]) == 3


def _module(tmp_path: Path, body: str) -> tuple[str, dict[str, str]]:
    """A module the child runs with ``python -m``, and the environment that lets it find it."""
    (tmp_path / "child_under_test.py").write_text(body)
    return "child_under_test", {"PYTHONPATH": str(tmp_path)}


def test_a_child_started_early_is_read_later(tmp_path: Path) -> None:
    module, env = _module(
        tmp_path, "import os, sys\nprint(os.environ['GREETING'])\nprint('err', file=sys.stderr)\n"
    )
    child = launcher.ChildProcess(module, [], {**env, "GREETING": "hello"}, timeout=30)
    output = child.output()
    assert (output.returncode, output.stdout.strip(), output.stderr.strip()) == (0, "hello", "err")
    assert child.output() is output


def test_a_child_past_its_timeout_is_killed_and_reported(tmp_path: Path) -> None:
    module, env = _module(
        tmp_path, "import sys, time\nprint('started', file=sys.stderr, flush=True)\ntime.sleep(60)\n"
    )
    child = launcher.ChildProcess(module, [], env, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(launcher.ChildTimeout) as caught:
        child.output()
    assert time.monotonic() - started < 30
    assert "started" in caught.value.stderr
    with pytest.raises(launcher.ChildTimeout):
        child.output()


def test_unread_children_are_stopped_at_the_end(tmp_path: Path) -> None:
    module, env = _module(tmp_path, "import time\ntime.sleep(60)\n")
    child = launcher.ChildProcess(module, [], env, timeout=120)
    launcher.stop_unfinished()
    assert child._process.poll() is not None
    assert child not in launcher._UNFINISHED


def test_the_child_is_told_the_parents_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "parent-only"))
    module, env = _module(tmp_path, f"import os\nprint(os.environ[{launcher.SYS_PATH_ENV!r}])\n")
    shown = launcher.ChildProcess(module, [], env, timeout=30).output().stdout.strip()
    assert shown.split(os.pathsep)[0] == str(tmp_path / "parent-only")


SPARE_APP = """
import os

from fastapi import FastAPI

# Set in the parent only after the spare started: the app sees it only if the spare took the
# environment it was handed.
assert os.environ["SPARE_HANDED"] == "at-claim", os.environ.get("SPARE_HANDED")
assert os.getcwd() == os.environ["SPARE_CWD"], os.getcwd()
app = FastAPI(docs_url=None if os.environ.get("ENVIRONMENT") == "production" else "/docs")
"""


def _spare_app(tmp_path: Path) -> Path:
    (tmp_path / "spareapp.py").write_text(SPARE_APP)
    return tmp_path


def test_a_spare_child_runs_with_the_arguments_and_environment_it_is_handed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interpreter started ahead of need (issue #20) is the child the next run of its module
    gets, and it runs in the environment and directory of that moment, not of its start."""
    from pytest_fastapi_rules.production.facts import read_child, start_child
    from pytest_fastapi_rules.production.protocol import CHILD_MODULE

    app_dir = _spare_app(tmp_path)
    monkeypatch.syspath_prepend(str(app_dir))
    launcher.start_spare(CHILD_MODULE)
    spare = launcher._SPARES[(CHILD_MODULE, False)].process
    monkeypatch.setenv("SPARE_HANDED", "at-claim")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("SPARE_CWD", str(elsewhere))
    env = {"ENVIRONMENT": "production"}
    child = start_child(spec="spareapp:app", app_dir=app_dir, env=env)

    assert child._process is spare
    facts = read_child(child, env)
    assert facts.docs_status["/docs"] == 404
    assert launcher._SPARES == {}


def test_a_spare_started_with_other_interpreter_variables_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PYTHON*`` variables act when an interpreter starts: a spare started without the ones a
    child now needs is ended, and a new child started."""
    from pytest_fastapi_rules.production.facts import read_child, start_child
    from pytest_fastapi_rules.production.protocol import CHILD_MODULE

    app_dir = _spare_app(tmp_path)
    monkeypatch.syspath_prepend(str(app_dir))
    launcher.start_spare(CHILD_MODULE)
    spare = launcher._SPARES[(CHILD_MODULE, False)].process
    monkeypatch.setenv("SPARE_HANDED", "at-claim")
    monkeypatch.setenv("SPARE_CWD", os.getcwd())
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    env = {"ENVIRONMENT": "production"}
    child = start_child(spec="spareapp:app", app_dir=app_dir, env=env)

    assert child._process is not spare and spare.poll() is not None
    assert read_child(child, env).docs_status["/docs"] == 404


def test_an_unclaimed_spare_ends_when_told(tmp_path: Path) -> None:
    """A spare nobody hands a run to is ended at once: nothing is left running, nothing waits."""
    from pytest_fastapi_rules.production.protocol import CHILD_MODULE

    launcher.start_spare(CHILD_MODULE)
    spare = launcher._SPARES[(CHILD_MODULE, False)].process
    launcher.stop_spares()
    assert spare.poll() is not None and spare.returncode < 0  # killed, not waited for
    assert launcher._SPARES == {}


def test_a_remembered_failure_raised_again_keeps_the_traceback_of_its_first_raise() -> None:
    """Every item that depends on a failed probe run raises the same cached failure: its
    traceback must not grow with each raise (a thousand-route app printed a gigabyte)."""
    import traceback

    from pytest_fastapi_rules.tracebacks import raise_again

    def fail() -> None:
        raise ValueError("the first time")

    try:
        fail()
    except ValueError as exc:
        remembered = exc
    depths = []
    for _ in range(5):
        try:
            raise_again(remembered)
        except ValueError as again:
            assert again is remembered
            depths.append(len(traceback.extract_tb(again.__traceback__)))
    assert len(set(depths)) == 1, depths
    assert traceback.extract_tb(remembered.__traceback__)[-1].name == "fail"


def test_the_phases_rules_declare_are_the_phases_the_run_has() -> None:
    """A rule's ``phases`` name the run's phases: a misspelt one would leave the rule's items green
    when the phase they read crashes, and a phase no rule declares would crash unreported."""
    catalog.load_rules()
    run = set(re.findall(r'self\._phase\("([a-z-]+)"\)', inspect.getsource(runner)))
    assert run and set(registry.phase_rules()) == run


@pytest.mark.parametrize(
    ("declared", "refusal"),
    [
        ({"phases": ("gets",)}, "only a rule that reads the probes"),
        ({"runtime": lambda context: []}, "runtime half"),
    ],
)
def test_only_a_rule_that_reads_the_probes_declares_what_the_run_feeds_it(
    declared: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        registry.rule(
            code="FR999",
            name="not-a-probe-rule",
            severity=registry.Severity.ERROR,
            scope=registry.Scope.APP,
            basis=registry.Basis.APP,
            section="-",
            summary="-",
            rationale="-",
            fix="-",
            **declared,
        )


def test_is_subclass_reads_the_mro_without_asking_the_base() -> None:
    """``is_subclass`` answers from the class's MRO: an ABC base's ``__subclasscheck__`` (before
    pydantic 2.10, a walk of every model class for each class that is not one; issue #20) is never
    called, and generic aliases and non-classes are False."""
    import abc

    from pydantic import BaseModel

    from pytest_fastapi_rules.facts import is_subclass

    asked: list[type] = []

    class CountingMeta(abc.ABCMeta):
        def __subclasscheck__(cls, subclass: type) -> bool:
            asked.append(subclass)
            return super().__subclasscheck__(subclass)

    class Base(metaclass=CountingMeta):
        pass

    class Child(Base):
        pass

    class Plain:
        pass

    class Model(BaseModel):
        x: int

    assert is_subclass(Child, Base) and is_subclass(Base, Base)
    assert not is_subclass(Plain, Base)
    assert is_subclass(Plain, (Base, Plain)) and not is_subclass(Plain, (Base, Model))
    assert is_subclass(Model, BaseModel) and not is_subclass(Plain, BaseModel)
    assert not is_subclass(list[int], list) and not is_subclass("Model", BaseModel)
    assert asked == []


DEFINITION_LINES = """import functools


def plain():
    return 1


@functools.lru_cache(
    maxsize=None,
)
async def decorated():
    return 2


@functools.lru_cache
def outer():
    @functools.wraps(plain)
    def inner():
        return 3

    return inner


named = lambda: 4  # noqa: E731


@functools.lru_cache
async def only_docstring():
    '''Its body is this line alone.'''
"""


def test_a_functions_location_is_its_def_line_below_the_decorators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from the function's code and its file's cached lines (issue #20: without tokenizing the
    whole function); the same line ``inspect.getsourcelines`` gave, as linters report it."""
    import importlib

    from pytest_fastapi_rules.facts import _definition_line

    (tmp_path / "deflines.py").write_text(DEFINITION_LINES)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("deflines")
    found = {
        "plain": _definition_line(module.plain),
        "decorated": _definition_line(module.decorated.__wrapped__),
        "outer": _definition_line(module.outer.__wrapped__),
        "inner": _definition_line(module.outer()),
        "named": _definition_line(module.named),
        "only_docstring": _definition_line(module.only_docstring.__wrapped__),
    }
    assert found == {"plain": 4, "decorated": 11, "outer": 16, "inner": 18, "named": 24, "only_docstring": 28}


def test_a_factorys_provider_map_is_built_once_and_follows_its_generators() -> None:
    """The body factory keeps its provider map (polyfactory rebuilt it for every field) and builds
    a new one when its ``__random__`` is replaced, so a body never draws from a stale generator."""
    import random

    from pydantic import BaseModel

    from pytest_fastapi_rules.probing import requests

    class Item(BaseModel):
        quantity: int
        name: str

    factory: Any = requests._ProbeFactory.create_factory(Item, **requests._seeded("item"))
    first = factory.get_provider_map()
    assert factory.get_provider_map()[str] is first[str]  # the same map, not a rebuilt one
    assert factory.__dict__["_probe_provider_map"][0] is factory.__random__
    factory.__random__ = random.Random(7)
    expected = random.Random(7).randint(1, 100)
    assert factory.get_provider_map()[int]() == expected
    # The same body as polyfactory's own map gives, for the same seed.
    seeded: Any = requests._ProbeFactory.create_factory(Item, **requests._seeded("again"))
    cached_body = seeded.build().model_dump()
    uncached: Any = requests._ProbeFactory.create_factory(Item, **requests._seeded("again"))
    uncached._probe_provider_map = ("stale", "stale", {})
    assert uncached.build().model_dump() == cached_body
