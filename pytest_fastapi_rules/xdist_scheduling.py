"""pytest-xdist scheduling that probes the app once per run, not once per worker.

The probe items share one probe run (seeding, requests, the isolated database), computed by the
first probe item of a process; the production-mode children start then too (``Rule.background``),
so the rules that read them belong with the probe items. Under plain ``-n 2`` ("load"), probe
items would land on every worker and each would probe the whole app. This scheduler keeps every
probe item in one work unit (so one worker runs them all) and schedules every other test on its
own, as "load" does.

The controller does not collect, so the grouping is decided from node ids alone: a rule item's
id names its code (``fastapi-rules::FR509[GET /x]``), and the registry says whether that rule reads
the probes.
"""

from __future__ import annotations

import re
from functools import cache

from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from pytest_fastapi_rules.items import COLLECTOR_NAME, PROBE_GROUP
from pytest_fastapi_rules.registry import all_rules

_RULE_NODE = re.compile(rf"^{re.escape(COLLECTOR_NAME)}::(FR\d+)")


@cache
def _probe_codes() -> frozenset[str]:
    return frozenset(rule.code for rule in all_rules() if rule.runs_with_probes)


def work_unit(nodeid: str) -> str:
    """The probe group for probe items; the node id itself (a unit of one) for everything else."""
    match = _RULE_NODE.match(nodeid)
    if match and match.group(1) in _probe_codes():
        return PROBE_GROUP
    return nodeid


class ProbeGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """Like "load", except that all probe items go to one worker together."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)
