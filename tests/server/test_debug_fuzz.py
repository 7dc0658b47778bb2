"""Schemathesis on the debugger routes of a real, stopped job (the schema-wide test in
``test_openapi.py`` mostly meets unknown job ids): garbage CEL, odd items and
breakpoint specs must get documented 4xx answers, never a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.server.conftest import ADMIN_KEY, live_server, send, start_job
from tests.server.test_openapi import CHECKS

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
EXAMPLES = 40


def hold(c: httpx.Client, jid: str) -> None:
    """Make sure an item is held at enrich (a fuzzed call may have let the last one go)."""
    api = f"/api/jobs/{jid}"
    if c.get(f"{api}/debug").json()["held"]:
        return
    c.post(f"{api}/debug/resume")
    c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "enrich"})
    send(c, jid, "intake.items", [{"id": -1, "amount": 0}])
    c.get(f"{api}/debug", params={"wait_s": 0.2})  # not asserted: the fuzzing does not depend on it


@pytest.mark.slow  # tens of seconds on 2 cores: run by scripts/test (CI), not by a plain pytest
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_debug_routes_of_a_held_job_never_fail(mode: GenerationMode) -> None:
    with live_server(
        flows="tests.server.flows.debugged",
        api_keys=f"{ADMIN_KEY}:admin",
        max_wait_s=0.2,
        headers=AUTH,
        # the fuzzer sends bad keys on purpose: the bad-key lockout (test_bad_keys.py) would
        # soon answer 429 to the good key too
        login_failures=1_000_000,
    ) as live:
        c = live.client
        jid = start_job(c, "orders", keep_open=True)["id"]

        schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", headers=AUTH)
        operations = [
            op
            for op in (result.ok() for result in schema.get_all_operations())
            if "/breakpoints" in op.path or "/debug" in op.path
        ]
        assert len(operations) == 14
        for operation in operations:
            hold(c, jid)

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
            )
            def check(case: schemathesis.Case) -> None:
                case.path_parameters = {**(case.path_parameters or {}), "job_id": jid}
                case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)

            check()
        assert c.get(f"/api/jobs/{jid}").json()["status"] in ("running", "paused")
