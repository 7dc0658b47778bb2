"""``/metrics``: Prometheus text read from the engine at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import Live, finished_result, send, start_job


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_read_the_engine_at_scrape_time(fresh: Live) -> None:
    c = fresh.client
    done = start_job(c, "picky", inputs={"check.items": ["a", "bad", "b"]})["id"]
    finished_result(c, done)
    jid = start_job(c, "stream", keep_open=True)["id"]
    c.post(f"/api/jobs/{jid}/pause")
    send(c, jid, "clean.items", [1, 2, 3])

    response = c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    slot = {"flow": "stream", "slot": "clean.items"}
    assert _value(samples, "weirflow_slot_queue_size", **slot) == 3
    assert _value(samples, "weirflow_slot_capacity", **slot) == 5
    assert _value(samples, "weirflow_slot_usage_ratio", **slot) == 0.6
    assert _value(samples, "weirflow_slot_enqueued_total", **slot) == 3
    assert _value(samples, "weirflow_slot_processed_total", **slot) == 0
    assert _value(samples, "weirflow_slot_dead_lettered_total", **slot) == 0
    assert _value(samples, "weirflow_slot_blocked_seconds_total", **slot) == 0
    assert _value(samples, "weirflow_slot_blocked_emitters", **slot) == 0
    assert _value(samples, "weirflow_jobs", flow="stream", status="paused") == 1
    assert _value(samples, "weirflow_jobs", flow="picky", status="completed") == 1
    assert not any("job" in dict(labels) for _, labels in samples)  # series do not grow with jobs
    checked = {"flow": "picky", "slot": "check.items"}  # finished: counted, not read live
    assert _value(samples, "weirflow_slot_enqueued_total", **checked) == 3
    assert _value(samples, "weirflow_slot_processed_total", **checked) == 2
    assert _value(samples, "weirflow_slot_dead_lettered_total", **checked) == 1
    assert ("weirflow_slot_queue_size", frozenset(checked.items())) not in samples

    picky = {"flow": "picky", "routine": "check"}
    assert _value(samples, "weirflow_handler_duration_seconds_count", **picky) == 3
    assert _value(samples, "weirflow_handler_duration_seconds_bucket", **picky, le="+Inf") == 3
    assert _value(samples, "weirflow_handler_errors_total", **picky) == 1
    assert _value(samples, "weirflow_dead_letters_total", flow="picky", reason="handler_failed") == 1
    assert "# TYPE weirflow_breakpoint_hits_total counter" in response.text

    c.post(f"/api/jobs/{jid}/resume")
    c.post(f"/api/jobs/{jid}/close")
    finished_result(c, jid)
    after = _samples(c.get("/metrics").text)
    assert _value(after, "weirflow_handler_duration_seconds_count", flow="stream", routine="clean") == 3
    assert _value(after, "weirflow_jobs", flow="stream", status="completed") == 1
    assert _value(after, "weirflow_slot_enqueued_total", **slot) == 3  # kept, not gone with the job
    assert _value(after, "weirflow_slot_processed_total", **slot) == 3
