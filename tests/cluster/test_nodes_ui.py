"""The Nodes page in a real browser (headless Chromium) against a live server with ``--registry``:
the nodes and the registry's status, redrawn without a reload, and still shown (from the
server's cache) while Redis is stopped. Screenshots as in tests/server/ui."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from selenium.webdriver.common.by import By

from tests.redisserver import RedisServer
from tests.server.conftest import live_server
from tests.server.ui.conftest import Browser, browser, shoot  # noqa: F401  (browser: a fixture)
from tests.server.ui.test_ui_browser import mark_page, same_page, text, wait
from weirflow.cluster import Registry

Make = Callable[..., Registry]

pytestmark = pytest.mark.slow


def rows(driver: object) -> list[str]:
    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#nodes-list tbody tr")]  # type: ignore[attr-defined]


async def test_the_nodes_page_shows_nodes_load_and_a_degraded_registry(
    own_server: RedisServer,
    registries: Make,
    browser: Browser,  # noqa: F811
) -> None:
    url = own_server.url(0)
    reg = registries(url, ttl_s=600)
    await reg.start()
    await reg.register(
        "gpu-1", pool="gpu", capacity=4, running=1, labels={"zone": "a"}, address="10.0.0.1:8000"
    )
    await reg.register(
        "gpu-2", pool="gpu", capacity=2, running=2, labels={"zone": "b"}, address="10.0.0.2:8000"
    )
    await reg.register("cpu-1", pool="cpu", capacity=8, running=0)
    await reg.drain("cpu-1")
    with live_server("tests.server.ui.flows", registry=url) as live:
        driver = browser()
        driver.get(live.url + "/ui/nodes")
        wait(driver, lambda d: len(rows(d)) == 3)
        assert "normal" in text(driver, "#registry-state")
        listed = rows(driver)
        assert listed[0].startswith("cpu-1 cpu draining 0/8")
        assert (
            listed[1].startswith("gpu-1 gpu up 1/4")
            and "zone=a" in listed[1]
            and "10.0.0.1:8000" in listed[1]
        )
        assert listed[2].startswith("gpu-2 gpu up 2/2")
        full = driver.find_elements(By.CSS_SELECTOR, "#nodes-list tbody tr")[2].find_element(
            By.CSS_SELECTOR, ".bar"
        )
        assert "full" in (full.get_attribute("class") or "") and full.get_attribute("aria-valuenow") == "100"
        shoot(driver, "13-nodes-registry")

        mark_page(driver)
        await reg.register("gpu-3", pool="gpu", capacity=1)
        wait(driver, lambda d: len(rows(d)) == 4)  # the refresh draws it, no reload
        assert same_page(driver)

        driver.find_element(By.ID, "filter-pool").send_keys("cpu\n")
        wait(driver, lambda d: len(rows(d)) == 1 and rows(d)[0].startswith("cpu-1"))
        assert driver.current_url.endswith("/ui/nodes?pool=cpu")

        own_server.pause()
        try:
            wait(driver, lambda d: "degraded" in text(d, "#registry-state"))
            assert rows(driver)[0].startswith("cpu-1")  # still served from the cache
            assert "not answering" in text(driver, "#registry-status")
            shoot(driver, "13-nodes-degraded")
        finally:
            own_server.cont()
        wait(driver, lambda d: "normal" in text(d, "#registry-state"))
