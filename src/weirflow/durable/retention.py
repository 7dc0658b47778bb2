"""Which finished jobs retention removes (shared by every backend)."""

from __future__ import annotations

from collections.abc import Iterable

from .models import COMPLETED, Retention


def expired_ids(finished: Iterable[tuple[str, str, float]], retention: Retention, now: float) -> list[str]:
    """Ids to delete among ``(id, status, finished_at)``: completed jobs older than
    ``keep_completed_s`` or beyond the newest ``keep_completed_count``; failed and
    cancelled jobs older than ``keep_failed_s``."""
    done: list[tuple[str, float]] = []
    gone: list[str] = []
    for job_id, status, at in finished:
        if status == COMPLETED:
            done.append((job_id, at))
        elif retention.keep_failed_s is not None and at < now - retention.keep_failed_s:
            gone.append(job_id)
    done.sort(key=lambda x: x[1], reverse=True)
    for i, (job_id, at) in enumerate(done):
        too_old = retention.keep_completed_s is not None and at < now - retention.keep_completed_s
        too_many = retention.keep_completed_count is not None and i >= retention.keep_completed_count
        if too_old or too_many:
            gone.append(job_id)
    return gone
