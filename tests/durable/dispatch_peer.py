"""A process that dispatches jobs at once (``python -m tests.durable.dispatch_peer STORE
REGISTRY N``): N concurrent submits to pool ``gpu``; prints how many went to a node."""

from __future__ import annotations

import asyncio
import sys

from weirflow.cluster import Dispatcher, Registry
from weirflow.durable import JobSpec, open_store


async def main(store_url: str, registry_url: str, n: int) -> None:
    store = open_store(store_url)
    await store.open()
    registry = Registry(registry_url, deadline_s=1.0)
    await registry.start()
    try:
        await registry.wait_for(lambda: len(registry.nodes("gpu")) == 3, timeout_s=10)
        dispatcher = Dispatcher(registry)
        spec = JobSpec(flow="one", inputs={"a.item": [{}]}, queue="gpu")
        await asyncio.gather(*(dispatcher.submit(store, spec, pool="gpu") for _ in range(n)))
        print(dispatcher.placed, flush=True)
    finally:
        await registry.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
