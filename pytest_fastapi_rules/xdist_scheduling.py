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
    """The probe shard's group for probe items (see ``probing/shards.py``), the rule's group for
    other rule items, and the node id itself (a unit of one) for everything else."""
    match = _RULE_NODE.match(nodeid)
    if match is None:
        return nodeid
    code = match.group(1)
    if code in _probe_codes():
        target = nodeid[match.end() + 1 : -1] if nodeid[match.end() :].startswith("[") else None
        return f"{PROBE_GROUP}-{shard_index(target, shards)}"
    return f"{COLLECTOR_NAME}-{code}"


class ProbeGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """Like "load", except that the probe items go to one worker per probe shard, and the items of
    each other rule to one worker."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid, self.numnodes)
