"""FR2xx: routes and API design (Rules #7, #14-#17, #21). Importing this package registers the rules.

The checks read what FastAPI itself knows about a route: its effective response model (from
``response_model=`` or the return annotation), response class, declared status code and the
parameters of its whole dependency tree. Two modules hold what every rule of the family reads, so
one understanding of "what does this route answer" is shared by all: ``annotations.py`` (types as
FastAPI and Pydantic read them) and ``routes.py`` (what a route declares). The rules, each
declaration with its helpers and its runtime half (``rule(runtime=...)``), live by what they judge:

- ``endpoints.py``: FR201 (async endpoints);
- ``responses.py``: FR202, FR203, FR209 (the response model: declared, no ORM class, no secret);
- ``statuses.py``: FR204, FR205, FR210, FR211 (the status: 201 creates, 204 deletes, 422 bad input,
  404 missing rows);
- ``inputs.py``: FR206, FR207, FR208 (bodies and query parameters: partial updates, page bounds,
  bounded strings).
"""

from pytest_fastapi_rules.rules.api import endpoints, inputs, responses, statuses  # noqa: F401
