"""pytest-xdist scheduling that probes each route once per run, not once per worker.

The probe items of a process share one probe run (seeding, requests, the isolated database),
computed by the first of them. Under plain ``-n N`` ("load"), probe items would land on every
worker and each worker would probe the whole app. This scheduler splits the probe items into N
work units, one per probe shard (``probing/shards.py``): a worker that gets a shard probes only
that shard's routes, so the probe run is shared out instead of repeated. App-level probe items,
and the rules that wait for the production-mode children started with the probe run
(``Rule.background``), are in shard 0. Every other test is a unit of its own, as in "load".

The controller does not collect, so the grouping is decided from node ids alone: a rule item's
id names its code and route (``fastapi-rules::FR509[GET /x]``), and the registry says whether
that rule reads the probes.
"""

from __future__ import annotations

import re
from functools import cache

from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from pytest_fastapi_rules.items import COLLECTOR_NAME, PROBE_GROUP
from pytest_fastapi_rules.probing.shards import shard_index
from pytest_fastapi_rules.registry import all_rules

_RULE_NODE = re.compile(rf"^{re.escape(COLLECTOR_NAME)}::(FR\d+)")


@cache
def _probe_codes() -> frozenset[str]:
    return frozenset(rule.code for rule in all_rules() if rule.runs_with_probes)


def work_unit(nodeid: str, shards: int = 1) -> str:
    """The probe shard's group for probe items (see ``probing/shards.py``); the node id itself (a
    unit of one) for everything else."""
    match = _RULE_NODE.match(nodeid)
    if match and match.group(1) in _probe_codes():
        target = nodeid[match.end() + 1 : -1] if nodeid[match.end() :].startswith("[") else None
        return f"{PROBE_GROUP}-{shard_index(target, shards)}"
    return nodeid


class ProbeGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """Like "load", except that the probe items go to one worker per probe shard."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid, self.numnodes)
