"""``difusor demo --fast``: a simulacro to the test site, then the night's cortes (the same ids)
to the official one, both served by one server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


@pytest.mark.slow
def test_demo_publishes_cortes_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "difusor", "demo", "--fast", "--folder", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        url, head = None, []
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            head.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "la demostración no imprimió su URL"
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            r = httpx.get(url + "json/main.json", timeout=2)
            if r.status_code == 200:
                main = json.loads(r.content)
                assert main["sintetico"] is True
                seen.add(main["numeroCorte"])
            time.sleep(0.5)
        assert len(seen) >= 2, f"cortes vistos: {seen}"
        # The simulacro stays on the test site, other numbers under the same corte ids.
        test = httpx.get(url + "json/main.json", headers={"Host": "prueba.localhost"}, timeout=2)
        assert test.status_code == 200 and json.loads(test.content)["sintetico"] is True
        drill = json.loads(httpx.get(url + "_difusor/status.json",
                                     headers={"Host": "prueba.localhost"}).content)["corte"]
        assert drill["id"] == "20241208_2010"
        official = httpx.get(url + "_difusor/status.json").json()["corte"]
        assert official["id"] >= drill["id"] and test.content != r.content
        page = httpx.get(url, timeout=2).text
        assert "DATOS SINTÉTICOS" in page and "json/main.json" in httpx.get(url + "assets/app.js").text
        assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Demostración terminada" in out
    assert "(prueba) corte 20:00" in out and "(oficial) corte 20:00" in out
    assert "phase --set oficial" in out and "Traceback" not in out
    assert "Warning" not in "".join(head) + out  # no third-party library noise for the operator
    # The server it started is gone too.
    try:
        httpx.get(url, timeout=1)
        raise AssertionError("el servidor de la demostración sigue vivo")
    except httpx.TransportError:
        pass
