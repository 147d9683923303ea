"""The retention guard (convocatoria I.2): no final take-down before [operation] end plus
keep_hours; after it, ``difusor takedown --yes`` stops publishing and a real server answers 503."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, Site, free_port, make_site, minimal_site

from difusor import config as config_mod
from difusor.errors import DifusorError
from difusor.monitor.retention import allowed_from, check_takedown
from difusor.publish.activate import live_release

END = "2024-12-09T20:00:00-06:00"  # the operation ends; the site stays until 10/12 20:00
OPERATION = f'\n[operation]\nend = "{END}"\n'


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def cfg_with(tmp_path: Path, extra: str) -> config_mod.Config:
    (tmp_path / "keys").mkdir(parents=True, exist_ok=True)
    (tmp_path / "keys" / "authorized_keys").write_text("")
    path = tmp_path / "difusor.toml"
    path.write_text(config_mod.render_default() + extra)
    return config_mod.load(path)


def test_guard_before_and_after(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, OPERATION)
    assert allowed_from(cfg) == moment("2024-12-10T20:00:00-06:00")
    with pytest.raises(DifusorError) as refused:
        check_takedown(cfg, moment("2024-12-10T17:30:00-06:00"))
    message = refused.value.message
    assert message.startswith("la convocatoria (I.2) exige mantener el sitio en línea 24 h")
    assert "hasta 10/12/2024 20:00 CST" in message and "faltan 2 h 30 min" in message
    with pytest.raises(DifusorError, match="faltan 1 min"):
        check_takedown(cfg, moment("2024-12-10T19:59:59.5-06:00"))
    check_takedown(cfg, moment("2024-12-10T20:00:00-06:00"))  # allowed from that moment
    check_takedown(cfg, moment("2024-12-11T02:00:00+00:00"))


def test_guard_keep_hours_and_missing_end(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, OPERATION + "keep_hours = 48\n")
    with pytest.raises(DifusorError, match=r"48 h .* faltan 1 d 0 h:"):
        check_takedown(cfg, moment("2024-12-10T20:00:00-06:00"))
    bare = cfg_with(tmp_path / "b", "")
    with pytest.raises(DifusorError, match=r"no hay \[operation\] end"):
        check_takedown(bare, moment("2030-01-01T00:00:00+00:00"))


@pytest.fixture
def ended(tmp_path: Path) -> Iterator[Site]:
    site = make_site(tmp_path / "difusor", OPERATION, port=free_port())
    site.publisher.publish(site.write_package("p.zip", minimal_site()))
    yield site
    site.ledger.close()


def takedown(site: Site, now: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "difusor", "takedown", *extra, "--config", str(site.config_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "DIFUSOR_NOW": now})


def wait_status(url: str, status: int, timeout: float = 5.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url, timeout=2)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


@pytest.mark.slow
def test_takedown_refused_then_done_with_a_real_server(ended: Site) -> None:
    _host, port = config_mod.parse_address(ended.cfg.web.listen)
    server = ServerProcess(ended.config_path, port).start()
    try:
        health = server.url + "/_difusor/health"
        assert httpx.get(health).status_code == 200
        early = takedown(ended, "2024-12-10T19:59:00-06:00", "--yes")
        assert early.returncode == 1
        assert early.stderr.startswith("difusor: la convocatoria (I.2) exige mantener el sitio")
        assert "hasta 10/12/2024 20:00 CST" in early.stderr
        unconfirmed = takedown(ended, "2024-12-10T20:00:00-06:00")
        assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
        assert httpx.get(health).status_code == 200
        assert live_release(ended.store) is not None
        assert ended.ledger.events("takedown") == []

        done = takedown(ended, "2024-12-10T20:00:00-06:00", "--yes")
        assert done.returncode == 0, done.stderr
        assert "Sitio retirado" in done.stdout and "503" in done.stdout
        assert wait_status(health, 503).status_code == 503
        assert httpx.get(server.url + "/json/main.json").status_code == 404
    finally:
        server.stop()
    assert live_release(ended.store) is None and not ended.store.site.exists()
    (event,) = ended.ledger.events("takedown")
    assert event["detail"]["now"] == "2024-12-10T20:00:00-06:00"
    assert event["detail"]["allowed_from"] == "2024-12-10T20:00:00-06:00"
    assert event["release_id"] and "sitio retirado" in event["message"]
    status = subprocess.run([sys.executable, "-m", "difusor", "status", "--json", "--config",
                             str(ended.config_path)], capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["corte"] is None
    # A server started afterwards has nothing to serve either.
    again = ServerProcess(ended.config_path, port).start()
    try:
        assert httpx.get(again.url + "/_difusor/health").status_code == 503
    finally:
        again.stop()


def test_takedown_without_end_is_refused(site: Site) -> None:
    done = takedown(site, "2030-01-01T00:00:00+00:00", "--yes")
    assert done.returncode == 1 and "no hay [operation] end" in done.stderr
