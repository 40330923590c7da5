"""Gradual adoption: record today's findings, then fail only on new ones.

A finding's fingerprint is built from what identifies it, not from where it happens to sit: the
rule code, the item's target (``GET /path`` or ``app``), the finding's own target, the file it points
at (without the line), and its message with ids, hashes and numbers folded. Moving code up or down a
file, or a count changing from 7 to 8, keeps the fingerprint; a different route, object or file
makes a new finding.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_fastapi_rules.registry import Finding

BASELINE_VERSION = 1
_NUMBER = re.compile(r"\d+")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX_TOKEN = re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")


def _normalise(message: str) -> str:
    """Fold what varies between runs of the same finding: ids, hashes and numbers."""
    message = _UUID.sub("<uuid>", message)
    message = _HEX_TOKEN.sub("<hex>", message)
    return _NUMBER.sub("#", message)


class BaselineError(Exception):
    """The baseline file is missing or unreadable; the message says how to fix it."""


def fingerprint(code: str, item_target: str, finding: Finding) -> str:
    location_file = finding.location.file if finding.location else ""
    parts = [
        code,
        item_target,
        finding.target or item_target,
        location_file,
        _normalise(finding.message),
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


@dataclass
class Baseline:
    """The findings recorded in a baseline file, by fingerprint."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, *, updating: bool) -> Baseline:
        if not path.exists():
            if updating:
                return cls(path)
            raise BaselineError(
                f"--fastapi-rules-baseline: {path} does not exist. Record today's findings first with "
                "--fastapi-rules-update-baseline, and commit the file."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = {entry["fingerprint"]: entry for entry in data["findings"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BaselineError(
                f"--fastapi-rules-baseline: {path} is not a baseline file written by "
                f"pytest-fastapi-rules ({type(exc).__name__}: {exc}). Recreate it with "
                "--fastapi-rules-update-baseline."
            ) from None
        return cls(path, entries)

    def __contains__(self, fingerprint_: str) -> bool:
        return fingerprint_ in self.entries

    def gone(self, results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Baselined findings whose item ran in this session and no longer produces them."""
        ran: set[tuple[str, str]] = set()
        seen: set[str] = set()
        for result in results:
            if result["outcome"] in ("error", "skipped"):
                continue
            ran.add((result["code"], result["target"]))
            seen.update(f["fingerprint"] for f in result["findings"])
        return [
            entry
            for fp, entry in sorted(self.entries.items(), key=lambda kv: (kv[1]["code"], kv[1]["target"]))
            if (entry["code"], entry["item"]) in ran and fp not in seen
        ]

    def write(self, results: Iterable[dict[str, Any]]) -> int:
        """Replace the entries of every item that ran with its current findings; keep the rest."""
        results = list(results)
        ran = {(r["code"], r["target"]) for r in results if r["outcome"] not in ("error", "skipped")}
        kept = {fp: e for fp, e in self.entries.items() if (e["code"], e["item"]) not in ran}
        for result in results:
            if result["outcome"] in ("error", "skipped"):
                continue
            for finding in result["findings"]:
                if finding.get("suppressed"):
                    continue  # silenced in the source: not a finding to carry
                kept[finding["fingerprint"]] = {
                    "fingerprint": finding["fingerprint"],
                    "code": result["code"],
                    "item": result["target"],
                    "target": finding["target"],
                    "message": finding["message"],
                }
        ordered = sorted(kept.values(), key=lambda e: (e["code"], e["item"], e["target"], e["fingerprint"]))
        payload = {"version": BASELINE_VERSION, "tool": "pytest-fastapi-rules", "findings": ordered}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        self.entries = {e["fingerprint"]: e for e in ordered}
        return len(ordered)
