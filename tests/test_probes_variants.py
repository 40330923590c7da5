"""Each violating variant of the blog fails exactly its probe rule (all rules run)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RulesRun, line_of


def only_codes(run: RulesRun) -> list[tuple[str, str]]:
    return sorted({(r["code"], r["target"]) for r in run.failing()})


# -- the violating variants ------------------------------------------------------------------------

VARIANTS = [
    # module, code, targets, essence, file, line pattern, codes that may fail with it (same cause)
    (
        "fr509_query_per_row",
        "FR509",
        ["GET /api/v1/posts"],
        "`.options(joinedload(Post.author))` (many-to-one)",
        "src/posts/router.py",
        r"^async def list_posts",
        (),
    ),
    (
        "fr509_lazy_per_row",
        "FR509",
        ["GET /api/v1/posts"],
        "`.options(joinedload(Post.author))` (many-to-one)",
        "src/posts/router.py",
        r"^async def list_posts",
        (),
    ),
    (
        "fr510_monthly_counts",
        "FR510",
        [
            "DELETE /api/v1/users/{user_id}",
            "GET /api/v1/users/{user_id}",
            "PATCH /api/v1/users/{user_id}",
            "POST /api/v1/users/{user_id}/activate",
            "PUT /api/v1/users/{user_id}",
        ],
        "SQL statements, over the budget of 10",
        "src/users/router.py",
        None,
        (),
    ),
    (
        "fr210_handler_reads_body",
        "FR210",
        [
            "PATCH /api/v1/posts/{post_id}",
            "PATCH /api/v1/users/{user_id}",
            "POST /api/v1/auth/register",
            "POST /api/v1/posts",
            "PUT /api/v1/users/{user_id}",
        ],
        r"re:with a malformed JSON body answered 500 \(JSONDecodeError: Expecting value: .* at variants/fr210_handler_reads_body\.py:\d+\), not 422$",
        "src/",
        None,
        (),
    ),
    (
        "fr210_str_id_converted",
        "FR210",
        ["GET /api/v1/posts/{post_id}/preview"],
        r"re:^GET /api/v1/posts/\{post_id\}/preview with odd strings \(path parameter `post_id`='zz-not-an-id'\) "
        r"answered 500 \(ValueError: invalid literal for int\(\) with base 10: 'zz-not-an-id' at "
        r"variants/fr210_str_id_converted\.py:\d+\), not a 2xx or 4xx$",
        "variants/fr210_str_id_converted.py",
        r"^async def preview_post",
        (),
    ),
    (
        "fr210_dict_body_indexed",
        "FR210",
        ["POST /api/v1/posts/import"],
        r"re:^POST /api/v1/posts/import with an empty free-form body `\{\}` answered 500 \(KeyError: 'title' at "
        r"variants/fr210_dict_body_indexed\.py:\d+\), not a 2xx or 4xx$",
        "variants/fr210_dict_body_indexed.py",
        r"^async def import_post",
        (),
    ),
    (
        "fr211_missing_post_is_none",
        "FR211",
        ["DELETE /api/v1/posts/{post_id}", "GET /api/v1/posts/{post_id}", "PATCH /api/v1/posts/{post_id}"],
        r"re:\(an id that does not exist\) answered 500 \((AttributeError|ValidationError): .+ at src/posts/(service|router)\.py:\d+\), not 404$",
        "src/posts/router.py",
        None,
        (),
    ),
    (
        "fr102_shutdown_fails",
        "FR102",
        ["app"],
        "the lifespan failed at shutdown: AttributeError: 'NoneType' object has no attribute 'flush'",
        "variants/fr102_shutdown_fails.py",
        r"await metrics_client.flush\(\)",
        (),
    ),
    (
        "fr103_engine_not_disposed",
        "FR103",
        ["app"],
        "the engine created at src/database.py:",
        "src/database.py",
        r"self._engine = create_async_engine\(",
        (),
    ),
    (
        "fr205_delete_answers_200",
        "FR205",
        ["DELETE /api/v1/posts/{post_id}/publication"],
        "DELETE endpoint `unpublish_post` declares status 200, not 204",
        "variants/fr205_delete_answers_200.py",
        r"^async def unpublish_post",
        (),
    ),
    (
        # No model and no 204: one defect, FR205's (FR202 leaves it alone, see EXTRA_CHECKS).
        "fr205_delete_answers_a_dict",
        "FR205",
        ["DELETE /api/v1/posts/{post_id}/publication"],
        "DELETE endpoint `unpublish_post` declares status 200, not 204",
        "variants/fr205_delete_answers_a_dict.py",
        r"^async def unpublish_post",
        (),
    ),
    (
        "fr306_session_never_closed",
        "FR306",
        ["app"],
        "was neither rolled back nor closed",
        "src/database.py",
        r"^async def get_db",
        ("FR103",),  # the leaked connections are still checked out at shutdown: same cause
    ),
    (
        "fr402_bcrypt_on_loop",
        "FR402",
        ["POST /api/v1/auth/register"],
        "stalled the event loop for",
        "src/auth/router.py",
        r"^async def register",
        (),
    ),
    (
        "fr704_token_decode_crash",
        "FR704",
        [
            "DELETE /api/v1/posts/{post_id}",
            "DELETE /api/v1/users/{user_id}",
            "GET /api/v1/users/me",
            "PATCH /api/v1/posts/{post_id}",
            "PATCH /api/v1/users/{user_id}",
            "POST /api/v1/posts",
            "POST /api/v1/users/{user_id}/activate",
            "PUT /api/v1/users/{user_id}",
        ],
        r"re:with a garbage bearer token answered 500 \(DecodeError: Invalid header padding at "
        r"variants/fr704_token_decode_crash\.py:\d+\), not 401 \(the token is read by "
        r"`get_current_user_unchecked`\)$",
        # The app's own override reads the token: the findings point at it, not at each route.
        "variants/fr704_token_decode_crash.py",
        r"^async def get_current_user_unchecked",
        (),
    ),
    (
        "fr705_plain_password",
        "FR705",
        ["POST /api/v1/auth/register"],
        "the plain password sent to POST /api/v1/auth/register is stored in column `users.hashed_password`",
        "src/auth/router.py",
        r"^async def register",
        (),
    ),
    (
        "fr803_handler_without_log",
        "FR803",
        ["app"],
        "logged nothing at error level for an unhandled exception in GET /api/v1/users",
        "variants/fr803_handler_without_log.py",
        r"^async def silent_exception_handler",
        (),
    ),
    (
        "fr106_default_http_errors",
        "FR106",
        ["app"],
        "error responses do not share one envelope: they share no key (401: {detail}",
        "variants/fr106_default_http_errors.py",
        None,
        (),
    ),
    (
        "fr107_readiness_alias",
        "FR107",
        ["app"],
        "the app has no readiness route (`GET /health/ready`); it has `GET /health/readiness`",
        "variants/fr107_readiness_alias.py",
        None,
        (),
    ),
    (
        "fr108_docs_in_production",
        "FR108",
        ["app"],
        "with ENVIRONMENT=production, GET /docs answers 200, not 404",
        "variants/fr108_docs_in_production.py",
        None,
        (),
    ),
]


@pytest.mark.parametrize(
    ("module", "code", "targets", "essence", "file", "line_pattern", "also"),
    VARIANTS,
    ids=[v[0] for v in VARIANTS],
)
def test_variant_fails_only_its_rule(
    blog: Path,
    run_rules: Any,
    module: str,
    code: str,
    targets: list[str],
    essence: str,
    file: str,
    line_pattern: str | None,
    also: tuple[str, ...],
) -> None:
    run = run_rules(f"variants.{module}:app")
    failing = [(c, t) for c, t in only_codes(run) if c not in also]
    assert failing == [(code, target) for target in sorted(targets)], (failing, run.output)
    findings = run.findings(code)

    def has_essence(text: str) -> bool:
        # "re:" essences are regular expressions (messages that name the app's exception and line).
        return bool(re.search(essence[3:], text)) if essence.startswith("re:") else essence in text

    assert findings and all(has_essence(f["message"]) or has_essence(f.get("fix") or "") for f in findings), (
        findings
    )
    for finding in findings:
        assert finding["location"]["file"].startswith(file), finding
        if line_pattern is not None:
            assert finding["location"]["line"] == line_of(blog / file, line_pattern), finding
    assert code in run.output
    extra = EXTRA_CHECKS.get(module)
    if extra is not None:
        extra(run)


def _n_plus_one_message_names_route_counts_and_statement(run: RulesRun) -> None:
    (finding,) = run.findings("FR509")
    assert finding["message"].startswith("GET /api/v1/posts runs")
    assert "runs 4 SQL statements with 3 parent rows and 10 with 9 parent rows" in finding["message"]
    assert (
        "the statement `SELECT users.id, ... FROM users WHERE users.id = ?` runs 9 times"
        in finding["message"]
    )
    assert "FROM users WHERE users.id" in finding["message"]


#: More assertions on a variant's run (one pytester run serves them all).
def _delete_with_a_body_is_left_to_fr205(run: RulesRun) -> None:
    (result,) = [
        r for r in run.results_for("FR202") if r["target"] == "DELETE /api/v1/posts/{post_id}/publication"
    ]
    assert result["outcome"] == "skipped", result
    assert result["message"].endswith(
        "answers 200 with a body instead of 204: reported by FR205 delete-returns-204"
    ), result


EXTRA_CHECKS: dict[str, Callable[[RulesRun], None]] = {
    "fr509_query_per_row": _n_plus_one_message_names_route_counts_and_statement,
    "fr205_delete_answers_a_dict": _delete_with_a_body_is_left_to_fr205,
}
