"""A ``JobSpec`` with a non-finite ``delay_s`` or ``timeout_s`` (inf, nan) is refused where
it is made, with ``JobError``, so every store treats it alike (before: PostgreSQL refused
``delay_s=inf`` and read ``timeout_s=inf`` back as ``None``, SQLite refused ``delay_s=nan``
with an IntegrityError, Redis raised a bare ``OverflowError``/``ValueError``)."""

from __future__ import annotations

import math

import pytest

from weirflow.durable import JobSpec, Store
from weirflow.errors import JobError

NON_FINITE = [
    ("delay_s", math.inf),
    ("delay_s", -math.inf),
    ("delay_s", math.nan),
    ("timeout_s", math.inf),
    ("timeout_s", math.nan),
]


@pytest.mark.parametrize(("field", "value"), NON_FINITE)
def test_a_non_finite_delay_or_timeout_is_refused_by_the_spec(field: str, value: float) -> None:
    with pytest.raises(JobError, match=field):
        JobSpec(flow="f", inputs={"a.item": [1]}, **{field: value})  # type: ignore[arg-type]


async def test_every_store_keeps_a_large_finite_delay_and_timeout(store: Store) -> None:
    # the finite bound is not a store limit: a day's delay and timeout go in and come back
    job_id = await store.submit(JobSpec(flow="f", inputs={"a.item": [1]}, delay_s=86400.0, timeout_s=86400.0))
    job = await store.get(job_id)
    assert job is not None
    assert job.timeout_s == 86400.0
    assert job.run_at - store.clock() == pytest.approx(86400.0, abs=60.0)
