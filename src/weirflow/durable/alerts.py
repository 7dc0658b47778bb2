"""Alert rules, checked by the sweeper: a job running too long, a queue failing too often.

An alert is written as an event (``alert.long_running``, ``alert.failure_rate``),
logged as a structlog ``warning`` record ``event="alert"``, and POSTed as JSON to
``webhook_url`` when one is set. Each long-running job is reported once per
attempt; a queue's failure rate at most once per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog

from ..redact import redact_text
from .store import Store

log = structlog.get_logger("weirflow.durable")

LONG_RUNNING = "alert.long_running"
FAILURE_RATE = "alert.failure_rate"


@dataclass(frozen=True)
class AlertRules:
    """``long_running_s``: alert on a job running longer than this. ``failure_rate``
    (0..1): alert when more than this share of a queue's finished attempts in the last
    ``failure_window_s`` failed, once at least ``failure_min_jobs`` finished."""

    long_running_s: float | None = None
    failure_rate: float | None = None
    failure_window_s: float = 300.0
    failure_min_jobs: int = 5
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        def seconds(name: str, value: float | None, low: float) -> None:
            if value is not None and not (math.isfinite(value) and value >= low):
                raise ValueError(f"{name} must be a finite number >= {low:g}, not {value!r}")

        seconds("long_running_s", self.long_running_s, 0)
        seconds("failure_window_s", self.failure_window_s, 0.001)
        seconds("webhook_timeout_s", self.webhook_timeout_s, 0.001)
        rate = self.failure_rate
        if rate is not None and not 0 <= rate <= 1:  # (nan: not in range either)
            raise ValueError(f"failure_rate must be from 0 to 1, not {rate!r}")


class Alerts:
    """Checks ``rules`` against ``store`` (``check`` is called by the sweeper)."""

    def __init__(self, rules: AlertRules, store: Store) -> None:
        self.rules = rules
        self.store = store

    async def check(self, queue: str) -> list[dict[str, Any]]:
        """Raise every alert due now; returns what was sent."""
        sent: list[dict[str, Any]] = []
        now = self.store.clock()
        rules = self.rules
        if rules.long_running_s is not None:
            for job in await self.store.running_since(now - rules.long_running_s):
                already = await self.store.events(job_id=job.id, kind=LONG_RUNNING)
                if any(e.data.get("attempt") == job.attempt for e in already):
                    continue
                data = {
                    "attempt": job.attempt,
                    "flow": job.flow,
                    "worker": job.worker_id,
                    "running_s": round(now - (job.started_at or now), 3),
                    "threshold_s": rules.long_running_s,
                }
                sent.append(await self._raise(LONG_RUNNING, job.queue, job.id, data))
        if rules.failure_rate is not None:
            since = now - rules.failure_window_s
            failed, finished = await self.store.finished_counts(queue, since)
            rate = failed / finished if finished else 0.0
            if finished >= rules.failure_min_jobs and rate > rules.failure_rate:
                recent = await self.store.events(kind=FAILURE_RATE, since=since)
                if not any(e.queue == queue for e in recent):
                    data = {
                        "failed": failed,
                        "finished": finished,
                        "rate": round(rate, 4),
                        "threshold": rules.failure_rate,
                        "window_s": rules.failure_window_s,
                    }
                    sent.append(await self._raise(FAILURE_RATE, queue, None, data))
        return sent

    async def _raise(self, kind: str, queue: str, job_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
        await self.store.add_event(job_id, queue, kind, data)
        alert = {"kind": kind, "queue": queue, "job_id": job_id, "at": self.store.clock(), "data": data}
        log.warning("alert", **alert)
        if self.rules.webhook_url:
            await self._post(alert)
        return alert

    async def _post(self, alert: dict[str, Any]) -> None:
        import httpx  # (here: a worker without a webhook never loads the HTTP client)

        url = self.rules.webhook_url
        assert url is not None
        try:
            async with httpx.AsyncClient(timeout=self.rules.webhook_timeout_s) as client:
                response = await client.post(url, json=alert)
                response.raise_for_status()
        except httpx.HTTPError as e:  # an unreachable webhook must not stop the sweeper
            # a webhook URL often holds its secret (Slack's is in the path): only its host is shown
            shown = webhook_host(url)
            error = redact_text(str(e).replace(url, shown), url)
            log.error("alert_webhook_failed", webhook=shown, kind=alert["kind"], error=error)


def webhook_host(url: str) -> str:
    """``https://hooks.example.com/…``: where a webhook goes, without its path or userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"
