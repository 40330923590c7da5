"""Start the app's lifespan for the rules that read the running app, without touching its database.

Rules such as FR501-FR504 judge the engines and session factories an app creates at startup, so the
lifespan must run. It runs here with the same redirection as the probes (``database.Redirector``):
every engine the app creates or holds points at a throwaway database, so a startup that creates
tables, runs migrations or checks connectivity never reaches the database the app is configured
with. The rules still judge the app's own configuration: ``original_of`` maps each redirected engine
back to the engine as the app configured it (its own object, or one built from its own URL and
options and never connected).

Everything is undone when the lifespan stops (``AppRuntime.stop`` runs :meth:`teardown`), before the
probe run sets up its own redirection.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.probing.counting import SqlMonitor
from pytest_fastapi_rules.probing.database import Redirector
from pytest_fastapi_rules.probing.metadata import metadatas_of, schemas_of
from pytest_fastapi_rules.probing.placement import PendingDatabase, forget, placement_of
from pytest_fastapi_rules.runtime import AppStartupError

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts


class IsolatedStart:
    """One isolated start of the app's lifespan, and its teardown."""

    def __init__(self, facts: AppFacts, db_url: str | None, db_url_source: str | None = None) -> None:
        self.facts = facts
        files = [getattr(module, "__file__", None) for module in facts.own_modules]
        roots = {str(Path(file).resolve().parent) for file in files if file}
        self.monitor = SqlMonitor(tuple(sorted(roots)))
        try:
            schemas = schemas_of(metadatas_of(list(facts.mapped_classes)))
        except Exception:  # noqa: BLE001 - unreadable registries: the tables report themselves
            schemas = ()
        self.pending = PendingDatabase(
            placement_of(facts, db_url, db_url_source), self.monitor.allow, schemas
        )
        self.redirector: Redirector | None = None

    def start(self, engine_paths: tuple[str, ...], factory_paths: tuple[str, ...]) -> None:
        """Redirect, then run the lifespan's startup (raises AppStartupError, after tearing down)."""
        runtime = self.facts.runtime
        self.redirector = Redirector(self.pending, self.monitor)
        self.monitor.install()
        runtime.on_stop(self.teardown)
        try:
            self.redirector.patch_creation()
            self.redirector.redirect_existing(self.facts, engine_paths, factory_paths)
            try:
                runtime.start()
            except AppStartupError:
                # An engine created at startup on a server the user named that cannot be used:
                # that is the cause, not the app's startup code.
                if self.pending.placement.failure is not None:
                    raise self.pending.placement.failure from None
                raise
            self.redirector.redirect_existing(self.facts, engine_paths, factory_paths)
            state = runtime.lifespan_state
            for key, value in list(state.items()):
                self.redirector.redirect_object(state, key, value, f"lifespan state[{key!r}]")
        except BaseException:
            runtime.stop()
            raise

    def original_of(self, engine: Any) -> Any:
        return self.redirector.original_of(engine) if self.redirector is not None else engine

    def teardown(self) -> None:
        """Undo the redirection, dispose the engines the plugin made and drop the throwaway database."""
        if self.redirector is not None:
            self.redirector.restore()
        self.monitor.remove()
        redirector, database = self.redirector, self.pending.database

        async def dispose() -> None:
            if redirector is not None:
                await redirector.dispose_all()
            if database is not None:
                await database.drop()

        with contextlib.suppress(Exception):
            self.facts.runtime.run(dispose(), timeout=60)
            if database is not None:
                forget(database)
        self.redirector = None
        self.pending.database = None
