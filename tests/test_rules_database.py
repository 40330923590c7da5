"""The database rules (FR5xx): FR501-FR508, engines, session factories and ORM models (and the
production-mode child process); FR511's connection loss at runtime, on PostgreSQL.

FR509 and FR510 (SQL per request, at runtime) are judged by their variants in
test_probes_variants.py and with other families' rules in test_probes.py.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_fastapi_rules.facts import Memo
from pytest_fastapi_rules.options import RulesOptions
from pytest_fastapi_rules.production import facts as production
from pytest_fastapi_rules.production.facts import (
    ProductionFacts,
    ProductionModeError,
    read_child,
    start_child,
)
from tests.conftest import BLOG, line_of, only

OWN_CODES = ("FR501", "FR502", "FR503", "FR504", "FR505", "FR506", "FR507", "FR508")
SELECT_OWN = "--fastapi-rules-select=" + ",".join(OWN_CODES)


# -- the conforming app ---------------------------------------------------------------------------


def test_conforming_blog_passes_every_database_rule(blog: Path, run_rules: Any) -> None:
    run = run_rules("src.main:app", SELECT_OWN)
    for code in OWN_CODES:
        if code == "FR502":
            continue  # on SQLite; judged on PostgreSQL below
        assert run.outcomes(code) == {"app": "passed"}, (code, run.results_for(code), run.output)
    # A SQLite file has no server that times connections out or runs out of them (mealie runs on
    # one): the pool table does not apply, and the skip says why.
    pool = only(run.results_for("FR502"))
    assert pool["outcome"] == "skipped", pool
    assert "every pooled engine is SQLite (src.database.sessionmanager._engine)" in pool["message"], pool


def test_conforming_blog_on_postgresql_passes_fr502(blog: Path, app_database: Any, run_rules: Any) -> None:
    """The blog's engine, configured as the rulebook's template (5, 10, 30, 3600), on PostgreSQL."""
    run = run_rules("src.main:app", "--fastapi-rules-select=FR501,FR502")
    assert run.outcomes("FR502") == {"app": "passed"}, run.output
    assert run.outcomes("FR501") == {"app": "passed"}, run.output


def test_production_child_reports_engines_and_docs(blog: Path) -> None:
    """The child's document: the blog's engine with echo off, and the docs hidden in production."""
    production_env = {"ENVIRONMENT": "production"}
    facts = read_child(start_child(spec="src.main:app", app_dir=blog, env=production_env), production_env)
    assert [(e.where, e.echo, e.pool) for e in facts.engines] == [
        ("src.database.sessionmanager._engine", False, "AsyncAdaptedQueuePool")
    ]
    assert facts.docs_status == {"/docs": 404, "/redoc": 404, "/openapi.json": 404}
    assert facts.docs_errors == {}
    # Outside production the same app shows its docs: the environment reached the child.
    development_env = {"ENVIRONMENT": "development"}
    development = read_child(
        start_child(spec="src.main:app", app_dir=blog, env=development_env), development_env
    )
    assert development.docs_status["/openapi.json"] == 200


# -- one violating variant per rule ---------------------------------------------------------------

VARIANTS = [
    # (module, code, message essence, line pattern in the variant)
    (
        "fr501_engine_without_pre_ping",
        "FR501",
        "engine `variants.fr501_engine_without_pre_ping.reports_engine` (sqlite+aiosqlite) is created "
        "without pool_pre_ping=True",
        r"^reports_engine =",
    ),
    (
        "fr502_pool_recycle_missing",
        "FR502",
        "pool_recycle=-1 (connections are never recycled)",
        r"^reports_engine =",
    ),
    (
        "fr503_echo_in_production",
        "FR503",
        "has echo=True with ENVIRONMENT=production set",
        r"^reports_engine =",
    ),
    ("fr504_expire_on_commit_default", "FR504", "keeps expire_on_commit=True", r"^ReportsSession ="),
    (
        "fr505_column_without_mapped",
        "FR505",
        "without a Mapped[...] annotation: action",
        r"^class AuditEntry",
    ),
    (
        "fr506_base_without_async_attrs",
        "FR506",
        "does not mix in AsyncAttrs (models: PageView)",
        r"^class AnalyticsBase",
    ),
    (
        "fr507_metadata_without_convention",
        "FR507",
        "no naming convention for uq, ck, fk, pk",
        r"^class ArchiveBase",
    ),
    (
        "fr508_relationship_default_lazy",
        "FR508",
        'lazy-load implicitly (lazy="select"): user',
        r"^class Bookmark",
    ),
]


@pytest.mark.parametrize(
    ("module", "code", "essence", "line_pattern"), VARIANTS, ids=[v[1] for v in VARIANTS]
)
def test_variant_fails_only_its_rule(
    blog: Path, run_rules: Any, module: str, code: str, essence: str, line_pattern: str
) -> None:
    run = run_rules(f"variants.{module}:app")
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [(code, "app")], (failing, run.output)
    finding = only(run.findings(code))
    assert essence in finding["message"], finding
    file = f"variants/{module}.py"
    assert finding["location"]["file"] == file, finding
    assert finding["location"]["line"] == line_of(blog / file, line_pattern), finding
    assert code in run.output
    if failing[0]["outcome"] == "failed":  # warnings only print their text under --fastapi-rules-strict
        assert "fix: " in run.output


# -- apps without a database, and engines discovery cannot see ------------------------------------

NO_DB_APP = """
    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}
"""


def test_app_without_database_skips_every_rule_with_a_reason(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(nodbapp=textwrap.dedent(NO_DB_APP))
    run = run_rules("nodbapp:app", SELECT_OWN)
    results = {r["code"]: r for r in run.report["results"] if r["code"] in OWN_CODES}
    assert sorted(results) == list(OWN_CODES)
    assert {code: r["outcome"] for code, r in results.items()} == dict.fromkeys(OWN_CODES, "skipped")
    for code in ("FR501", "FR502", "FR503"):
        assert "fastapi_rules_engines" in results[code]["message"], results[code]
    assert "ENVIRONMENT=production" in results["FR503"]["message"]
    assert "fastapi_rules_session_factories" in results["FR504"]["message"]
    for code in ("FR505", "FR506", "FR507", "FR508"):
        assert "no SQLAlchemy ORM models" in results[code]["message"], results[code]
    assert run.failing() == []


CLOSURE_APP = """
    from contextlib import asynccontextmanager
    from types import SimpleNamespace

    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import create_async_engine

    resources = SimpleNamespace(engine=None)


    @asynccontextmanager
    async def lifespan(app):
        engine = create_async_engine("sqlite+aiosqlite:///closure.db", pool_recycle=1800)
        resources.engine = engine
        yield
        await engine.dispose()


    app = FastAPI(lifespan=lifespan)
"""


def test_engine_named_in_ini_is_checked(pytester: pytest.Pytester, run_rules: Any) -> None:
    """An engine only reachable through a plain namespace: discovery misses it, the ini names it."""
    pytester.makepyfile(closureapp=textwrap.dedent(CLOSURE_APP))
    pytester.makeini("[pytest]\nfastapi_rules_engines = closureapp:resources.engine\n")
    run = run_rules("closureapp:app", "--fastapi-rules-select=FR501,FR502,FR503")
    finding = only(run.findings("FR501"))
    assert finding["message"].startswith("engine `closureapp:resources.engine` (sqlite+aiosqlite)")
    assert finding["location"]["file"] == "closureapp.py"
    assert finding["location"]["line"] == line_of(pytester.path / "closureapp.py", r"^resources =")
    assert run.outcomes("FR502") == {"app": "skipped"}  # SQLite: no server to time connections out
    # The production child resolves the same ini path (and finds echo off there).
    assert run.outcomes("FR503") == {"app": "passed"}


def test_unresolvable_ini_path_is_a_clear_error(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(nodbapp=textwrap.dedent(NO_DB_APP))
    # The module exists, the attribute does not (it may be one that only exists once the app ran).
    pytester.makeini("[pytest]\nfastapi_rules_engines = nodbapp:nosuch_engine\n")
    run = run_rules("nodbapp:app", "--fastapi-rules-select=FR501,FR503")
    for code in ("FR501", "FR503"):
        result = only(run.results_for(code))
        assert result["outcome"] == "error", result
    assert "cannot resolve 'nodbapp:nosuch_engine'" in run.output
    assert "internal error" not in run.output
    assert "FR503 echo-off-in-production: cannot check:" in run.output


def test_an_ini_path_whose_module_does_not_exist_is_one_collection_error(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(nodbapp=textwrap.dedent(NO_DB_APP))
    pytester.makeini("[pytest]\nfastapi_rules_engines = nosuchmodule:engine\n")
    run = run_rules("nodbapp:app", "--fastapi-rules-select=FR501,FR503")
    assert run.result.ret == pytest.ExitCode.INTERRUPTED
    assert (
        "fastapi_rules_engines = nosuchmodule:engine: the module 'nosuchmodule' cannot be imported"
        in run.output
    )
    assert "internal error" not in run.output


# -- locations: where the object is created, with a line -----------------------------------------

SHOP_PACKAGE = {
    "shop/__init__.py": "",
    "shop/api/__init__.py": "",
    # Sorts before shop.core.db, and only imports what that module creates.
    "shop/api/deps.py": "from shop.core.db import SessionLocal, engine  # noqa: F401\n",
    "shop/core/__init__.py": "",
    "shop/core/db.py": (
        "from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine\n\n"
        'engine = create_async_engine("sqlite+aiosqlite:///shop.db", pool_recycle=1800)\n'
        "SessionLocal = async_sessionmaker(engine, autoflush=False)\n"
    ),
    "shop/core/setup.py": (
        "from fastapi import FastAPI\n\n\n"
        "def create_application() -> FastAPI:\n"
        '    """The app factory, in another module than the app."""\n'
        "    application = FastAPI()\n"
        "    return application\n"
    ),
    "shop/main.py": (
        "from shop.api import deps  # noqa: F401\n"
        "from shop.core.setup import create_application\n\n"
        "app = create_application()\n"
    ),
}


def test_objects_point_where_they_are_created(pytester: pytest.Pytester, run_rules: Any) -> None:
    """An engine met first in a module that imports it is named and located after the module that
    creates it; an app built by a factory in another module points at that factory's FastAPI(."""
    for name, text in SHOP_PACKAGE.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    db = pytester.path / "shop/core/db.py"
    run = run_rules("shop.main:app", "--fastapi-rules-select=FR501,FR504,FR104,FR105")
    engine = only(run.findings("FR501"))
    assert engine["message"].startswith("engine `shop.core.db.engine` (sqlite+aiosqlite)"), engine
    assert (engine["location"]["file"], engine["location"]["line"]) == (
        "shop/core/db.py",
        line_of(db, "^engine ="),
    )
    factory = only(run.findings("FR504"))
    assert factory["message"].startswith("session factory `shop.core.db.SessionLocal` keeps expire_on_commit")
    assert factory["location"]["line"] == line_of(db, "^SessionLocal =")
    setup = pytester.path / "shop/core/setup.py"
    for code in ("FR104", "FR105"):
        finding = only(run.findings(code))
        assert (finding["location"]["file"], finding["location"]["line"]) == (
            "shop/core/setup.py",
            line_of(setup, "application = FastAPI"),
        ), finding


CONTEXT_PROXY_APP = """
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine


    class ContextDoesNotExistError(RuntimeError):
        pass


    class ContextProxy:
        \"\"\"A request-context global (fastapi_best_architecture's ``ctx``): outside a request,
        every attribute, ``__class__`` included, raises.\"\"\"

        def __getattribute__(self, name):
            raise ContextDoesNotExistError(name)


    ctx = ContextProxy()
    engine = create_async_engine("sqlite+aiosqlite:///proxy.db", pool_pre_ping=True)
    SessionLocal = async_sessionmaker(engine)
    app = FastAPI()
"""


def test_a_global_that_raises_on_every_attribute_is_no_engine(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """Locating the factory reads every global of the app's modules; a context proxy there once
    turned FR504 into an internal error."""
    path = pytester.makepyfile(proxyapp=textwrap.dedent(CONTEXT_PROXY_APP))
    run = run_rules("proxyapp:app", "--fastapi-rules-select=FR501,FR504")
    assert run.outcomes("FR501") == {"app": "passed"}, run.output
    factory = run.findings("FR504")[0]
    assert factory["message"].startswith("session factory `proxyapp.SessionLocal` keeps expire_on_commit")
    assert factory["location"]["line"] == line_of(path, "^SessionLocal =")
    assert "internal error" not in run.output


LIFESPAN_STATE_APP = """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine


    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_async_engine("sqlite+aiosqlite:///state.db", pool_recycle=1800)
        factory = async_sessionmaker(engine, expire_on_commit=False)
        yield {"db": factory}
        await engine.dispose()


    app = FastAPI(lifespan=lifespan)
"""


@pytest.mark.parametrize("selection", ["FR501,FR504", "FR103,FR501,FR504"])
def test_lifespan_state_objects_point_into_the_lifespan(
    pytester: pytest.Pytester, run_rules: Any, selection: str
) -> None:
    """With a probe rule first (FR103, as in the rules' order) the app has stopped when FR501 and
    FR504 place what they judge, and its lifespan state is gone: that was an internal error."""
    path = pytester.makepyfile(stateapp=textwrap.dedent(LIFESPAN_STATE_APP))
    run = run_rules("stateapp:app", f"--fastapi-rules-select={selection}")
    if "FR103" in selection:
        assert run.outcomes("FR103") == {"app": "skipped"}, run.output  # no route: the probe run ran, unused
    engine = only(run.findings("FR501"))
    assert engine["message"].startswith("engine `lifespan state['db'] (bind)` (sqlite+aiosqlite)")
    assert engine["location"]["line"] == line_of(path, "engine = create_async_engine")
    autoflush = only(run.findings("FR504"))
    assert autoflush["message"] == "session factory `lifespan state['db']` keeps autoflush=True"
    assert autoflush["location"]["line"] == line_of(path, "factory = async_sessionmaker")
    assert "internal error" not in run.output


def test_the_probe_runs_start_serves_the_engine_rules(pytester: pytest.Pytester, run_rules: Any) -> None:
    """The probe run records the engines and factories while its app runs: the lifespan starts once.

    A startup can cost seconds on a real app (mealie runs its migrations); FR501 and FR504 used to
    start it a second time.
    """
    counting = LIFESPAN_STATE_APP.replace(
        "engine = create_async_engine(",
        'open("starts.txt", "a").write("start\\n")\n        engine = create_async_engine(',
    )
    pytester.makepyfile(stateapp=textwrap.dedent(counting))
    starts = pytester.path / "starts.txt"
    run = run_rules("stateapp:app", "--fastapi-rules-select=FR103,FR501,FR504")
    assert starts.read_text().splitlines() == ["start"], run.output
    engine = only(run.findings("FR501"))
    assert engine["message"].startswith("engine `lifespan state['db'] (bind)` (sqlite+aiosqlite)")
    factory = only(run.findings("FR504"))
    assert factory["message"] == "session factory `lifespan state['db']` keeps autoflush=True"

    # Without the probe run, the engine rules start the app themselves, once, and judge the same.
    starts.unlink()
    run = run_rules("stateapp:app", "--fastapi-rules-select=FR501,FR504")
    assert starts.read_text().splitlines() == ["start"], run.output
    assert only(run.findings("FR501")) == engine
    assert only(run.findings("FR504")) == factory


# -- false positives and the less common shapes ----------------------------------------------------

SYNC_APP = """
    from fastapi import FastAPI
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker
    from sqlalchemy.pool import NullPool

    engine = create_engine("sqlite:///sync.db", pool_pre_ping=True, pool_recycle=600)
    # Behind PgBouncer: no pool of our own, so nothing to pre-ping or recycle.
    bouncer_engine = create_engine("sqlite:///bouncer.db", poolclass=NullPool)
    # A SQLite file has no server to time connections out or to run out of them (mealie's
    # engine): FR502's table is about servers. Creating an engine connects to nothing.
    file_engine = create_engine("sqlite:///file.db", pool_pre_ping=True)
    big_engine = create_engine(
        "postgresql+psycopg://app@127.0.0.1:9/big", pool_pre_ping=True, pool_size=50,
        max_overflow=0, pool_recycle=7200,
    )
    SessionLocal = sessionmaker(engine)

    app = FastAPI()
"""


def test_sync_engines_null_pool_and_pool_bounds(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(syncapp=textwrap.dedent(SYNC_APP))
    run = run_rules("syncapp:app", "--fastapi-rules-select=FR501,FR502,FR504")
    assert run.outcomes("FR501") == {"app": "passed"}  # NullPool has no idle connection to ping
    assert run.outcomes("FR502") == {"app": "warning"}
    finding = only(run.findings("FR502"))
    assert finding["message"] == (
        "engine `syncapp.big_engine` (postgresql+psycopg) has pool_recycle=7200 (more than 3600 s); "
        "pool_size=50 (expected 2-20); max_overflow=0 (expected 5-20)"
    )
    # A sync sessionmaker reloads expired attributes transparently: the rule is about AsyncSession.
    assert run.outcomes("FR504") == {"app": "skipped"}
    assert "make sync sessions" in only(run.results_for("FR504"))["message"]


ORM_APP = '''
    from __future__ import annotations

    from datetime import datetime

    import sqlalchemy.orm as so
    from fastapi import FastAPI
    from sqlalchemy import (
        CheckConstraint, Column, ForeignKey, ForeignKeyConstraint, Index, Integer, MetaData,
        PrimaryKeyConstraint, String, Table, UniqueConstraint, func,
    )
    from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession, async_sessionmaker, create_async_engine

    engine = create_async_engine("sqlite+aiosqlite:///orm.db", pool_pre_ping=True, pool_recycle=600)
    SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
    # SQLAlchemy 1.4's spelling of an async factory
    LegacySession = so.sessionmaker(engine, class_=AsyncSession)

    # Constraint classes as convention keys are as good as "ix", "uq"...
    convention = {
        Index: "ix_%(column_0_label)s",
        UniqueConstraint: "uq_%(table_name)s_%(column_0_name)s",
        CheckConstraint: "ck_%(table_name)s_%(constraint_name)s",
        ForeignKeyConstraint: "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        PrimaryKeyConstraint: "pk_%(table_name)s",
    }


    class Base(so.DeclarativeBase):
        """No AsyncAttrs here: every model mixes it in itself."""

        metadata = MetaData(naming_convention=convention)


    class TimestampMixin:
        created_at: so.Mapped[datetime] = so.mapped_column(server_default=func.now())

        @so.declared_attr
        def updated_by(cls) -> so.Mapped[int | None]:
            return so.mapped_column(default=None)


    class Author(AsyncAttrs, TimestampMixin, Base):
        __tablename__ = "authors"

        id: so.Mapped[int] = so.mapped_column(primary_key=True)
        kind: so.Mapped[str]
        name: so.Mapped[str] = so.mapped_column(String(50))
        name_upper = so.column_property(func.upper(name))
        books: so.Mapped[list[Book]] = so.relationship(back_populates="author", lazy="selectin")
        notes: so.WriteOnlyMapped[Note] = so.relationship()

        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "author"}


    class Editor(Author):
        """Joined inheritance: the inherited columns and relationships are Author's business."""

        __tablename__ = "editors"

        id: so.Mapped[int] = so.mapped_column(ForeignKey("authors.id"), primary_key=True)

        __mapper_args__ = {"polymorphic_identity": "editor"}


    class Book(AsyncAttrs, Base):
        __tablename__ = "books"

        id: so.Mapped[int] = so.mapped_column(primary_key=True)
        author_id: so.Mapped[int] = so.mapped_column(ForeignKey("authors.id"))
        author: so.Mapped[Author] = so.relationship(back_populates="books", lazy="raise_on_sql")


    class Note(AsyncAttrs, Base):
        """A table given ready-made: its columns have no declaration to annotate."""

        __table__ = Table(
            "notes",
            Base.metadata,
            Column("id", Integer, primary_key=True),
            Column("author_id", ForeignKey("authors.id")),
            Column("body", String(500)),
        )


    app = FastAPI()
'''


def test_orm_shapes_that_conform_and_async_factories(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(ormapp=textwrap.dedent(ORM_APP))
    run = run_rules("ormapp:app", "--fastapi-rules-select=FR504,FR505,FR506,FR507,FR508")
    for code in ("FR505", "FR506", "FR507", "FR508"):
        assert run.outcomes(code) == {"app": "passed"}, (code, run.results_for(code), run.output)
    assert run.outcomes("FR504") == {"app": "failed"}
    findings = [(f["message"], f["severity"]) for f in run.findings("FR504")]
    assert findings == [
        ("session factory `ormapp.SessionLocal` keeps autoflush=True", "warning"),
        (
            "session factory `ormapp.LegacySession` keeps expire_on_commit=True: objects read after "
            "commit trigger a lazy load (MissingGreenlet)",
            "error",
        ),
        ("session factory `ormapp.LegacySession` keeps autoflush=True", "warning"),
    ]


LEGACY_APP = """
    from fastapi import FastAPI
    from sqlalchemy import Column, ForeignKey, Integer, String
    from sqlalchemy.orm import declarative_base, declared_attr, relationship

    Base = declarative_base()


    class AuditMixin:
        @declared_attr
        def created_by(cls):
            return Column(Integer)


    class Owner(Base):
        __tablename__ = "legacy_owners"
        __allow_unmapped__ = True

        id = Column(Integer, primary_key=True)
        name: str = Column(String(50))
        items = relationship("Item", back_populates="owner", lazy="selectin")


    class Item(AuditMixin, Base):
        __tablename__ = "legacy_items"

        id = Column(Integer, primary_key=True)
        owner_id = Column(ForeignKey("legacy_owners.id"))
        owner = relationship(Owner, back_populates="items", lazy=True)


    app = FastAPI()
"""


def test_legacy_declarative_models(pytester: pytest.Pytester, run_rules: Any) -> None:
    """1.x-style models: every ORM rule has something to say, about the right class and place."""
    pytester.makepyfile(legacyapp=textwrap.dedent(LEGACY_APP))
    run = run_rules("legacyapp:app", "--fastapi-rules-select=FR505,FR506,FR507,FR508")
    source = pytester.path / "legacyapp.py"
    messages = {
        code: [(f["message"], f["location"]["line"]) for f in run.findings(code)] for code in OWN_CODES
    }
    assert messages["FR505"] == [
        (
            "model `legacyapp.Item` has columns without a Mapped[...] annotation: "
            "id, owner_id, created_by (declared in `AuditMixin`)",
            line_of(source, r"^class Item"),
        ),
        (
            "model `legacyapp.Owner` has columns without a Mapped[...] annotation: "
            "id, name (annotated `str`)",
            line_of(source, r"^class Owner"),
        ),
    ]
    # declarative_base() makes a class whose module is SQLAlchemy's: the app's global names it.
    assert messages["FR506"] == [
        (
            "declarative base `legacyapp.Base` does not mix in AsyncAttrs (models: Item, Owner)",
            line_of(source, r"^Base ="),
        )
    ]
    assert messages["FR507"] == [
        (
            "the MetaData of base `legacyapp.Base` has no naming convention for uq, ck, fk, pk "
            "(SQLAlchemy's default only names indexes)",
            line_of(source, r"^Base ="),
        )
    ]
    assert messages["FR508"] == [
        (
            'model `legacyapp.Item` has relationships that lazy-load implicitly (lazy="select"): owner',
            line_of(source, r"^class Item"),
        )
    ]


DYNAMIC_APP = """
    from sqlalchemy import ForeignKey
    from sqlalchemy.ext.asyncio import AsyncAttrs
    from sqlalchemy.orm import (
        DeclarativeBase, DynamicMapped, Mapped, WriteOnlyMapped, mapped_column, relationship
    )
    from fastapi import FastAPI


    class Base(AsyncAttrs, DeclarativeBase):
        pass


    class Board(Base):
        __tablename__ = "boards"

        id: Mapped[int] = mapped_column(primary_key=True)
        pins: DynamicMapped["Pin"] = relationship(lazy="dynamic", viewonly=True)
        pin_log: WriteOnlyMapped["Pin"] = relationship(lazy="write_only")
        hidden: Mapped[list["Pin"]] = relationship(lazy="noload", viewonly=True)


    class Pin(Base):
        __tablename__ = "pins"

        id: Mapped[int] = mapped_column(primary_key=True)
        board_id: Mapped[int] = mapped_column(ForeignKey("boards.id"))


    app = FastAPI()
"""


def test_dynamic_relationships_query_implicitly_fr508(pytester: pytest.Pytester, run_rules: Any) -> None:
    """`lazy="dynamic"` runs a SELECT when the attribute is iterated: the implicit load FR508 is
    about. `write_only` and `noload` never load implicitly: explicit strategies."""
    pytester.makepyfile(dynamicapp=textwrap.dedent(DYNAMIC_APP))
    run = run_rules("dynamicapp:app", "--fastapi-rules-select=FR508")
    finding = only(run.findings("FR508"))
    assert finding["message"] == (
        "model `dynamicapp.Board` has relationships that query implicitly when read "
        '(lazy="dynamic", a legacy strategy): pins'
    )
    assert finding["fix"].startswith('Declare `lazy="write_only"`')
    assert finding["location"]["line"] == line_of(pytester.path / "dynamicapp.py", r"^class Board")


def _dispose_registries_of(module_name: str) -> None:
    sa_mapper = importlib.import_module("sqlalchemy.orm.mapper")
    registries = list(getattr(sa_mapper, "_mapper_registries", {}))
    assert registries, "SQLAlchemy no longer keeps _mapper_registries: update this cleanup"
    for registry in registries:
        if any(m.class_.__module__ == module_name for m in registry.mappers):
            registry.dispose()


def test_broken_models_are_the_apps_error(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(
        brokenapp=textwrap.dedent(
            """
            from fastapi import FastAPI
            from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


            class Base(DeclarativeBase):
                pass


            class Thing(Base):
                __tablename__ = "broken_things"

                id: Mapped[int] = mapped_column(primary_key=True)
                parts: Mapped[list["Part"]] = relationship(lazy="raise")


            app = FastAPI()
            """
        )
    )
    run = run_rules("brokenapp:app", "--fastapi-rules-select=FR508")
    _dispose_registries_of("brokenapp")  # a later configure_mappers() in this process must not see it
    assert only(run.results_for("FR508"))["outcome"] == "error"
    assert "cannot check: SQLAlchemy cannot configure the app's ORM models" in run.output
    assert "internal error" not in run.output


def test_autoflush_alone_is_a_warning(pytester: pytest.Pytester, run_rules: Any) -> None:
    """A factory with only autoflush left on warns: the item is not failed (without --strict)."""
    pytester.makepyfile(
        flushapp=textwrap.dedent(
            """
            from fastapi import FastAPI
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

            engine = create_async_engine("sqlite+aiosqlite:///flush.db", pool_pre_ping=True)
            SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
            app = FastAPI()
            """
        )
    )
    run = run_rules("flushapp:app", "--fastapi-rules-select=FR504")
    assert run.outcomes("FR504") == {"app": "warning"}
    assert run.result.ret == 0


# -- production mode failures ----------------------------------------------------------------------

STRICT_SETTINGS_APP = """
    from typing import Literal

    from fastapi import FastAPI
    from pydantic_settings import BaseSettings
    from sqlalchemy.ext.asyncio import create_async_engine


    class Settings(BaseSettings):
        ENVIRONMENT: Literal["Development", "Production", "Testing"] = "Development"
        SECRET_KEY: str = "changethis"


    settings = Settings()
    print("starting strictapp")
    if settings.ENVIRONMENT == "Production" and settings.SECRET_KEY == "changethis":
        raise ValueError("SECRET_KEY must be changed in production")
    engine = create_async_engine(
        "sqlite+aiosqlite:///strict.db", pool_pre_ping=True, echo=settings.ENVIRONMENT == "Production"
    )
    app = FastAPI()
"""


def test_production_value_comes_from_the_apps_settings(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default ENVIRONMENT=production becomes the app's own spelling (`Production`); when the
    app then refuses to start (a default secret), the warning rule FR503 skips with the reason, the
    app's output and how to configure production mode, instead of failing the run."""
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    pytester.makepyfile(strictapp=textwrap.dedent(STRICT_SETTINGS_APP))
    run = run_rules("strictapp:app", "--fastapi-rules-select=FR503")
    result = only(run.results_for("FR503"))
    assert result["outcome"] == "skipped", result
    message = result["message"]
    assert "production mode could not be checked" in message
    assert "ENVIRONMENT=Production, the production value of `strictapp.Settings.ENVIRONMENT`" in message
    assert "SECRET_KEY must be changed in production" in message  # the app's output, its tail
    assert "fastapi_rules_production_env =\n    ENVIRONMENT=Production" in message
    assert run.result.ret == 0
    assert "internal error" not in run.output

    # Given what production needs, the check runs, with the value chosen from the settings.
    monkeypatch.setenv("SECRET_KEY", "a-real-production-secret")
    run = run_rules("strictapp:app", "--fastapi-rules-select=FR503")
    finding = only(run.findings("FR503"))
    assert finding["message"].startswith(
        "engine `strictapp.engine` has echo=True with ENVIRONMENT=Production (the production value "
        "of `strictapp.Settings.ENVIRONMENT`, Literal['Development', 'Production', 'Testing']; "
        "fastapi_rules_production_env overrides it) set"
    ), finding
    assert finding["location"]["file"] == "strictapp.py"
    assert finding["location"]["line"] == line_of(pytester.path / "strictapp.py", "^engine =")


def test_production_failure_keeps_the_severity_the_user_gave(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit value is used as is; the message names the values the app accepts. A rule the
    user raised to error keeps the error: it cannot vouch for what it guards."""
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    pytester.makepyfile(strictapp=textwrap.dedent(STRICT_SETTINGS_APP))
    pytester.makeini(
        "[pytest]\nfastapi_rules_production_env = ENVIRONMENT=prod\nfastapi_rules_severity = FR503=error\n"
    )
    run = run_rules("strictapp:app", "--fastapi-rules-select=FR503")
    assert only(run.results_for("FR503"))["outcome"] == "error"
    assert "the app's settings reject ENVIRONMENT=prod" in run.output
    assert (
        "The app's `strictapp.Settings.ENVIRONMENT` accepts only 'Development', 'Production', 'Testing'."
        in run.output
    )
    assert "fastapi_rules_production_env =\n    ENVIRONMENT=Production" in run.output  # a suggestion
    assert "The app's output in production mode (stderr" in run.output
    assert "internal error" not in run.output


ENV_SETTINGS_MODULE = """
    import enum
    from typing import Literal, Optional

    from pydantic import Field
    from pydantic_settings import BaseSettings, SettingsConfigDict


    class Stage(enum.Enum):
        DEV = "dev"
        PROD = "prod"


    class PrefixedSettings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="MYAPP_")
        APP_ENV: Stage = Stage.DEV
        DEBUG: bool = False


    class AliasedSettings(BaseSettings):
        stage: Optional[Literal["local", "staging", "Prod-EU"]] = Field("local", validation_alias="DEPLOY_ENV")


    class LocalOnlySettings(BaseSettings):
        ENVIRONMENT: Literal["local", "staging"] = "local"
"""


class _OwnModules:
    """The part of AppFacts that production_env reads: which modules are the app's."""

    def __init__(self, name: str) -> None:
        self.name = name

    def is_own_module(self, module_name: str | None) -> bool:
        return module_name == self.name


@pytest.mark.parametrize(
    ("keep", "configured", "expected_env", "origin", "restriction"),
    [
        # An Enum behind an env prefix: the variable pydantic-settings reads, the member's value;
        # nothing restricts ENVIRONMENT, so the default stays beside it.
        (
            "PrefixedSettings",
            None,
            {"ENVIRONMENT": "production", "MYAPP_APP_ENV": "prod"},
            "the production value of `{module}.PrefixedSettings.APP_ENV`, Enum Stage: 'dev', 'prod'",
            "",
        ),
        # A validation alias names the variable; Optional[Literal] is read through.
        ("AliasedSettings", None, {"ENVIRONMENT": "production", "DEPLOY_ENV": "Prod-EU"}, "Prod-EU", ""),
        # No value reads as production: the default stays and messages say what the app accepts.
        (
            "LocalOnlySettings",
            None,
            {"ENVIRONMENT": "production"},
            "",
            "the app's `{module}.LocalOnlySettings.ENVIRONMENT` accepts only 'local', 'staging', none "
            "of which reads as production",
        ),
        # The user's own values are never changed.
        ("PrefixedSettings", {"MYAPP_APP_ENV": "prod"}, {"MYAPP_APP_ENV": "prod"}, "", ""),
    ],
)
def test_production_env_reads_the_settings_fields(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keep: str,
    configured: dict[str, str] | None,
    expected_env: dict[str, str],
    origin: str,
    restriction: str,
) -> None:
    import sys

    name = f"envsettings_{keep.lower()}_{len(configured or {})}"
    source = textwrap.dedent(ENV_SETTINGS_MODULE)
    for other in ("PrefixedSettings", "AliasedSettings", "LocalOnlySettings"):
        if other != keep:  # one settings class per case: the first field found decides
            source = source.replace(f"class {other}(BaseSettings)", f"class _{other}(object)")
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module(name)
        options = RulesOptions(app_spec=f"{name}:app", app_dir=tmp_path)
        if configured is not None:
            options = RulesOptions(app_spec=f"{name}:app", app_dir=tmp_path, production_env=configured)
        chosen = production.production_env(_OwnModules(name), options)  # type: ignore[arg-type]
    finally:
        sys.modules.pop(name, None)
    assert chosen.env == expected_env
    assert origin.format(module=name) in chosen.origin
    assert bool(chosen.origin) == bool(origin)
    assert chosen.restriction == restriction.format(module=name)
    assert chosen.explicit is (configured is not None)


def test_production_lifespan_failure_shows_the_apps_output(tmp_path: Path) -> None:
    (tmp_path / "failingapp.py").write_text(
        textwrap.dedent(
            """
            import os
            from contextlib import asynccontextmanager

            from fastapi import FastAPI


            @asynccontextmanager
            async def lifespan(app):
                if os.environ.get("ENVIRONMENT") == "production":
                    raise RuntimeError("REDIS_URL must be set in production")
                yield


            app = FastAPI(lifespan=lifespan)
            """
        )
    )
    with pytest.raises(ProductionModeError) as raised:
        env = {"ENVIRONMENT": "production"}
        read_child(start_child(spec="failingapp:app", app_dir=tmp_path, env=env), env)
    error = raised.value
    assert error.message.startswith(
        "With the production environment set (ENVIRONMENT=production), the app's lifespan failed "
        "at startup: The app's lifespan failed at startup with RuntimeError: REDIS_URL must be set"
    )
    rendered = error.render()
    assert "The app's output in production mode" in rendered
    assert 'raise RuntimeError("REDIS_URL must be set in production")' in rendered


def test_production_child_timeout(tmp_path: Path) -> None:
    (tmp_path / "slowapp.py").write_text(
        "import time\n\ntime.sleep(30)\n\nfrom fastapi import FastAPI\n\napp = FastAPI()\n"
    )
    with pytest.raises(ProductionModeError) as raised:
        env = {"ENVIRONMENT": "production"}
        read_child(start_child(spec="slowapp:app", app_dir=tmp_path, env=env, timeout=2), env)
    assert "did not finish within 2 s" in raised.value.message


def test_production_facts_are_gathered_once_per_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_start_child(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return None

    def fake_read_child(child: Any, env: dict[str, str], **kwargs: Any) -> ProductionFacts:
        return ProductionFacts(env=env)

    class FakeLoaded:
        spec = "src.main:app"

    class FakeFacts:
        loaded = FakeLoaded()

        def __init__(self) -> None:
            self.memo = Memo()  # the session's caches: a new facts object starts with none

    monkeypatch.setattr(production, "start_child", fake_start_child)
    monkeypatch.setattr(production, "read_child", fake_read_child)
    facts: Any = FakeFacts()
    options = RulesOptions(app_spec="src.main:app", app_dir=tmp_path)
    first = production.production_facts(facts, options)
    assert production.production_facts(facts, options) is first
    assert len(calls) == 1
    other = RulesOptions(app_spec="src.main:app", app_dir=tmp_path, production_env={"APP_ENV": "prod"})
    assert production.production_facts(facts, other).env == {"APP_ENV": "prod"}
    assert len(calls) == 2


def test_fr504_says_when_the_app_builds_sessions_without_a_factory(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(
        directsessions="""
from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

engine = create_engine("sqlite:///./direct.db", pool_pre_ping=True)


def get_db():
    with Session(engine) as session:
        yield session


app = FastAPI()
"""
    )
    run = run_rules("directsessions:app", "--fastapi-rules-select=FR504")
    (result,) = run.results_for("FR504")
    assert result["outcome"] == "skipped"
    assert "the app has engines but no session factory: it builds sessions directly" in result["message"]


ENGINE_REGISTRY_APP = """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import create_async_engine

    engines = {
        "writer": create_async_engine("sqlite+aiosqlite:///registry.db"),
        "reader": create_async_engine("sqlite+aiosqlite:///registry.db", echo=False),
    }


    @asynccontextmanager
    async def lifespan(app):
        yield
        for engine in engines.values():
            await engine.dispose()


    app = FastAPI(lifespan=lifespan)
"""


def test_a_dict_of_engines_named_in_ini_is_checked(pytester: pytest.Pytester, run_rules: Any) -> None:
    """Seen on teamhide/fastapi-boilerplate: `engines = {"writer": ..., "reader": ...}` in a module
    the plugin does not count as the app's own; naming the dict must find both engines."""
    pytester.makepyfile(
        registrydb=textwrap.dedent(ENGINE_REGISTRY_APP), registryapp="from registrydb import app\n"
    )
    pytester.makeini("[pytest]\nfastapi_rules_engines = registrydb:engines\n")
    run = run_rules("registryapp:app", "--fastapi-rules-select=FR501")
    messages = sorted(finding["message"] for finding in run.findings("FR501"))
    assert [m.split(" (")[0] for m in messages] == [
        "engine `registrydb:engines['reader']`",
        "engine `registrydb:engines['writer']`",
    ], messages


def test_an_ini_path_that_holds_no_engine_is_a_clear_error(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(registrydb=textwrap.dedent(ENGINE_REGISTRY_APP) + "\nname = 'not an engine'\n")
    pytester.makeini("[pytest]\nfastapi_rules_engines = registrydb:name\n")
    run = run_rules("registrydb:app", "--fastapi-rules-select=FR501")
    assert only(run.results_for("FR501"))["outcome"] == "error"
    assert "'registrydb:name' is a str that holds no SQLAlchemy engine or session factory" in run.output
    assert "internal error" not in run.output


COMPOSITE_APP = """
    import dataclasses

    from fastapi import FastAPI
    from sqlalchemy import Float, Integer
    from sqlalchemy.orm import DeclarativeBase, Mapped, composite, mapped_column


    class Base(DeclarativeBase):
        pass


    @dataclasses.dataclass
    class Location:
        lat: float
        lng: float


    class Shop(Base):
        __tablename__ = "shops"
        id: Mapped[int] = mapped_column(primary_key=True)
        location: Mapped[Location] = composite(mapped_column("lat", Float), mapped_column("lng", Float))


    class Legacy(Base):
        __tablename__ = "legacy"
        id: Mapped[int] = mapped_column(primary_key=True)
        location: Mapped[Location] = composite(mapped_column("lat", Float), mapped_column("lng", Float))
        count = mapped_column(Integer)  # no annotation: still reported


    app = FastAPI()
"""


def test_fr505_columns_declared_inside_an_annotated_composite_are_annotated(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """Seen on teamhide/fastapi-boilerplate: `Mapped[Location] = composite(mapped_column(...), ...)`."""
    pytester.makepyfile(compositeapp=textwrap.dedent(COMPOSITE_APP))
    run = run_rules("compositeapp:app", "--fastapi-rules-select=FR505")
    finding = only(run.findings("FR505"))
    assert (
        finding["message"]
        == "model `compositeapp.Legacy` has columns without a Mapped[...] annotation: count"
    ), finding


SIBLING_DATABASE_PROJECT = {
    "app/__init__.py": "",
    "app/main.py": """
        from fastapi import FastAPI

        from core.db import session

        app = FastAPI()


        @app.get("/api/v1/ping", tags=["ping"])
        async def ping() -> dict:
            return {"session": type(session).__name__}
    """,
    # teamhide/fastapi-boilerplate keeps its engines and session factory in a sibling `core`
    "core/__init__.py": "",
    "core/db.py": """
        from asyncio import current_task

        from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker, create_async_engine

        engine = create_async_engine("sqlite+aiosqlite:///./sibling.db")
        _session_factory = async_sessionmaker(engine)
        session = async_scoped_session(_session_factory, scopefunc=current_task)
    """,
}


def test_engines_and_factories_in_a_sibling_package_are_found(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """The app's package is `app`; its engine and factory live in the sibling `core` package.
    Discovery reads the project's modules beside the app's packages."""
    for name, text in SIBLING_DATABASE_PROJECT.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    run = run_rules("app.main:app", "--fastapi-rules-select=FR501,FR504")
    engine = only(run.findings("FR501"))
    assert engine["message"].startswith("engine `core.db.engine` (sqlite+aiosqlite) is created without"), (
        engine
    )
    factory = [f["message"] for f in run.findings("FR504")]
    assert any(
        m.startswith("session factory `core.db._session_factory` keeps expire_on_commit=True")
        for m in factory
    ), factory


# -- FR511: connections lost, at runtime (PostgreSQL) ----------------------------------------------


def test_postgres_connection_loss_without_pre_ping_fails_fr511(
    blog: Path, run_rules: Any, postgres_url: str, app_database: Any
) -> None:
    run = run_rules("variants.fr511_no_pre_ping:app", f"--fastapi-rules-db-url={postgres_url}")
    assert {r["code"] for r in run.failing()} <= {"FR501", "FR511"}, run.output
    (finding,) = run.findings("FR511")
    assert finding["message"].startswith("after the database dropped every connection, GET /")
    assert finding["message"].endswith("(it answered 200 before)")
    assert finding["location"]["file"] == "variants/fr511_no_pre_ping.py"


def test_fr511_is_skipped_with_the_reason_on_sqlite(blog: Path, run_rules: Any) -> None:
    run = run_rules(BLOG, "--fastapi-rules-select=FR511")
    (result,) = run.results_for("FR511")
    assert result["outcome"] == "skipped"
    assert "runs only against PostgreSQL" in result["message"]
    assert "--fastapi-rules-db-url" in result["message"]


PROTECTED_ASYNC_APP = """
import os
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])  # no pool_pre_ping
sessions = async_sessionmaker(engine, expire_on_commit=False)
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login/access-token")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


async def get_db() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


async def get_current_user(session: AsyncSession = Depends(get_db), token: str = Depends(oauth2)) -> User:
    raise HTTPException(401, "bad token", headers={"WWW-Authenticate": "Bearer"})


app = FastAPI()


@app.get("/api/v1/items", tags=["items"])
async def read_items(
    session: AsyncSession = Depends(get_db), user: User = Depends(get_current_user)
) -> list[int]:
    return list((await session.scalars(select(Item.id).where(Item.owner_id == user.id))).all())
"""


def test_fr511_resends_the_authenticated_request_and_fails_without_pre_ping(
    pytester: pytest.Pytester, run_rules: Any, postgres_url: str, app_database: Any
) -> None:
    path = pytester.makepyfile(protected=PROTECTED_ASYNC_APP)
    run = run_rules(
        "protected:app", f"--fastapi-rules-db-url={postgres_url}", "--fastapi-rules-select=FR306,FR511"
    )
    # FR306 injected into the current user before: it must give the probe user back, so the
    # connection-loss requests are authenticated, answer 200 first and then fail.
    (finding,) = run.findings("FR511")
    assert finding["message"].startswith(
        "after the database dropped every connection, GET /api/v1/items answered 500 ("
    ), run.output
    assert finding["message"].endswith("(it answered 200 before)")
    assert finding["location"]["file"] == "protected.py"
    assert finding["location"]["line"] == line_of(path, r"^engine = create_async_engine")
    # The async session dependency is wrapped the same way as a sync one; this one commits nothing.
    (session_finding,) = run.findings("FR306")
    assert "was not committed" in session_finding["message"]


def test_fr511_skips_with_the_reason_when_no_request_reaches_the_database(
    pytester: pytest.Pytester, run_rules: Any, postgres_url: str, app_database: Any
) -> None:
    # The current user is a dict the probes cannot build: every data route answers 401.
    pytester.makepyfile(
        protected=PROTECTED_ASYNC_APP.replace(") -> User:\n    raise", ") -> dict:\n    raise")
    )
    run = run_rules("protected:app", f"--fastapi-rules-db-url={postgres_url}", "--fastapi-rules-select=FR511")
    (result,) = run.results_for("FR511")
    assert result["outcome"] == "skipped", run.output
    assert "no GET route answered 2xx and ran SQL on the isolated database" in result["message"]
