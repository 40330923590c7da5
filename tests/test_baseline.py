"""Fingerprints survive what changes between runs of the same finding, and only that."""

from __future__ import annotations

from pytest_fastapi_rules.baseline import fingerprint
from pytest_fastapi_rules.registry import Finding, Location


def test_fingerprint_ignores_lines_counts_ids_and_hashes() -> None:
    first = Finding(
        message="GET /api/v1/items/3f2b8c1e-9a7d-4c36-8e2f-0b1a2c3d4e5f answered 500 after 7 statements (a1b2c3d4e5)",
        location=Location("src/items/router.py", 10),
    )
    second = Finding(
        message="GET /api/v1/items/0d9e8f7a-1b2c-4d3e-9f8a-7b6c5d4e3f2a answered 500 after 9 statements (ffee0011aa)",
        location=Location("src/items/router.py", 42),
    )
    assert fingerprint("FR704", "GET /api/v1/items/{id}", first) == fingerprint(
        "FR704", "GET /api/v1/items/{id}", second
    )


def test_fingerprint_tells_different_findings_apart() -> None:
    finding = Finding(
        message="endpoint `list_users` is a sync `def`", location=Location("src/users/router.py", 5)
    )
    other_route = fingerprint("FR201", "GET /api/v1/posts", finding)
    other_file = fingerprint(
        "FR201", "GET /api/v1/users", Finding(finding.message, location=Location("src/x.py", 5))
    )
    other_name = fingerprint(
        "FR201",
        "GET /api/v1/users",
        Finding("endpoint `list_posts` is a sync `def`", location=finding.location),
    )
    base = fingerprint("FR201", "GET /api/v1/users", finding)
    assert len({base, other_route, other_file, other_name}) == 4
    assert fingerprint("FR202", "GET /api/v1/users", finding) != base
