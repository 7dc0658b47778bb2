"""Error handling: retries with backoff, ``wf.Retry``, and dead letters instead of a failed job.

    python -m examples.retries

``Fetch`` retries a failing call up to twice. A ``ValueError`` is not worth
retrying (``give_up_on``); whatever still fails is recorded as a dead letter
(``then="dead_letter"``) and the job goes on, so it completes with the good
pages in its outputs and the bad items in ``result.dead_letters``.
"""

from __future__ import annotations

import weirflow as wf

URLS = [
    "https://example.org/a",
    "https://example.org/flaky",  # fails once, then works
    "https://example.org/busy",  # asks for a retry once, then works
    "https://example.org/down",  # fails every attempt: dead letter after 3 attempts
    "ftp://example.org/b",  # a ValueError: dead letter at once, no retry
    "https://example.org/c",
]


class Fetch(wf.Routine):
    urls = wf.Slot()
    pages = wf.Event()
    on_error = wf.ErrorPolicy(
        retries=2,
        backoff=wf.Backoff(initial_s=0.01, factor=2.0, max_s=0.1, jitter=False),
        give_up_on=(ValueError,),
        then="dead_letter",
    )

    @urls.handler
    async def fetch(self, url: str, ctx: wf.Context) -> None:
        if not url.startswith("https://"):
            raise ValueError(f"unsupported scheme in {url}")
        if url.endswith("/down"):
            raise ConnectionError("connection refused")
        if url.endswith("/flaky") and ctx.attempt == 1:
            raise ConnectionError("connection reset")
        if url.endswith("/busy") and ctx.attempt == 1:
            raise wf.Retry(delay_s=0.01, reason="server busy")
        await ctx.emit(self.pages, f"{url} (attempt {ctx.attempt})")


def build_flow() -> wf.Flow:
    flow = wf.Flow("fetch")
    flow.add("fetch", Fetch())
    flow.output("fetch.pages")
    flow.validate()
    return flow


def main() -> None:
    result = wf.run(build_flow(), {"fetch.urls": URLS}, timeout_s=30)
    print(f"status: {result.status.value}")
    for page in result.outputs["fetch.pages"]:
        print(f"page: {page}")
    for letter in result.dead_letters:
        print(f"dead letter: {letter.slot} {letter.item} [{letter.reason}] {letter.error}")
    stats = result.stats.routines["fetch"]
    print(f"calls: {stats.calls}, failures: {stats.failures}, retries: {stats.retries}")


if __name__ == "__main__":
    main()
