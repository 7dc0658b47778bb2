"""Schemathesis against ``/openapi.json`` of a live server: no generated request gets a 5xx,
and every answer is documented.

The schema is loaded from the running server. (schemathesis' lazy pytest loader,
``schemathesis.pytest.from_fixture``, does not work with pytest 9 — it sets the
removed ``Item._nodeid`` — so the operations are driven here with Hypothesis
directly, inside one test that owns the live server.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from tests.redisserver import RedisServer
from tests.server.conftest import ADMIN_KEY, Live, live_server

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
EXAMPLES = 25
# no 5xx; answers match the documented status codes, content types and schemas; auth is enforced
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture(scope="module")
def keyed_live(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Live]:
    # short caps on server-side waits keep generated requests fast; a SQLite store makes the
    # /api/store routes reach it, a node registry /api/nodes
    store = f"sqlite:///{tmp_path_factory.mktemp('store') / 'weirflow.db'}"
    with live_server(
        api_keys=f"{ADMIN_KEY}:admin",
        login_failures=1_000_000,  # it sends bad keys on purpose (the lockout: test_bad_keys.py)
        max_send_timeout_s=0.5,
        max_wait_s=0.5,
        pause_wait_s=0.5,
        store=store,
        registry=redis_server.new_database(),
    ) as s:
        yield s


@pytest.mark.slow  # tens of seconds on 2 cores: run by scripts/test (CI), not by a plain pytest
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_generated_request_gets_a_server_error(keyed_live: Live, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{keyed_live.url}/openapi.json", headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    # +5 (UI): flow check, store summary, retry-failed, clean, record; +1 batch; +3 schedules
    # +8 pipelines: list, get, results, start, pause, resume, input, stop
    # +3 paused durable queues: list, pause, resume; +1 nodes; +1 pipeline dead letters
    assert len(operations) == 61
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (list(operation.iter_parameters()) or operation.body):
            continue  # nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)

        check()
