"""Which pytest-xdist worker probes which route: the probe run split by route.

Under ``-n N`` with the plugin's scheduler (``xdist_scheduling``), the probe items form N work
units, one per shard: the items of a route go to shard ``crc32(target) % N``, app-level probe items
to shard 0. Each worker that gets a shard runs the probe run for that shard's routes only (its own
isolated database, seeded in full), and shard 0 also runs the app-level probes (startup, health,
CORS preflight, injections). Verdicts do not depend on the split: every route item reads exchanges
of its own route, and the one app-level rule that compares answers of several routes (FR106) gets
the same samples either way (see ``ProbeRun._send_envelope_samples``).

Shard ``k`` goes to worker ``gwK`` when that worker is there (:func:`worker_of_shard`): the worker
of shard 0 then knows, as it starts, that it will start the production-mode child, and starts the
child's interpreter at once (``launcher.start_spare``) instead of after its first probe item.

Kept free of heavy imports: the xdist controller imports it to group node ids.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_TARGET = re.compile(r"^[A-Z]+ /")


def shard_index(target: str | None, count: int) -> int:
    """The shard of a route target (``GET /items``); app-level items (None) are shard 0."""
    if count <= 1 or target is None or not _TARGET.match(target):
        return 0
    return zlib.crc32(target.encode("utf-8")) % count


def worker_of_shard(index: int) -> str:
    """The xdist worker id that is given shard ``index`` first (a restarted worker gets another id,
    and its shard then goes to whichever worker asks first)."""
    return f"gw{index}"


@dataclass(frozen=True)
class Shard:
    """One part of the probe run: the routes whose :func:`shard_index` is ``index``."""

    index: int
    count: int

    @property
    def runs_app_level(self) -> bool:
        return self.index == 0

    def holds(self, target: str) -> bool:
        return shard_index(target, self.count) == self.index

    @classmethod
    def of(cls, target: str | None, count: int) -> Shard | None:
        """The shard an item of ``target`` reads, or None when the run is not split."""
        return cls(shard_index(target, count), count) if count > 1 else None
