"""End to end: the real `alma-hooks ui` process, a real SQLite file, Debian's headless Chromium.

The test starts `alma-hooks ui` as a subprocess on a seeded database, loads the printed URL
in Chromium (driven by Selenium through Debian's chromedriver; no browser is ever
downloaded), searches, opens a heuristic, forgets a memory, and checks the database and
the audit log; it also shows that requests without the token are refused. Screenshots are
saved in the test's tmp_path (their paths are printed).

Needs the Debian packages ``chromium`` and ``chromium-driver``; without them the test is
skipped, except in CI (``CI`` set), where it fails: `.ci/run` installs them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewertools import USER, XSS, Seeded, post_json, request, seed

from alma_hooks.errors import NotFound
from alma_hooks.storage.sqlite import SQLiteStore

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]
ALMA_HOOKS = Path(sys.executable).with_name("alma-hooks")
WAIT_S = 30


def _unavailable(reason: str) -> None:
    # In CI a missing browser would mean the viewer's end-to-end test silently stopped testing anything.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"headless Chromium unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"headless Chromium unavailable: {reason} (fix: apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            _unavailable(f"{path} not found")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("the selenium package is not installed (./install.sh --dev)")
    # Selenium Manager must not look for (or download) a driver or a browser: both are given
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def world(tmp_path: Path, alma_home: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    monkeypatch.setenv("ALMA_USER_ID", USER)
    return seed(tmp_path, alma_home)


@pytest.fixture
def ui(world: Seeded) -> Iterator[str]:
    """The real `alma-hooks ui --no-open` in the seeded project; yields the URL it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen([str(ALMA_HOOKS), "ui", "--no-open", "--port", "0"], cwd=world.project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("alma-hooks ui: http://127.0.0.1:"):
            proc.kill()
            pytest.fail(f"alma-hooks ui printed no URL: {line!r} {proc.communicate(timeout=10)}")
        yield line.split(": ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""  # SIGTERM stops it cleanly


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=what)


def _memory_item(driver: Any, memory_id: str) -> Any:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f'#memory-list li.memory[data-id="{memory_id}"]')
    return found[0] if found else None


def test_viewer_in_headless_chromium(browser: Any, ui: str, world: Seeded, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base = ui.split("/?token=")[0]
    port, token = int(base.rsplit(":", 1)[1]), ui.split("token=")[1]

    # no token, no page: neither for a plain request, a wrong cookie, nor a write with the cookie only
    for headers in ({}, {"Cookie": f"alma_ui_{port}=nope"}, {"X-Alma-Token": "nope"}):
        status, _, body = request(port, "GET", "/api/memories", headers=headers)
        assert status == 403 and world.heuristic.text not in body.decode()
    status, _ = post_json(port, "/api/forget", {"id": world.heuristic.id}, None,
                          Cookie=f"alma_ui_{port}={token}")
    assert status == 403
    browser.get(base + "/")
    assert "needs its token" in browser.find_element(By.TAG_NAME, "body").text
    _shot(browser, tmp_path, "00-without-token")

    # the printed URL: the cookie is set and the token leaves the address bar
    browser.get(ui)
    _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "page ready")
    assert browser.current_url == base + "/"
    browser.get_log("browser")  # from here on the page must log no error (the 403 above did)
    _wait(browser, lambda d: _memory_item(d, world.xss.id), "memories listed")
    _shot(browser, tmp_path, "01-memories")

    # memory text with markup is shown as text and never runs
    xss_item = _memory_item(browser, world.xss.id)
    assert xss_item.find_element(By.CSS_SELECTOR, ".text").text == XSS
    assert browser.execute_script("return window.__pwned") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#memory-list script, #memory-list img")
    assert _memory_item(browser, world.b_memory.id) is None  # another project's memory never shows

    # search goes through the product's retrieval
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("flaky checkout test")
    browser.find_element(By.ID, "search-btn").click()
    _wait(browser, lambda d: "matches for" in d.find_element(By.ID, "list-summary").text, "search results")
    found = [li.get_attribute("data-id") for li in browser.find_elements(By.CSS_SELECTOR, "#memory-list li.memory")]
    assert world.heuristic.id in found and world.xss.id not in found
    assert {world.outcomes[1].id, world.outcomes[2].id} <= set(found)  # the tasks it was learned from match too
    _shot(browser, tmp_path, "02-search")

    # a heuristic's evidence outcomes and its confidence over time
    _memory_item(browser, world.heuristic.id).find_element(By.CSS_SELECTOR, ".text").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#detail .evidence li"), "evidence")
    evidence = browser.find_elements(By.CSS_SELECTOR, "#detail .evidence li")
    assert len(evidence) == len(world.outcomes)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#detail .evidence li.missing")) == 1  # forgotten since
    assert len(browser.find_elements(By.CSS_SELECTOR, "#detail svg.chart circle.dot")) == 3
    _shot(browser, tmp_path, "03-heuristic-detail")

    # forget the anti-pattern through the page
    browser.find_element(By.ID, "clear-btn").click()
    _wait(browser, lambda d: _memory_item(d, world.anti_pattern.id), "full list again")
    item = _memory_item(browser, world.anti_pattern.id)
    item.find_element(By.CSS_SELECTOR, ".forget-btn").click()
    item.find_element(By.CSS_SELECTOR, ".forget-reason").send_keys("wrong lesson")
    item.find_element(By.CSS_SELECTOR, ".forget-confirm").click()
    _wait(browser, lambda d: "Forgot" in d.find_element(By.ID, "status").text, "forget confirmed")
    _wait(browser, lambda d: _memory_item(d, world.anti_pattern.id) is None, "memory gone from the list")
    _shot(browser, tmp_path, "04-after-forget")

    # the database and its audit log changed
    store = SQLiteStore(world.config.db_path, world.config.policy)
    try:
        with pytest.raises(NotFound):
            store.get(world.scope, world.anti_pattern.id)
        row = store.audit_log(world.scope, memory_id=world.anti_pattern.id, with_snapshot=True)[0]
        assert (row["action"], row["reason"], row["actor"]) == ("delete", "viewer: wrong lesson", f"ui:{USER}")
        assert json.loads(row["snapshot"])["pattern"] == "rerun until green"
        assert store.get(world.scope, world.heuristic.id).version == 3  # nothing else was touched
    finally:
        store.close()

    # the audit tab shows it; the slice history shows what was injected, with tokens
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="audit"]').click()
    _wait(browser, lambda d: "viewer: wrong lesson" in d.find_element(By.ID, "audit-table").text, "audit row")
    _shot(browser, tmp_path, "05-audit")
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="injections"]').click()
    _wait(browser, lambda d: "98 tokens in all" in d.find_element(By.ID, "injection-summary").text, "slices")
    assert "forgotten since" in browser.find_element(By.ID, "injection-list").text
    _shot(browser, tmp_path, "06-slice-history")
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="learning"]').click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#learning-charts svg.chart rect.bar"), "curves")
    _shot(browser, tmp_path, "07-learning")
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe  # no script errors, no CSP violations, no failed loads


@pytest.mark.parametrize("ci,outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)],
                         ids=["ci-fails", "local-skips"])
def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, ci: str,
                                                           outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="Chromium unavailable"):
        _unavailable("/usr/bin/chromium not found")
