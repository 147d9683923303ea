"""The shield service: access log in, decisions file, ledger evidence and the attack incident out;
and ``difusor run`` on loopback containing a real flood while visitors keep browsing."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import Site, free_port, make_site, minimal_site, stop_group, wait_until

from difusor.errors import ShieldError
from difusor.ledger import Ledger
from difusor.serve import decisions as dec
from difusor.serve.accesslog import AccessLog
from difusor.shield.model import Block
from difusor.shield.service import Shield

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def lines(rows: list[tuple[float, str, str, int]]) -> bytes:
    """Access-log lines exactly as the server writes them: (time, ip, path, status)."""
    log = AccessLog.__new__(AccessLog)
    log._middles, log._second, log._stamp = {}, -1, ""  # formatting only
    return log.format([(t, f"{ip}:5000", 0.0002, "GET", path, "", status, 100, None, UA, "c")
                       for t, ip, path, status in rows]).encode()


def flood(ip: str, start: float, seconds: float, rate: float, status: int = 200) -> list:
    return [(start + i / rate, ip, "/json/main.json", status) for i in range(int(seconds * rate))]


class Recording:
    name = "doble"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.applied: list[tuple[list[Block], bool]] = []

    def apply(self, blocks: Sequence[Block], attack_mode: bool) -> None:
        self.applied.append((list(blocks), attack_mode))
        if self.fail:
            raise ShieldError("nginx -s reload falló (prueba)")

    def close(self) -> None:
        pass


def shield_for(site: Site, **settings: object) -> tuple[Shield, list[str]]:
    cfg = site.cfg.model_copy(update={"shield": site.cfg.shield.model_copy(update=settings)})
    said: list[str] = []
    return Shield(cfg, site.ledger, log=said.append), said


def test_a_flood_in_the_log_becomes_decisions_evidence_and_enforcement(site: Site) -> None:
    shield, said = shield_for(site)
    good, bad = Recording(), Recording(fail=True)
    shield.enforcers = [bad, good]
    now = time.time()
    for k in range(25):  # 5 s at 400 req/s, read 5 times a second as the service does
        t = now + k * 0.2
        status = 403 if "203.0.113.7" in shield.detector.bans else 200
        shield.step(lines(flood("203.0.113.7", t, 0.2, 400, status)), now=t + 0.2)
    d = dec.load(dec.decisions_path(site.cfg.state_dir))
    assert d.bans["203.0.113.7"]["by"] == "auto" and d.bans["203.0.113.7"]["until"] > now + 100
    assert any(m.startswith("escudo: 203.0.113.7 limitado a 20 pet/s (") for m in said), said
    assert any(m.startswith("escudo: 203.0.113.7 bloqueado hasta las") for m in said)
    events = site.ledger.events("shield")
    actions = [e["detail"]["action"] for e in reversed(events)]
    assert actions[:2] == ["throttle", "ban"]
    ban = events[0]["detail"]
    assert ban["key"] == "203.0.113.7" and ban["key_kind"] == "ip" and ban["window"] == 10
    assert ban["rates"]["rate"] > 40 and ban["expiry"] > now
    # every enforcer got the ban; one failing is logged and recorded, never fatal
    assert good.applied[-1][0][0].key == "203.0.113.7"
    failed = site.ledger.events("shield_enforcer_failed")
    assert failed and "nginx -s reload" in failed[0]["message"]
    assert any("doble no aplicó" in m for m in said)


def nginx_lines(rows: list[tuple[float, str, str, int]], offset_h: int) -> bytes:
    """nginx's lines (generated log_format): local time with its offset, integer duration."""
    out = []
    for t, ip, path, status in rows:
        local = time.gmtime(t + offset_h * 3600)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{int(t * 1000) % 1000:03d}"
        zone = f"{'+' if offset_h >= 0 else '-'}{abs(offset_h):02d}:00"
        out.append(orjson.dumps({
            "time": stamp + zone, "ip": ip, "method": "GET", "path": path, "query": "",
            "status": status, "bytes": 0, "referer": "", "user_agent": UA, "corte": "-",
            "duration_ms": 0}))
    return b"\n".join(out) + b"\n"


@pytest.mark.parametrize("offset_h", [-6, 0, 5])
def test_nginx_lines_count_at_their_real_second(site: Site, offset_h: int) -> None:
    """nginx writes local time with an offset (Mexico: -06:00); read as UTC the flood would be
    six hours old and never judged."""
    shield, _ = shield_for(site)
    now = time.time()
    shield.feed(nginx_lines(flood("198.51.100.4", now - 5, 5, 100, 400), offset_h))
    actions = shield.detector.evaluate(now)
    assert [a.action for a in actions if a.key == "198.51.100.4"], actions


def test_the_operator_unblock_and_allow_are_kept_by_the_service(site: Site) -> None:
    shield, said = shield_for(site)
    path = dec.decisions_path(site.cfg.state_dir)
    now = time.time()
    for k in range(25):
        t = now + k * 0.2
        shield.step(lines(flood("203.0.113.7", t, 0.2, 400)), now=t + 0.2)
    assert "203.0.113.7" in dec.load(path).bans
    dec.block(path, "192.0.2.0/24", 30, "prueba")
    assert dec.unblock(path, "203.0.113.7") == ["203.0.113.7"]
    shield.step(b"", now=now + 5.5)
    d = dec.load(path)
    assert "203.0.113.7" not in d.bans and "192.0.2.0/24" in d.bans  # the operator's ban stays
    assert "203.0.113.7" not in shield.detector.bans
    assert any("liberado por el operador" in m for m in said)
    dec.allow(path, "203.0.113.0/24")
    for k in range(10):
        t = now + 6 + k * 0.2
        shield.step(lines(flood("203.0.113.7", t, 0.2, 400)), now=t + 0.2)
    assert not dec.load(path).bans.get("203.0.113.7")


@pytest.mark.slow
def test_a_distributed_flood_opens_and_closes_an_attack_incident(site: Site) -> None:
    shield, said = shield_for(site, attack_rate=500, attack_quiet=5)
    now = time.time()
    rng = random.Random(4)
    for k in range(60):  # 12 s: 200 addresses at 15 req/s each
        t = now + k * 0.2
        rows = []
        for i in range(200):
            ip = f"45.{10 + i // 100}.{i % 100}.9"
            status = 403 if ip in shield.detector.bans else (
                429 if ip in shield.detector.throttles else 200)
            rows += [(t + rng.random() * 0.2, ip, "/", status) for _ in range(3)]
        shield.step(lines(rows), now=t + 0.2)
    incident = site.ledger.open_incident("attack", site.cfg.site.url)
    assert incident is not None and incident["severity"] == "major"
    attack = site.ledger.events("attack")
    assert attack and attack[0]["detail"]["target"] == site.cfg.site.url
    assert any("MODO ATAQUE activado" in m for m in said)
    assert dec.load(dec.decisions_path(site.cfg.state_dir)).attack["on"] is True
    for k in range(100):  # silence: attack mode leaves by itself after the quiet period
        shield.step(b"", now=now + 12 + k * 0.25)
    done = site.ledger.incident(incident["id"])
    assert done is not None and done["state"] == "resolved" and done["ended_at"]
    detail = done["detail"]
    assert detail["peak_rps"] >= 2000 and detail["requests_refused"] > 0
    assert len(detail["sources"]) == 10 and detail["sources"][0]["key"].startswith("45.")
    assert detail["attack_mode_on"] and detail["attack_mode_off"]
    assert site.ledger.events("attack_over")[0]["detail"]["target"] == site.cfg.site.url
    assert dec.load(dec.decisions_path(site.cfg.state_dir)).attack["on"] is False


@pytest.mark.slow
def test_the_service_keeps_up_with_30k_lines_a_second(site: Site) -> None:
    shield, _said = shield_for(site)
    rng = random.Random(5)
    now = time.time()
    rows = [(now + i / 40_000, f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}",
             "/json/main.json", 200) for i in range(120_000)]
    data = lines(rows).splitlines(keepends=True)
    started = time.perf_counter()
    for k in range(0, len(data), 8000):
        shield.step(b"".join(data[k:k + 8000]), now=now + k / 40_000)
    rate = len(data) / (time.perf_counter() - started)
    assert shield.lines == len(data)
    assert rate > 30_000, f"{rate:,.0f} líneas/s"


# -- difusor run, for real -------------------------------------------------------------------


class Traffic:
    """Requests from one 127.x address in a loop; keeps every status with its time."""

    def __init__(self, source: str, url: str, pause: float) -> None:
        self.source, self.url, self.pause = source, url, pause
        self.statuses: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        transport = httpx.HTTPTransport(local_address=self.source)
        with httpx.Client(transport=transport, timeout=5,
                          headers={"user-agent": "carga/1.0"}) as client:
            while not self.stop.is_set():
                try:
                    code = client.get(self.url).status_code
                except httpx.TransportError:
                    code = 0
                self.statuses.append((time.monotonic(), code))
                if self.pause:
                    self.stop.wait(self.pause)


@pytest.fixture
def running(tmp_path: Path):
    port = free_port()
    site = make_site(tmp_path / "d", port=port, extra_toml=(
        "\n[shield]\nattack_rate = 150\nattack_quiet = 4\n"
        "\n[analytics]\nenabled = false\n"))
    text = site.config_path.read_text()
    site.config_path.write_text(text.replace('listen = "127.0.0.1:2222"',
                                             f'listen = "127.0.0.1:{free_port()}"'))
    site.publisher.publish(site.write_package("20241208_2030_PREP.zip", minimal_site()))
    site.ledger.close()
    proc = subprocess.Popen([sys.executable, "-m", "difusor", "run", "--config",
                             str(site.config_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            httpx.get(url + "/_difusor/health", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    # The shield part writes the decisions file once it follows the logs (from their end):
    # requests before that would never be judged.
    decisions = dec.decisions_path(site.cfg.state_dir)
    wait_until(decisions.exists, 30, "the shield following the access log")
    yield site, url
    stop_group(proc)
    if proc.stderr:
        proc.stderr.close()


@pytest.mark.slow
def test_difusor_run_contains_a_single_address_flood_while_visitors_browse(running) -> None:
    site, url = running
    visitors = [Traffic(f"127.0.3.{i}", url + "/json/main.json", 0.5) for i in range(1, 11)]
    attackers = [Traffic("127.0.9.9", url + "/json/main.json", 0.0) for _ in range(3)]
    for t in visitors:
        t.thread.start()
    wait_until(lambda: all(t.statuses for t in visitors), 10, "every visitor browsing")
    started = time.monotonic()
    for t in attackers:
        t.thread.start()

    def late() -> list[int]:
        """The flood's answers once the shield had 5 s to act."""
        return [code for t in attackers for at, code in list(t.statuses) if at > started + 5.0]

    # Enough evidence, however fast this machine is: 500 flood answers after the shield's
    # 5 s, and more than 150 visitor requests (each visitor pauses 0.5 s between them).
    wait_until(lambda: len(late()) >= 500 and sum(len(t.statuses) for t in visitors) > 150, 60,
               "500 flood answers after 5 s and 150 visitor requests")
    for t in attackers + visitors:
        t.stop.set()
    for t in attackers + visitors:
        t.thread.join(10)
    flood = sorted(s for t in attackers for s in t.statuses)
    refused = [at for at, code in flood if code in (403, 429)]
    assert refused, Counter(code for _at, code in flood)
    assert refused[0] - started < 5.0
    after = late()
    assert sum(c in (403, 429) for c in after) / len(after) > 0.99, Counter(after)
    seen = [code for t in visitors for _at, code in t.statuses]
    assert len(seen) > 150 and sum(c == 200 for c in seen) / len(seen) >= 0.999, Counter(seen)
    # the evidence: decisions and the attack incident
    with Ledger(site.state.ledger) as ledger:
        wait_until(lambda: [i for i in ledger.incidents() if i["kind"] == "attack"], 30,
                   "the attack incident on record", step=0.2)
        shield = [e["detail"] for e in ledger.events("shield")]
        assert any(d["action"] == "throttle" and d["key"] == "127.0.9.9" for d in shield)
        assert any(d["action"] == "attack_mode_on" for d in shield)
        incidents = ledger.incidents()
        attack = [i for i in incidents if i["kind"] == "attack"]
        assert attack and attack[0]["target"] == site.cfg.site.url
        assert attack[0]["detail"]["sources"][0]["key"] == "127.0.9.9"
