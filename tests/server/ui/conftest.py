"""Browser fixtures: real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed by ``scripts/test``) driven by selenium against a live server.

Screenshots of every page go to ``$WEIRFLOW_SCREENSHOTS`` (default
``<tmp>/weirflow-screenshots``); the folder is printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server

FLOWS = "tests.server.ui.flows"
KEYS = f"{ADMIN_KEY}:admin,{READ_KEY}:read"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: the machine's network is closed: no first-run, sync, update or QUIC traffic either
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
WAIT_S = 15


def screenshot_dir() -> Path:
    folder = Path(
        os.environ.get("WEIRFLOW_SCREENSHOTS") or Path(tempfile.gettempdir()) / "weirflow-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_taken: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _taken:
        terminalreporter.write_line(f"web UI screenshots ({len(_taken)}): {screenshot_dir()}")


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[Live]:
    """A server with API keys, the UI test flows, a SQLite store and a worker of its own."""
    store = f"sqlite:///{tmp_path / 'ui.db'}"
    with live_server(FLOWS, api_keys=KEYS, store=store, workers=1) as server:
        yield server


Browser = Callable[[], webdriver.Chrome]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """``browser()``: a new headless Chromium with a fresh profile; all quit after the test."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: scripts/test installs chromium and chromium-driver")
    drivers: list[webdriver.Chrome] = []

    def new() -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path, prefix='chromium-')}")
        options.binary_location = CHROMIUM
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.implicitly_wait(0)
        drivers.append(driver)
        return driver

    yield new
    for driver in drivers:
        driver.quit()


def shoot(driver: webdriver.Chrome, name: str) -> Path:
    """A screenshot of the whole page (the window grown to its height) as ``name.png``."""
    height = driver.execute_script("return Math.min(4000, document.documentElement.scrollHeight)")
    driver.set_window_size(1400, max(700, int(height) + 140))
    path = screenshot_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    _taken.append(path)
    return path
