"""The web UI in a real browser (headless Chromium through selenium) against a live server
with API keys, a SQLite store and a worker. Every wait is on what the page shows
(``WebDriverWait``), never a sleep; ``window.__page`` set before an action and read after
it shows the page was not reloaded. Each page is photographed (``conftest.shoot``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.redisserver import started_server
from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server
from tests.server.ui.conftest import FLOWS, KEYS, WAIT_S, Browser, shoot

pytestmark = pytest.mark.slow

#: buttons that change something (zoom buttons, class ``view``, only change the view)
ACTIONS = "main button:not(.view)"

SCRIPT = "<script>window.__xss = 1</script>"
IMG = '<img src=x onerror="window.__xss = 2">'


def wait(driver: webdriver.Chrome, check: Any, timeout_s: float = WAIT_S) -> Any:
    """Wait until ``check(driver)`` is truthy (elements redrawn meanwhile are looked up again)."""
    waiting = WebDriverWait(driver, timeout_s, ignored_exceptions=[StaleElementReferenceException])
    return waiting.until(lambda d: check(d))


def find(driver: webdriver.Chrome, css: str) -> WebElement:
    return wait(driver, lambda d: (d.find_elements(By.CSS_SELECTOR, css) or [None])[0])


def click(driver: webdriver.Chrome, css: str) -> None:
    """Click the first element matching ``css``, found again if a live refresh re-rendered
    it between the find and the click (a stale element is retried, not a failure)."""

    def attempt(d: webdriver.Chrome) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, css)
        if not found:
            return False
        found[0].click()
        return True

    wait(driver, attempt)


def text(driver: webdriver.Chrome, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def value(driver: webdriver.Chrome, css: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].get_attribute("value") if found else None


def log_in(driver: webdriver.Chrome, live: Live, key: str, path: str = "/ui") -> None:
    driver.get(live.url + path)
    find(driver, "#key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver, lambda d: "role:" in text(d, "#who"))


def steps(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    """(routine, status) of each row of the steps table."""
    rows = [r.text.split() for r in driver.find_elements(By.CSS_SELECTOR, "#steps tbody tr")]
    return [(r[0], r[2]) for r in rows]


def mark_page(driver: webdriver.Chrome) -> None:
    driver.execute_script("window.__page = 'same'")


def same_page(driver: webdriver.Chrome) -> bool:
    return bool(driver.execute_script("return window.__page === 'same'"))


def api(live: Live) -> httpx.Client:
    return live.new_client(Authorization=f"Bearer {ADMIN_KEY}")


def dark(driver: webdriver.Chrome, on: bool) -> None:
    features = [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


def test_log_in_with_a_key_and_open_a_flows_graph(ui_server: Live, browser: Browser) -> None:
    driver = browser()
    driver.get(ui_server.url + "/ui/flows")
    assert "/ui/login?next=" in driver.current_url
    shoot(driver, "01-login")
    find(driver, "#key").send_keys("wrong-key")
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait(driver, lambda d: text(d, "#error") == "invalid API key")
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(ADMIN_KEY, Keys.ENTER)  # the keyboard alone logs in
    wait(driver, lambda d: d.current_url.endswith("/ui/flows") and "stream" in text(d, "main table"))
    assert text(driver, "#who").startswith("role: admin")
    shoot(driver, "03-flows")
    driver.find_element(By.LINK_TEXT, "stream").click()
    graph = find(driver, "#graph svg.graph")
    routines = [g.get_attribute("data-routine") for g in graph.find_elements(By.CSS_SELECTOR, "g.node")]
    assert routines == ["clean", "sink"]
    [edge] = graph.find_elements(By.CSS_SELECTOR, "g.edge")
    assert edge.get_attribute("data-target") == "clean.out -> sink.items"
    assert edge.get_attribute("tabindex") == "0"  # reachable from the keyboard
    clean, sink = (g.rect for g in graph.find_elements(By.CSS_SELECTOR, "g.node"))
    assert clean["x"] + clean["width"] < sink["x"]  # laid out left to right, not overlapping
    shoot(driver, "04-flow-graph")

    driver.get(ui_server.url + "/ui/flows/wide")  # 50 routines: laid out, none overlapping
    nodes = find(driver, "#graph svg.graph").find_elements(By.CSS_SELECTOR, "g.node")
    assert len(nodes) == 50
    boxes = [n.rect for n in nodes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["width"] <= b["x"]
                or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"]
                or b["y"] + b["height"] <= a["y"]
            )
            assert apart, (a, b)
    shoot(driver, "05-flow-50-routines")

    driver.get(ui_server.url + "/ui")
    wait(driver, lambda d: "Jobs in memory" in text(d, "main"))
    wait(driver, lambda d: "Failure rate per queue" in text(d, "main"))
    # pipelines by state and nodes by state have their cards, with an explanation when empty
    wait(driver, lambda d: "No pipeline yet" in text(d, "#overview-pipelines"))
    wait(driver, lambda d: "No node registry on this server" in text(d, "#overview-nodes"))
    shoot(driver, "02-overview")
    for path, name, expect in [
        ("/ui/jobs", "06-jobs", "job(s)"),
        ("/ui/durable", "09-durable-jobs", "No durable job matches"),
        ("/ui/pipelines", "12-pipelines-empty", "No pipeline yet"),
        ("/ui/nodes", "13-nodes", "No node registry on this server"),
    ]:
        driver.get(ui_server.url + path)
        wait(driver, lambda d, expect=expect: expect in text(d, "main"))
        shoot(driver, name)
    driver.get(ui_server.url + "/docs")
    wait(driver, lambda d: "weirflow" in text(d, ".swagger-ui .info"))
    assert "/api/jobs" in text(driver, ".swagger-ui")
    shoot(driver, "14-api-docs")

    for evil in ("//example.com/x", "/\\example.com/x", "https://example.com/x"):
        driver.delete_all_cookies()  # the login sends only to pages of this server
        driver.get(f"{ui_server.url}/ui/login?next={quote(evil, safe='')}")
        find(driver, "#key").send_keys(ADMIN_KEY, Keys.ENTER)
        wait(driver, lambda d: "role:" in text(d, "#who"))
        assert driver.current_url == f"{ui_server.url}/ui", evil


def offline(driver: webdriver.Chrome, on: bool) -> None:
    """Cut (or restore) the browser's network, this server included: a real failed fetch."""
    driver.execute_cdp_cmd("Network.enable", {})
    conditions = {"offline": on, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", conditions)


def test_the_nodes_page_shows_its_registry_card_again_after_a_failed_refresh(
    browser: Browser, redis_url: str
) -> None:
    with live_server(FLOWS, api_keys=KEYS, registry=redis_url) as server:
        driver = browser()
        log_in(driver, server, ADMIN_KEY, "/ui/nodes")
        # (the state may flap to recovering on a loaded machine: any state will do)
        wait(driver, lambda d: text(d, "#registry-state") and "revision" in text(d, "#registry-status"))
        mark_page(driver)
        offline(driver, True)
        wait(driver, lambda d: text(d, "#nodes-list .error"))  # a refresh failed (every 2 s)
        shoot(driver, "13b-nodes-refresh-failed")
        offline(driver, False)
        wait(driver, lambda d: text(d, "#registry-state") and not text(d, "#nodes-list .error"))
        assert same_page(driver)  # no reload: the page's own next refresh drew it again
        assert find(driver, "#registry-status").is_displayed()
        assert "No nodes registered" in text(driver, "#nodes-list")
        shoot(driver, "13c-nodes-after-a-failed-refresh")


def test_the_overview_says_the_store_does_not_answer_and_still_shows_the_jobs_in_memory(
    browser: Browser,
) -> None:
    redis_server = started_server()
    try:
        with live_server(FLOWS, api_keys=KEYS, store=redis_server.url(0)) as server:
            driver = browser()
            log_in(driver, server, ADMIN_KEY, "/ui")
            wait(driver, lambda d: "flow(s) served" in text(d, "#overview-memory"))
            assert not driver.find_elements(By.CSS_SELECTOR, "#overview-memory [role=alert]")
            mark_page(driver)
            redis_server.pause()  # SIGSTOP: /readyz answers 503 with the store's error
            try:
                alert = wait(driver, lambda d: text(d, "#overview-memory [role=alert]"), timeout_s=30)
                assert "unreachable: the store did not answer within 1 s" in alert
                assert "flow(s) served" in text(driver, "#overview-memory")  # the jobs still shown
                shoot(driver, "02b-overview-store-unreachable")
            finally:
                redis_server.cont()
            wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#overview-memory [role=alert]"), 30)
            assert same_page(driver)
    finally:
        redis_server.destroy()


def test_start_pause_resume_and_stop_a_pipeline(ui_server: Live, browser: Browser) -> None:
    driver = browser()
    log_in(driver, ui_server, ADMIN_KEY, "/ui/pipelines")
    wait(driver, lambda d: "No pipeline yet" in text(d, "#pipelines"))
    find(driver, "#pipeline-name").send_keys("cam-1")
    driver.find_element(By.CSS_SELECTOR, "#pipeline-start").click()
    row = "#pipelines tbody tr"
    wait(
        driver,
        lambda d: "cam-1" in text(d, row) and d.find_elements(By.CSS_SELECTOR, f"{row} [data-state=running]"),
    )
    wait(driver, lambda d: " ms" in text(d, row))  # a health check answered: its round trip is shown
    mark_page(driver)
    shoot(driver, "12-pipelines")
    with api(ui_server) as client:
        [p] = client.get("/api/pipelines").json()
    assert (p["name"], p["state"]) == ("cam-1", "running")
    for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        click(driver, f"button[data-action={action}]:not([disabled])")
        wait(driver, lambda d, s=state: d.find_elements(By.CSS_SELECTOR, f"{row} [data-state={s}]"))
        with api(ui_server) as client:
            assert client.get(f"/api/pipelines/{p['id']}").json()["state"] == state
    assert same_page(driver)


def test_remove_a_finished_pipeline_from_the_pipelines_page(ui_server: Live, browser: Browser) -> None:
    with api(ui_server) as client:
        live, done = (client.post("/api/pipelines", json={"flow": "stream", "name": n}).json() for n in "ab")
        assert client.delete(f"/api/pipelines/{done['id']}").json()["state"] == "stopped"
        driver = browser()
        log_in(driver, ui_server, ADMIN_KEY, "/ui/pipelines")
        remove = f"button[data-action=remove][data-pipeline='{done['id']}']"
        find(driver, remove)
        # only a finished pipeline has one: the running one can be stopped, not removed
        assert (
            driver.find_elements(By.CSS_SELECTOR, f"[data-pipeline='{live['id']}'][data-action=remove]") == []
        )
        assert find(driver, f"button[data-action=stop][data-pipeline='{live['id']}']").is_enabled()
        mark_page(driver)
        shoot(driver, "12b-pipelines-finished")
        click(driver, remove)
        wait(driver, lambda d: d.switch_to.alert).accept()
        wait(
            driver, lambda d: done["id"] not in text(d, "#pipelines") and live["id"] in text(d, "#pipelines")
        )
        assert client.get(f"/api/pipelines/{done['id']}").status_code == 404
        assert client.get(f"/api/pipelines/{live['id']}").json()["state"] == "running"
        assert same_page(driver)
        shoot(driver, "12c-pipelines-removed")

        assert client.delete(f"/api/pipelines/{live['id']}").json()["state"] == "stopped"
        reader = browser()  # a read key sees the finished pipeline, no button, and cannot remove it
        log_in(reader, ui_server, READ_KEY, "/ui/pipelines")
        wait(reader, lambda d: d.find_elements(By.CSS_SELECTOR, "#pipelines [data-state=stopped]"))
        assert reader.find_elements(By.CSS_SELECTOR, ACTIONS) == []
        forged = reader.execute_async_script(
            """const done = arguments[arguments.length - 1];
            (async () => {
              const csrf = (await (await fetch("/ui/session")).json()).csrf;
              const r = await fetch(arguments[0], {method: "DELETE", credentials: "same-origin",
                                                   headers: {"X-CSRF-Token": csrf}});
              done(r.status);
            })();""",
            f"/api/pipelines/{live['id']}?forget=true",
        )
        assert forged == 403
        assert client.get(f"/api/pipelines/{live['id']}").json()["state"] == "stopped"


def test_a_streaming_job_shows_its_queue_fill_change_without_a_reload(
    ui_server: Live, browser: Browser
) -> None:
    driver = browser()
    log_in(driver, ui_server, ADMIN_KEY, "/ui/flows/stream")
    inputs = find(driver, "#inputs")
    inputs.clear()
    inputs.send_keys('{"clean.items": ["first"]}')
    driver.find_element(By.ID, "keep-open").click()
    driver.find_element(By.ID, "validate").click()
    wait(driver, lambda d: "Valid: 1 item(s) for clean.items" in text(d, "main"))
    driver.find_element(By.ID, "start").click()
    wait(driver, lambda d: "/ui/jobs/" in d.current_url)
    job_id = driver.current_url.rsplit("/", 1)[1]
    fill = 'g[data-slot="clean.items"] text.dim'
    wait(driver, lambda d: text(d, fill) == "0/5")
    mark_page(driver)
    click(driver, 'button[data-action="pause"]')
    wait(driver, lambda d: "paused" in text(d, "main .badge"))
    items = find(driver, "#send-items")
    items.clear()
    items.send_keys('["x", "y", "z"]')
    driver.find_element(By.ID, "send").click()
    wait(driver, lambda d: text(d, fill) == "3/5")  # the graph shows the queue filling
    assert "3" in text(driver, "#main table tbody tr")  # and so does the queues table
    shoot(driver, "07-job-queue-filling")
    click(driver, 'button[data-action="resume"]')
    wait(driver, lambda d: text(d, fill) == "0/5")
    click(driver, 'button[data-action="close"]')
    wait(driver, lambda d: "completed" in text(d, "main .badge"))
    outputs = find(driver, '#outputs pre[data-output="sink.all"]')
    assert json.loads(outputs.text) == [["first", "x", "y", "z"]]
    assert "event" in text(driver, "#events") or "status" in text(driver, "#events")
    assert same_page(driver)
    with api(ui_server) as client:
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "completed"


def test_a_connection_breakpoint_with_a_condition_edit_step_resume(ui_server: Live, browser: Browser) -> None:
    with api(ui_server) as client:
        job_id = client.post("/api/jobs", json={"flow": "stream", "keep_open": True}).json()["id"]
        driver = browser()
        log_in(driver, ui_server, ADMIN_KEY, f"/ui/jobs/{job_id}")
        find(driver, "#bp-add")
        click(driver, 'g[data-slot="clean.items"]')  # a click on the graph fills the form
        assert driver.find_element(By.ID, "bp-kind").get_attribute("value") == "slot"
        assert driver.find_element(By.ID, "bp-target").get_attribute("value") == "clean.items"
        edge = find(driver, 'g.edge[data-target="clean.out -> sink.items"]')
        driver.execute_script("arguments[0].focus()", edge)
        ActionChains(driver).send_keys(Keys.ENTER).perform()  # and so does the keyboard
        assert driver.find_element(By.ID, "bp-kind").get_attribute("value") == "connection"
        assert driver.find_element(By.ID, "bp-target").get_attribute("value") == "clean.out -> sink.items"
        condition = driver.find_element(By.ID, "bp-condition")
        condition.send_keys('item == "b" &&')
        driver.find_element(By.ID, "bp-add").click()
        error = wait(driver, lambda d: text(d, "#bp-error"))
        assert "line 1" in error and "column" in error, error
        condition.clear()
        condition.send_keys('item == "b"')
        driver.find_element(By.ID, "bp-add").click()
        wait(driver, lambda d: 'item == "b"' in text(d, "#breakpoints"))
        assert text(driver, "#bp-error") == ""
        mark_page(driver)

        accepted = client.post(
            f"/api/jobs/{job_id}/input", json={"slot": "clean.items", "items": ["a", "b", "c"]}
        )
        assert accepted.status_code == 202, accepted.text
        wait(driver, lambda d: text(d, "#stopped-at") == "clean.out -> sink.items")  # the hit, live
        held = find(driver, "textarea#held-item")
        assert held.get_attribute("value") == '"b"'
        shoot(driver, "08-debugger-stopped")
        held.clear()
        held.send_keys('"B-edited"')
        driver.find_element(By.ID, "save-item").click()
        wait(driver, lambda d: d.find_element(By.ID, "held-item").get_attribute("value") == '"B-edited"')
        driver.find_element(By.ID, "eval-expr").send_keys("item + '!'")
        driver.find_element(By.ID, "eval").click()
        wait(driver, lambda d: text(d, "#eval-value") == '"B-edited!"')
        shoot(driver, "08b-debugger-edited")

        driver.find_element(By.ID, "step").click()
        # the step lets the edited item go; wherever it stops next, resume lets everything go
        wait(driver, lambda d: value(d, "textarea#held-item") != '"B-edited"')
        if driver.find_elements(By.ID, "resume"):
            driver.find_element(By.ID, "resume").click()
        else:
            click(driver, 'button[data-action="resume"]')
        wait(driver, lambda d: not d.find_elements(By.ID, "stopped-at"))
        click(driver, 'button[data-action="close"]')
        wait(driver, lambda d: "completed" in text(d, "main .badge"))
        outputs = find(driver, '#outputs pre[data-output="sink.all"]')
        assert json.loads(outputs.text) == [["a", "B-edited", "c"]]
        assert same_page(driver)
        result = client.get(f"/api/jobs/{job_id}/result").json()
        assert result["outputs"]["sink.all"] == [["a", "B-edited", "c"]]


def test_retry_a_failed_durable_job_and_watch_its_steps_fill_in(
    ui_server: Live, browser: Browser, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with api(ui_server) as client:
        body = {"flow": "gated", "inputs": {"a.item": [{"gate": str(gate), "sleep_s": 1.0}]}, "attempts": 1}
        job_id = client.post("/api/store/jobs", json=body).json()["id"]
    driver = browser()
    log_in(driver, ui_server, ADMIN_KEY, "/ui/durable")
    click(driver, f'a[href="/ui/durable/{job_id}"]')
    wait(driver, lambda d: "failed" in text(d, "#durable-head .badge"))
    assert "is closed" in text(driver, "#durable-error")
    assert steps(driver) == [("a", "completed"), ("b", "failed")]
    shoot(driver, "10-durable-job-failed")
    gate.touch()
    mark_page(driver)
    driver.find_element(By.ID, "retry").click()
    seen: set[str] = set()

    def done(d: webdriver.Chrome) -> bool:
        seen.add(text(d, "#durable-head .badge"))
        return "completed" in text(d, "#durable-head .badge")

    wait(driver, done, timeout_s=30)
    # one row per step: the rerun of b is its row again, one attempt higher (fencing, d1db41f)
    assert steps(driver) == [("a", "completed"), ("b", "completed"), ("c", "completed")]
    assert seen & {"queued", "running"}, seen  # it was watched on its way, not only at the end
    assert same_page(driver)
    shoot(driver, "11-durable-job-retried")
    driver.get(ui_server.url + "/ui/durable")
    wait(driver, lambda d: "completed" in text(d, "#durable-list"))
    shoot(driver, "09b-durable-list")
    age = find(driver, "#clean-age")  # bulk: clean completed jobs finished more than 0 min ago
    age.clear()
    age.send_keys("0")
    driver.find_element(By.ID, "clean").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, lambda d: "No durable job matches" in text(d, "#durable-list"))
    with api(ui_server) as client:
        assert client.get(f"/api/store/jobs/{job_id}").status_code == 404


def test_pause_and_resume_a_durable_queue_from_the_jobs_page(ui_server: Live, browser: Browser) -> None:
    driver = browser()
    log_in(driver, ui_server, ADMIN_KEY, "/ui/durable")
    wait(driver, lambda d: "no queue paused" in text(d, "#queues-paused"))
    queue = find(driver, "#bulk-queue")
    queue.clear()
    queue.send_keys("ui-paused")
    driver.find_element(By.ID, "pause-queue").click()
    wait(driver, lambda d: "paused: ui-paused" in text(d, "#queues-paused"))
    with api(ui_server) as client:
        assert client.get("/api/store/queues").json() == {"paused": ["ui-paused"]}
    driver.find_element(By.ID, "resume-queue").click()
    wait(driver, lambda d: "no queue paused" in text(d, "#queues-paused"))
    with api(ui_server) as client:
        assert client.get("/api/store/queues").json() == {"paused": []}


def test_a_read_key_sees_no_action_buttons_and_a_forged_post_is_refused(
    ui_server: Live, browser: Browser
) -> None:
    with api(ui_server) as client:
        job_id = client.post("/api/jobs", json={"flow": "stream", "keep_open": True}).json()["id"]
        stored = client.post("/api/store/jobs", json={"flow": "gated", "inputs": {"a.item": [{}]}}).json()[
            "id"
        ]
        driver = browser()
        log_in(driver, ui_server, READ_KEY, f"/ui/jobs/{job_id}")
        assert text(driver, "#who").startswith("role: read")
        wait(driver, lambda d: "Breakpoints" in text(d, "#debugger"))
        wait(driver, lambda d: text(d, 'g[data-slot="clean.items"] text.dim') == "0/5")
        assert driver.find_elements(By.CSS_SELECTOR, ACTIONS) == []
        assert driver.find_elements(By.CSS_SELECTOR, "#send-items, #bp-add, #bp-form") == []
        shoot(driver, "15-read-key-job")
        driver.get(f"{ui_server.url}/ui/flows/stream")
        find(driver, "#graph svg.graph")
        assert driver.find_elements(By.CSS_SELECTOR, f"#start, #validate, {ACTIONS}") == []
        driver.get(f"{ui_server.url}/ui/durable/{stored}")
        wait(driver, lambda d: "completed" in text(d, "#durable-head .badge"))
        assert driver.find_elements(By.CSS_SELECTOR, ACTIONS) == []
        forged = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            (async () => {
              const plain = await fetch(arguments[0], {method: "POST", credentials: "same-origin"});
              const csrf = (await (await fetch("/ui/session")).json()).csrf;
              const signed = await fetch(arguments[0], {method: "POST", credentials: "same-origin",
                                                         headers: {"X-CSRF-Token": csrf}});
              done([plain.status, signed.status, (await signed.json()).detail]);
            })();""",
            f"/api/jobs/{job_id}/cancel",
        )
        assert forged == [403, 403, "this API key has role 'read'; POST needs 'admin'"]
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "running"


def test_items_with_markup_are_shown_as_text(ui_server: Live, browser: Browser, tmp_path: Path) -> None:
    with api(ui_server) as client:
        job_id = client.post(
            "/api/jobs", json={"flow": "stream", "inputs": {"clean.items": [SCRIPT, IMG]}}
        ).json()["id"]
        assert client.get(f"/api/jobs/{job_id}/result", params={"wait_s": 10}).json()["status"] == "completed"
        gate = tmp_path / SCRIPT  # the durable job's error names this path
        body = {"flow": "gated", "inputs": {"a.item": [{"gate": str(gate)}]}, "attempts": 1}
        stored = client.post("/api/store/jobs", json=body).json()["id"]
    driver = browser()
    log_in(driver, ui_server, ADMIN_KEY, f"/ui/jobs/{job_id}")
    outputs = find(driver, '#outputs pre[data-output="sink.all"]')
    assert json.loads(outputs.text) == [[SCRIPT, IMG]]
    assert driver.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    shoot(driver, "16-markup-as-text")
    driver.get(f"{ui_server.url}/ui/durable/{stored}")
    wait(driver, lambda d: "failed" in text(d, "#durable-head .badge"))
    assert SCRIPT in text(driver, "#durable-error")
    assert driver.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert driver.execute_script("return window.__xss === undefined")
    dark(driver, True)
    shoot(driver, "17-dark-durable-job")
    driver.get(f"{ui_server.url}/ui/jobs/{job_id}")
    find(driver, '#outputs pre[data-output="sink.all"]')
    shoot(driver, "18-dark-job")
    assert driver.execute_script("return window.__xss === undefined")


def test_a_thousand_jobs_are_listed_a_page_at_a_time(ui_server: Live, browser: Browser) -> None:
    with api(ui_server) as client:
        for n in range(1000):
            assert (
                client.post("/api/jobs", json={"flow": "picky", "inputs": {"check.items": [n]}}).status_code
                == 201
            )
    driver = browser()
    log_in(driver, ui_server, READ_KEY, "/ui/jobs?status=completed")
    wait(driver, lambda d: "1000 job(s)" in text(d, "main"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "main tbody tr")) == 50
    assert "1\u201350 of 1000" in text(driver, ".pager")
    first = text(driver, "main tbody tr")
    driver.find_element(By.XPATH, "//button[contains(., 'Next')]").click()
    wait(driver, lambda d: "51\u2013100 of 1000" in text(d, ".pager") and text(d, "main tbody tr") != first)
    assert len(driver.find_elements(By.CSS_SELECTOR, "main tbody tr")) == 50
    shoot(driver, "06b-jobs-1000")
    driver.get(ui_server.url + "/ui")
    wait(driver, lambda d: "1000" in text(d, '.figure[data-status="completed"]'))
