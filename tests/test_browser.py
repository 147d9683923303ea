"""The demo site in a real headless Chromium shows the live corte's time, and the next one.

Debian's chromium driven through chromedriver (selenium). The page polls ``json/main.json``;
``?cada=1`` makes it poll every second instead of every 60 so the test sees a new corte soon.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="falta chromium o chromedriver (Debian: apt install chromium chromium-driver)",
)

ZONE = ZoneInfo("America/Mexico_City")


def _live(url: str) -> str | None:
    r = httpx.get(url + "_difusor/status.json", timeout=2)
    corte = json.loads(r.content)["corte"]
    if not corte:
        return None
    return datetime.fromisoformat(corte["fecha_hora"]).astimezone(ZONE).strftime("%d/%m/%Y %H:%M")


@pytest.fixture
def demo(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "difusor", "demo", "--fast", "--folder", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stdout.readline())
            url = m.group(1) if m else None
        assert url, "la demostración no imprimió su URL"
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _shown(driver) -> str:
    return driver.find_element("id", "corte").text


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no ocurrió a tiempo: {what}")


@pytest.mark.slow
def test_page_shows_live_corte_before_and_after_a_new_one(demo: str, browser) -> None:
    first = _until(lambda: _live(demo), 60, "primer corte en línea")
    browser.get(demo + "?cada=1")
    assert "DATOS SINTÉTICOS" in browser.find_element("tag name", "body").text
    # What the page shows is the corte being served (checked against the server's own status).
    before = _until(lambda: (s := _shown(browser)).startswith(_live(demo) or "-") and s, 20,
                    f"la página muestra el corte en línea ({first})")
    assert re.match(r"\d\d/\d\d/\d{4} \d\d:\d\d h", before), before
    rows = browser.find_elements("css selector", "#partidos tbody tr")
    assert len(rows) >= 3
    # A new corte arrives by SFTP; the open page shows it without a reload.
    newer = _until(lambda: (now := _live(demo)) and now != before[:16] and now, 30,
                   "un corte nuevo en línea")
    after = _until(lambda: (s := _shown(browser)).startswith(newer) and s, 10,
                   f"la página muestra el corte nuevo ({newer})")
    assert after[:16] != before[:16]
