"""The app's ORM metadata as the probes read it: its MetaData objects, schemas and tables in order.

Apart from ``seeding`` on purpose: starting the app on the isolated database (``isolation``, also in
the production-mode child) needs the schemas its tables name, and must not import the data
generation (polyfactory, faker) that only the probe run's seeding uses (issue #20).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.schema import sort_tables_and_constraints


def metadatas_of(mapped_classes: Sequence[type]) -> list[MetaData]:
    """The distinct MetaData objects the app's ORM classes live in, in a stable order."""
    found: dict[int, MetaData] = {}
    for cls in mapped_classes:
        mapper: Any = sa_inspect(cls, raiseerr=False)
        table = getattr(mapper, "local_table", None)
        metadata = getattr(table, "metadata", None)
        if isinstance(metadata, MetaData):
            found.setdefault(id(metadata), metadata)
    return list(found.values())


def schemas_of(metadatas: Sequence[MetaData]) -> tuple[str, ...]:
    """The schemas the app's tables name explicitly (``Table(..., schema="core")``), sorted."""
    return tuple(sorted({str(t.schema) for m in metadatas for t in m.tables.values() if t.schema}))


def sorted_tables(metadatas: Sequence[MetaData]) -> list[Table]:
    """The tables in foreign-key order, parents first.

    Not ``MetaData.sorted_tables``: on foreign keys that form a cycle (``teams.owner_id`` and
    ``users.team_id``) it warns, and the warning reached the user's own warnings summary. The
    same sort without the warning orders such tables as if the cycle's keys were not there; the
    seeder leaves a nullable key to a table not seeded yet empty (:meth:`Seeder.row`).
    """
    tables: list[Table] = []
    for metadata in metadatas:
        ordered = sort_tables_and_constraints(list(metadata.tables.values()))  # type: ignore[no-untyped-call]
        tables.extend(table for table, _constraints in ordered if table is not None)
    return tables
