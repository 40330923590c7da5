"""pytest-xdist scheduling that probes each route once per run, not once per worker.

The probe items of a process share one probe run (seeding, requests, the isolated database),
computed by the first of them. Under plain ``-n N`` ("load"), probe items would land on every
worker and each worker would probe the whole app. This scheduler splits the probe items into N
work units, one per probe shard (``probing/shards.py``): a worker that gets a shard probes only
that shard's routes, so the probe run is shared out instead of repeated. App-level probe items,
and the rules that wait for the production-mode children started with the probe run
(``Rule.background``), are in shard 0.

The items of every other rule form one unit per rule: a route rule works out its findings for all
routes at once (``registry.combined``), so one worker does that work instead of every worker, and a
thousand-route app gives about sixty units instead of thousands. xdist's "loadscope" machinery,
which this scheduler reuses, sends each unit separately and counts pending work by walking every
unit a worker was given, so a unit per item made the controller's work quadratic in the number of
items (most of a core at 13,000 items). Other tests (the project's own) are units of their own,
as in "load".

The controller does not collect, so the grouping is decided from node ids alone: a rule item's
id names its code and route (``fastapi-rules::FR509[GET /x]``), and :data:`PROBE_CODES` says
whether that rule runs with the probes. That set is written out here rather than read from the
registry because reading the registry means importing every rule, and with them FastAPI and
SQLAlchemy: half a second of the controller's CPU between the workers' collection and their first
item, on the critical path of every ``-n`` run. ``tests/test_architecture.py`` checks it against
the registry; a code missing from it would only cost time (its items would probe their shard on
whichever worker got them), never a verdict.
"""

from __future__ import annotations

import re
from typing import Any

from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from pytest_fastapi_rules.probing.shards import shard_index, worker_of_shard
from pytest_fastapi_rules.registry import COLLECTOR_NAME

#: The work unit of the probe items, followed by their shard's index.
PROBE_GROUP = "fastapi-rules-probes"

#: The rules whose items run with the probes (``Rule.runs_with_probes``: they read the probe run, or
#: wait for the background work started with it), by code. Kept equal to the registry by a test.
PROBE_CODES = frozenset(
    {
        "FR102", "FR103", "FR105", "FR106", "FR107", "FR108", "FR203", "FR205", "FR207", "FR209",
        "FR210", "FR211", "FR306", "FR402", "FR503", "FR509", "FR510", "FR511", "FR701", "FR704",
        "FR705", "FR706", "FR802", "FR803", "FR806",
    }
)  # fmt: skip

_RULE_NODE = re.compile(rf"^{re.escape(COLLECTOR_NAME)}::(FR\d+)")


def work_unit(nodeid: str, shards: int = 1) -> str:
    """The probe shard's group for probe items (see ``probing/shards.py``), the rule's group for
    other rule items, and the node id itself (a unit of one) for everything else."""
    match = _RULE_NODE.match(nodeid)
    if match is None:
        return nodeid
    code = match.group(1)
    if code in PROBE_CODES:
        target = nodeid[match.end() + 1 : -1] if nodeid[match.end() :].startswith("[") else None
        return f"{PROBE_GROUP}-{shard_index(target, shards)}"
    return f"{COLLECTOR_NAME}-{code}"


class ProbeGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """Like "load", except that the probe items go to one worker per probe shard (shard ``k`` to
    worker ``gwK`` while it is there), and the items of each other rule to one worker.

    Two pieces of loadscope's bookkeeping are kept in O(1) per item instead of walking lists:
    finding an item's position in a worker's collection (``list.index`` for every item sent, over
    the whole collection) and counting a worker's pending items (every item of every unit it was
    given, at each completion). A route rule's unit holds an item per route, so both were
    quadratic in the size of the app: seconds of the controller's CPU at 13,000 items, taken from
    the workers on a two-core machine. The answers are the same as loadscope's.
    """

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        #: Each probe shard's unit, by the worker that gets it first (``shards.worker_of_shard``).
        self._own_probe_unit = {worker_of_shard(k): f"{PROBE_GROUP}-{k}" for k in range(self.numnodes)}
        self._positions: dict[Any, dict[str, int]] = {}
        #: Pending items of each unit given to a worker, by the unit's identity (units are dicts; the
        #: unit is kept with its count so that its identity is not reused).
        self._unit_pending: dict[int, tuple[dict[str, bool], int]] = {}

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid, self.numnodes)

    def _assign_work_unit(self, node: Any) -> None:
        scope = self._own_probe_unit.get(str(node.gateway.id))
        if scope is not None and scope in self.workqueue:
            unit = self.workqueue.pop(scope)
        else:
            scope, unit = self.workqueue.popitem(last=False)
        self.assigned_work.setdefault(node, {})[scope] = unit
        positions = self._positions.get(node)
        if positions is None:
            positions = {}
            for index, nodeid in enumerate(self.registered_collections[node]):
                positions.setdefault(nodeid, index)
            self._positions[node] = positions
        pending = [positions[nodeid] for nodeid, completed in unit.items() if not completed]
        self._unit_pending[id(unit)] = (unit, len(pending))
        node.send_runtest_some(pending)

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        nodeid = self.registered_collections[node][item_index]
        unit = self.assigned_work[node][self._split_scope(nodeid)]
        known = self._unit_pending.get(id(unit))
        if known is not None and not unit[nodeid]:
            self._unit_pending[id(unit)] = (unit, known[1] - 1)
        super().mark_test_complete(node, item_index, duration)

    def _pending_of(self, workload: dict[str, dict[str, bool]]) -> int:
        pending = 0
        for unit in workload.values():
            known = self._unit_pending.get(id(unit))
            pending += known[1] if known is not None else list(unit.values()).count(False)
        return pending
