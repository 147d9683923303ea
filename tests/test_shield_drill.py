"""``difusor simulate attack``: the drill's counts against a loopback server that keeps its own,
its refusals (loopback only), its bounded duration, and one real drill against ``difusor run``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, make_site, stop_group

from difusor.demo.election import SyntheticElection
from difusor.demo.packages import archive_bytes
from difusor.shield.drill import Drill, run_drill
from difusor.shield.drill_plan import DrillPlan, browser_agents, check_target, tally

INDEX = (b'<!doctype html><link rel="stylesheet" href="assets/estilo.css">'
         b'<script src="assets/app.js"></script><title>PREP</title>')
MAIN = b'{"ultimoCorte": {"fecha": "08/12/2024", "hora": "20:30"}, "casillas": ["0001", "0002"]}'


class CountingServer:
    """A loopback HTTP/1.1 server (keep-alive) that records every request it answers — source
    address, user agent, path, status — and refuses whatever ``policy`` says (status or None)."""

    def __init__(self, policy: Callable[[str, str, float], int | None] = lambda *_: None,
                 header_timeout: float | None = None) -> None:
        self.policy = policy
        self.header_timeout = header_timeout
        self.seen: list[tuple[str, str, str, int]] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.t0 = time.monotonic()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                     backlog=4096)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = writer.get_extra_info("peername")[0]
        try:
            while True:
                read = reader.readuntil(b"\r\n\r\n")
                head = await (asyncio.wait_for(read, self.header_timeout) if self.header_timeout
                              else read)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                agent = next((x.split(":", 1)[1].strip() for x in lines
                              if x.lower().startswith("user-agent:")), "")
                status = self.policy(ip, path, time.monotonic() - self.t0)
                if status is None:
                    bare = path.split("?")[0]
                    body = {"/": INDEX, "/json/main.json": MAIN}.get(bare, b"x" * 100)
                    status = 404 if bare.endswith(".php") else 200
                else:
                    body = b"no"
                self.seen.append((ip, agent, path, status))
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                             % (status, len(body), body))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> CountingServer:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def drill_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "simulate", "attack", *args],
                          capture_output=True, text=True, timeout=timeout)


# -- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["http://10.0.0.1:8080/", "http://example.com/",
                                    "http://[2001:db8::1]/", "https://127.0.0.1/",
                                    "http://0.0.0.0:80/"])
@pytest.mark.slow
def test_anything_but_loopback_is_refused_in_one_spanish_line(target: str) -> None:
    done = drill_cli("--kind", "ip", "--target", target, "--duration", "2")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "loopback" in done.stderr or "--target debe ser" in done.stderr


def test_loopback_forms_are_accepted() -> None:
    assert check_target("http://127.9.8.7:81/") == ("127.9.8.7", 81, False)
    assert check_target("http://localhost/") == ("127.0.0.1", 80, False)
    assert check_target("http://[::1]:8080/") == ("::1", 8080, True)


@pytest.mark.slow
def test_unknown_kind_and_silent_target_are_refused() -> None:
    done = drill_cli("--kind", "rayo", "--target", "http://127.0.0.1:9/")
    assert done.returncode == 1 and "ip, distributed, cachebust, scan, slow" in done.stderr
    done = drill_cli("--kind", "ip", "--target", f"http://127.0.0.1:{free_port()}/",
                     "--duration", "2")
    assert done.returncode == 1 and "no responde" in done.stderr


def test_cgnat_agents_are_distinct_browsers() -> None:
    import random

    agents = browser_agents(500, random.Random(1))
    assert len(set(agents)) == 500 and all(a.startswith("Mozilla/5.0 (") for a in agents)


# -- counts against a server that keeps its own -----------------------------------------------

@pytest.mark.slow
def test_counts_match_what_the_server_saw_and_containment_is_measured() -> None:
    """The server admits the attacker for 2 s after its first request, then answers 429."""
    first: dict[str, float] = {}

    def policy(ip: str, _path: str, t: float) -> int | None:
        if ip.startswith("127.30."):
            first.setdefault(ip, t)
            return 429 if t - first[ip] > 2.0 else None
        return None

    with CountingServer(policy) as server:
        started = time.monotonic()
        done = drill_cli("--kind", "cachebust", "--target", server.url, "--duration", "8",
                         "--attack-after", "2", "--visitors", "6", "--cgnat-users", "40",
                         "--connections", "4", "--poll", "2", "--json")
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    seen = server.seen
    attack = [s for s in seen if s[0] == "127.30.0.1"]
    legit = [s for s in seen if s[0].startswith(("127.10.", "127.20."))
             and s[1] != "difusor-simulacro"]
    # Each side's count is the server's, give or take what was in flight at the very end.
    assert 0 <= report["attack_sent"] - len(attack) <= 4
    assert report["attack_admitted"] == sum(1 for s in attack if s[3] == 200)
    assert 0 <= report["legit_requests"] - len(legit) <= 6 + 40
    assert report["legit_success_pct"] == 100.0 and report["cgnat_users_refused"] == 0
    # Cache-busting: main.json with a different query string nearly every time.
    paths = Counter(s[2] for s in attack)
    assert all(p.startswith("/json/main.json?_=") for p in paths) and len(paths) > 0.99 * len(attack)
    # The CGNAT pool: one address, one browser per user, each user active counted once.
    cgnat_agents = {s[1] for s in seen if s[0] == "127.20.0.1"}
    assert len(cgnat_agents) == report["cgnat_users_active"] > 0
    # Visitors loaded the page's assets, found in index.html.
    assert {"/assets/estilo.css", "/assets/app.js"} <= {s[2] for s in legit}
    # Containment: the server refused from 2 s after the attack's first request on.
    assert report["containment_s"] in (2, 3)
    series = report["per_second"]
    assert len(series) == 8 and all(p["sent"] == 0 for p in series[:2])
    assert sum(p["sent"] for p in series) == report["attack_sent"]
    assert elapsed < 8 + 12  # bounded: the drill stops on time (start-up included)


def test_a_request_counted_after_the_end_is_in_the_reports_last_second() -> None:
    """An attacker that checked the clock just before the end counts its request just after:
    the per-second series must still add up to the total (a CI run found one request apart)."""
    drill = Drill(DrillPlan("cachebust", "http://127.0.0.1:9/", duration=2.5, attack_after=1))
    drill.t0 = time.monotonic() - 10  # long past the end
    assert drill.second() == 2 == len(drill.series["sent"]) - 1
    drill.series["sent"][1] += 3
    drill.series["sent"][drill.second()] += 1
    report = tally(drill.plan, 1, drill.series, Counter(), Counter(), visitors_refused=0,
                   cgnat_users_active=0, cgnat_users_refused=0)
    assert [p["t"] for p in report.per_second] == [0, 1, 2]
    assert report.attack_sent == sum(p["sent"] for p in report.per_second) == 4


@pytest.mark.slow
def test_a_server_that_never_refuses_is_never_contained() -> None:
    with CountingServer() as server:
        done = drill_cli("--kind", "scan", "--target", server.url, "--duration", "4",
                         "--attack-after", "1", "--visitors", "2", "--cgnat-users", "5",
                         "--connections", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["containment_s"] is None
    assert report["attack_admitted"] == report["attack_sent"] > 0  # 404s reached the lookup
    assert all(s[2].endswith(".php") for s in server.seen if s[0] == "127.30.0.1")


@pytest.mark.slow
def test_uarotate_is_one_address_dealing_browser_agents_at_its_rate() -> None:
    with CountingServer() as server:
        report = run_drill(DrillPlan(kind="uarotate", target=server.url, duration=4,
                                     attack_after=1, visitors=2, cgnat_users=0))
    attack = [s for s in server.seen if s[0].startswith("127.30.")]
    assert {s[0] for s in attack} == {"127.30.0.1"} and report.attackers == 1
    agents = Counter(s[1] for s in attack)
    assert len(agents) == 40 and all(a.startswith("Mozilla/5.0 (") for a in agents)
    assert "compatible" not in " ".join(agents)  # nothing gives it away as a tool
    assert max(agents.values()) - min(agents.values()) <= 2  # dealt in turn
    # Paced at 150 req/s in all over the 3 s of attack (never a burst above it).
    assert 40 <= report.attack_sent <= 150 * 3 + 40
    assert {s[2] for s in attack} <= {"/", "/assets/estilo.css", "/assets/app.js",
                                      "/json/main.json"}


@pytest.mark.parametrize("header_timeout, contained", [(1.0, True), (None, False)])
@pytest.mark.slow
def test_slowloris_is_contained_only_by_a_server_that_drops_idle_headers(
        header_timeout: float | None, contained: bool) -> None:
    with CountingServer(header_timeout=header_timeout) as server:
        report = run_drill(DrillPlan(kind="slow", target=server.url, duration=6, attack_after=1,
                                     visitors=2, cgnat_users=0, connections=40))
    assert report.legit_success_pct == 100.0
    if contained:  # reopened connections live ≤ 1 s of every 2 s: never all held at once
        assert report.attack_status.get("cerrada", 0) >= 40
    else:
        assert report.slow_peak_held == 40 and report.containment_s is None


# -- one real drill against difusor run with the shield -------------------------------------------

@pytest.fixture
def running(tmp_path: Path) -> Iterator[str]:
    web, sftp = free_port(), free_port()
    site = make_site(tmp_path / "d", port=web)
    corte = next(iter(SyntheticElection().cortes(1)))
    package = tmp_path / "paquete.zip"
    package.write_bytes(archive_bytes(corte.files, "zip"))
    site.publisher.publish(package)
    site.ledger.close()
    text = site.config_path.read_text().replace('listen = "127.0.0.1:2222"',
                                                f'listen = "127.0.0.1:{sftp}"')
    site.config_path.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "difusor", "run", "--config",
                             str(site.config_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{web}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "_difusor/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "difusor run no arrancó"
            time.sleep(0.1)
        yield url
    finally:
        stop_group(proc)


@pytest.mark.parametrize(("kind", "duration", "min_sent", "contained_s"), [
    # duration = 3 s before the attack + the bound + 3 s of the attack held contained after it
    ("ip", 11, 1000, 5),             # a single address: contained within 5 s
    ("distributed", 21, 5000, 15),   # 200 addresses: contained within 15 s
    ("uarotate", 16, 1500, 10),      # one address posing as a CGNAT: contained within 10 s
], ids=["single-address-within-5s", "200-addresses-within-15s", "agent-rotation-within-10s"])
@pytest.mark.slow
def test_a_flood_is_contained_in_time_by_difusor_run(running: str, kind: str, duration: int,
                                                      min_sent: int, contained_s: int) -> None:
    done = drill_cli("--kind", kind, "--target", running, "--duration", str(duration),
                     "--attack-after", "3", "--visitors", "30", "--cgnat-users", "300", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["attack_sent"] > min_sent
    assert report["containment_s"] is not None and report["containment_s"] <= contained_s, report
    assert report["legit_success_pct"] >= 99.9, report["legit_status"]
    assert report["cgnat_users_refused"] == 0 and report["cgnat_users_active"] > 50
