"""The monitor against a real ``difusor serve``: a stopped server is an outage with the right
start and duration, a blocked activation a stale corte, an altered file an integrity incident,
a late authority its own kind (never our downtime); ledger events open the others."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, Site, free_port, make_site, minimal_site

from difusor import config as config_mod
from difusor.errors import PackageRefused
from difusor.ledger import Ledger
from difusor.monitor.incidents import IncidentTracker, set_cause
from difusor.monitor.service import Monitor
from difusor.paths import StateLayout
from difusor.publish.publisher import Publisher
from difusor.run.supervisor import Supervisor
from difusor.store.objects import ObjectStore

INTERVAL = 1.0  # [monitor] interval's minimum
SLACK = 1.5  # what a loaded 2-core machine may add to when a probe round actually runs
VISITOR = {"User-Agent": "Mozilla/5.0 (visitante)"}


def monitored_site(root: Path, *, web: str = "", **monitor: Any) -> Site:
    settings = {"interval": INTERVAL, "timeout": 1.0, "fail_after": 3, "recover_after": 2,
                "sample": 5, **monitor}
    extra = "\n[monitor]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    site = make_site(root, extra)
    if not web:
        return site
    site.publisher.close()
    site.ledger.close()
    site.config_path.write_text(site.config_path.read_text().replace("[web]\n", "[web]\n" + web))
    cfg = config_mod.load(site.config_path)
    ledger = Ledger(StateLayout(cfg.state_dir).ledger)
    return Site(site.root, site.config_path, cfg, ledger, Publisher(cfg, ledger))


class Server(ServerProcess):
    """``difusor serve`` whose stderr is drained (a server that logs a lot must not block)."""

    def start(self, timeout: float = 20.0) -> Server:
        super().start(timeout)
        self.stderr = bytearray()
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        try:
            assert self.proc is not None and self.proc.stderr is not None
            for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
                self.stderr += chunk
        except (ValueError, OSError):
            pass  # closed by stop()


@pytest.fixture
def tmp_site(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def make(**kw: Any) -> Site:
        made.append(monitored_site(tmp_path / f"difusor{len(made)}", **kw))
        return made[-1]

    yield make
    for s in made:
        s.publisher.close()
        s.ledger.close()


def serve(site: Site) -> Server:
    _host, port = config_mod.parse_address(site.cfg.web.listen)
    return Server(site.config_path, port).start()


def wait_for(what: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, "no llegó a tiempo"
        time.sleep(step)


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def rounds(monitor: Monitor, n: int) -> None:
    """``n`` probe rounds back to back: streaks count probes, not seconds (only a gap of more
    than GAP_INTERVALS intervals breaks one), so no pause is needed between them."""
    for _ in range(n):
        monitor.check_once()


@pytest.mark.slow
def test_a_stopped_server_is_an_outage_with_the_right_start_and_duration(
        tmp_site: Callable[..., Site]) -> None:
    site = tmp_site()
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    server = serve(site)
    changes: list[tuple[str, dict]] = []
    monitor = Monitor(site.cfg, site.ledger, on_incident=lambda i, c: changes.append((c, i)))
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    thread.start()
    try:
        for _ in range(6):
            assert httpx.get(server.url + "/", headers=VISITOR).status_code == 200
        wait_for(lambda: len(site.ledger.probes(target="origen")) >= 2, 10)
        assert all(p["ok"] for p in site.ledger.probes(target="origen"))

        stopping = datetime.now(UTC)
        server.stop()
        stopped = datetime.now(UTC)
        incident = wait_for(lambda: site.ledger.open_incident("outage", "origen"),
                            3 * INTERVAL + 2)
        opened = datetime.now(UTC)
        assert (opened - stopped).total_seconds() <= 3 * INTERVAL + SLACK
        failing = [p for p in site.ledger.probes(target="origen") if not p["ok"]]
        assert incident["started_at"] == failing[0]["at"]  # the first failing probe
        start = at(incident["started_at"])
        assert stopping <= start <= stopped + timedelta(seconds=INTERVAL + SLACK)
        assert incident["state"] == "investigating" and incident["severity"] == "critical"
        assert incident["cause_suggested"] == "el servidor no responde (¿proceso detenido?)"
        assert failing[0]["failure"] == "outage" and failing[0]["message"] == \
            "conexión rechazada"

        restarting = datetime.now(UTC)
        server = serve(site)
        ready = datetime.now(UTC)
        done = wait_for(lambda: (i := site.ledger.incident(incident["id"])) and
                        i["state"] == "resolved" and i, 2 * INTERVAL + 3)
    finally:
        stop.set()
        thread.join(10)
        server.stop()
    after = [p for p in site.ledger.probes(target="origen", since=done["started_at"])
             if p["ok"]]
    assert done["ended_at"] == after[0]["at"]  # the first good probe
    end = at(done["ended_at"])
    assert restarting <= end <= ready + timedelta(seconds=INTERVAL + SLACK)
    truth = (ready - stopping).total_seconds()
    measured = (end - start).total_seconds()
    assert abs(measured - truth) <= INTERVAL + SLACK, (measured, truth)
    assert [c for c, _ in changes] == ["opened", "resolved"]
    assert changes[1][1]["ended_at"] == done["ended_at"]
    # Impact from the access log: the server logged nothing while down (the monitor's own
    # probes never count); the pace before it is there to estimate what was turned away.
    impact = done["detail"]["impact"]
    assert impact["requests"] == 0 and impact["visitors"] == 0 and impact["errors"] == 0
    assert impact["baseline_requests_per_min"] > 0 and impact["baseline_visitors"] == 1
    assert done["impact"].startswith("0 peticiones de 0 visitantes")


@pytest.mark.slow
def test_a_blocked_activation_is_a_stale_corte(tmp_site: Callable[..., Site]) -> None:
    site = tmp_site()
    site.publisher.publish(site.write_package("a.zip", minimal_site(hora="20:30")))
    old = site.ledger.last_activation()
    server = serve(site)
    assert server.proc is not None
    try:
        monitor = Monitor(site.cfg, site.ledger)
        assert monitor.check_once()[0].ok
        # The server is frozen while the next corte goes live, and its changes file is damaged
        # before it wakes: it cannot load the new corte and keeps serving the old one.
        os.killpg(server.proc.pid, signal.SIGSTOP)
        try:
            new = site.publisher.publish(site.write_package("b.zip", minimal_site(hora="20:45")))
            delta = site.store.manifests / f"{new.release_id}.delta"
            good = delta.read_bytes()
            delta.write_bytes(b"{roto")
        finally:
            os.killpg(server.proc.pid, signal.SIGCONT)
        # Proving that something does not happen takes time: over more than the server's own
        # 1 s fallback, in another process whose clock the test cannot move.
        for _ in range(3):
            r = httpx.get(server.url + "/json/main.json")
            assert r.headers["x-difusor-corte"] == old.release_id
            time.sleep(0.5)

        rounds(monitor, 3)
        incident = site.ledger.open_incident("stale", "origen")
        assert incident is not None
        stale = [p for p in site.ledger.probes(target="origen") if p["failure"] == "stale"]
        assert len(stale) == 3 and incident["started_at"] == stale[0]["at"]
        assert all(p["corte"] == old.release_id and not p["ok"] for p in stale)
        assert site.ledger.open_incident("integrity", "origen") is None
        cause = incident["cause_suggested"]
        assert f"el corte {new.release_id} se aceptó y activó" in cause
        assert f"«origen» sigue sirviendo {old.release_id}" in cause
        assert "served_late" in cause  # the publisher saw the server did not switch
        assert incident["severity"] == "major"

        delta.write_bytes(good)  # repaired: the server switches at once
        wait_for(lambda: httpx.get(server.url + "/json/main.json").headers[
            "x-difusor-corte"] == new.release_id, 5)
        rounds(monitor, 2)
    finally:
        server.stop()
    done = site.ledger.incident(incident["id"])
    assert done is not None and done["state"] == "resolved"
    first_ok = next(p for p in site.ledger.probes(target="origen", since=incident["started_at"])
                    if p["ok"])
    assert done["ended_at"] == first_ok["at"] and first_ok["corte"] == new.release_id


@pytest.mark.slow
def test_a_file_altered_in_the_live_release_is_an_integrity_incident(
        tmp_site: Callable[..., Site]) -> None:
    site = tmp_site(web="memory_max_file = 0\n")  # every file served from disk
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    server = serve(site)
    try:
        monitor = Monitor(site.cfg, site.ledger)
        assert monitor.check_once()[0].ok
        live = site.ledger.last_activation()
        manifest = json.loads((site.store.manifests / f"{live.release_id}.json").read_bytes())
        sha = manifest["files"]["index.html"][0]
        path = ObjectStore(site.store.objects).path(sha)
        original = path.read_bytes()
        altered = original.replace(b"PREP", b"PREX")
        with path.open("r+b") as f:  # in place: what the server serves from disk
            f.write(altered)
        wait_for(lambda: httpx.get(server.url + "/index.html").content == altered, 5)

        rounds(monitor, 2)
        assert site.ledger.open_incident("integrity", "origen") is None  # not yet: 2 < 3
        rounds(monitor, 1)
        incident = site.ledger.open_incident("integrity", "origen")
        assert incident is not None and incident["severity"] == "critical"
        bad = [p for p in site.ledger.probes(target="origen") if p["failure"] == "integrity"]
        assert incident["started_at"] == bad[0]["at"]
        assert bad[0]["detail"]["mismatched"] == ["index.html"] and not bad[0]["ok"]
        assert "/index.html" in incident["cause_suggested"]

        set_cause(site.ledger, incident["id"], "archivo alterado a mano en el almacén")
        assert site.ledger.incident(incident["id"])["state"] == "identified"
        with path.open("r+b") as f:
            f.write(original)
        monitor.check_once()
        assert site.ledger.incident(incident["id"])["state"] == "monitoring"
        monitor.check_once()  # the second good probe in a row (recover_after = 2)
    finally:
        server.stop()
    done = site.ledger.incident(incident["id"])
    assert done["state"] == "resolved"
    assert done["cause"] == "archivo alterado a mano en el almacén"
    good = [p for p in site.ledger.probes(target="origen", since=incident["started_at"])
            if p["ok"]]
    assert done["ended_at"] == good[0]["at"]


@pytest.mark.slow
def test_a_late_authority_is_recorded_as_such_not_as_our_downtime(
        tmp_site: Callable[..., Site]) -> None:
    site = tmp_site(cadence=1.0, grace=0.5)
    server = serve(site)
    try:
        site.publisher.publish(site.write_package("a.zip", minimal_site(hora="20:30")))
        first = site.ledger.last_activation()
        monitor = Monitor(site.cfg, site.ledger)
        (on_time,) = monitor.check_once()
        assert on_time.ok and on_time.failure is None
        assert site.ledger.open_incident("authority_delay", None) is None

        # The due time (cadence + grace) must really pass: Monitor reads the wall clock.
        time.sleep(max(0.0, (at(first.at) + timedelta(seconds=1.7) -
                             datetime.now(UTC)).total_seconds()))
        (late,) = monitor.check_once()
        assert late.ok and late.failure == "authority_delay"
        row = site.ledger.probes(target="origen")[-1]
        assert row["ok"] == 1 and row["failure"] == "authority_delay"
        incident = site.ledger.open_incident("authority_delay", None)
        assert incident is not None and incident["severity"] == "warning"
        assert at(incident["started_at"]) == at(first.at) + timedelta(seconds=1.5)
        assert incident["cause_suggested"].startswith("la autoridad no ha enviado paquetes")

        # Something arrives but is refused: still late, and now we know why.
        with pytest.raises(PackageRefused):
            site.publisher.publish(site.write_package("roto.zip", {
                "index.html": b"x", "json/main.json": b"{roto"}))
        monitor.check_once()
        refused = [i for i in site.ledger.incidents() if i["kind"] == "refused"]
        assert len(refused) == 1 and refused[0]["state"] == "resolved"
        assert refused[0]["severity"] == "minor" and refused[0]["cause"]
        assert refused[0]["target"] == "roto.zip"
        assert "se rechazaron" in site.ledger.incident(incident["id"])["cause_suggested"]

        site.publisher.publish(site.write_package("b.zip", minimal_site(hora="20:45")))
        second = site.ledger.last_activation()
        (back,) = monitor.check_once()
        assert back.ok and back.failure is None
    finally:
        server.stop()
    done = site.ledger.incident(incident["id"])
    assert done["state"] == "resolved" and done["ended_at"] == second.at
    assert all(p["ok"] for p in site.ledger.probes(target="origen"))  # never our downtime


@pytest.mark.slow
def test_a_restarted_monitor_continues_a_streak_and_refuses_nothing_twice(
        tmp_site: Callable[..., Site]) -> None:
    site = tmp_site()
    site.publisher.publish(site.write_package("a.zip", minimal_site()))
    with pytest.raises(PackageRefused):
        site.publisher.publish(site.write_package("roto.zip", {"json/main.json": b"{roto"}))
    first = Monitor(site.cfg, site.ledger)  # no server is running: connection refused
    rounds(first, 2)
    assert site.ledger.open_incident("outage", "origen") is None
    time.sleep(INTERVAL)  # a restart takes a while: a gap under GAP_INTERVALS keeps the streak
    again = Monitor(site.cfg, site.ledger)
    again.check_once()
    incident = site.ledger.open_incident("outage", "origen")
    assert incident is not None
    assert incident["started_at"] == site.ledger.probes(target="origen")[0]["at"]
    assert len([i for i in site.ledger.incidents() if i["kind"] == "refused"]) == 1


def test_ledger_events_open_and_resolve_their_incidents(tmp_site: Callable[..., Site]) -> None:
    site = tmp_site()
    seen: list[tuple[str, str, str | None]] = []
    tracker = IncidentTracker(site.cfg, site.ledger,
                              on_incident=lambda i, c: seen.append((c, i["kind"], i["target"])))
    tracker.scan_ledger()
    ledger = site.ledger
    ledger.event("origin_out", "origen espejo queda fuera de rotación", release_id="r1",
                 detail={"origin": "espejo", "error": "ssh: conexión rechazada"})
    ledger.event("origin_out", "origen espejo sigue fuera", detail={"origin": "espejo"})
    ledger.event("purge_failed", "CDN «cf» (cloudflare): token inválido", detail={"cdn": "cf"})
    ledger.event("service_restarted", "servidor web falló; reiniciado",
                 detail={"part": "servidor web"})
    tracker.scan_ledger()
    out = ledger.open_incident("origin_out", "espejo")
    assert out is not None and out["cause_suggested"] == \
        "el origen no aceptó el corte: ssh: conexión rechazada"
    assert ledger.open_incident("purge", "cf") is not None
    ledger.event("origin_back", "origen espejo de vuelta", detail={"origin": "espejo"})
    ledger.event("purge", "CDN «cf»: 3 URL purgadas", detail={"cdn": "cf"})
    tracker.scan_ledger()
    assert ledger.open_incident("origin_out", "espejo") is None
    assert ledger.open_incident("purge", "cf") is None
    assert seen == [("opened", "origin_out", "espejo"), ("opened", "purge", "cf"),
                    ("resolved", "origin_out", "espejo"), ("resolved", "purge", "cf")]
    done = ledger.incident(out["id"])
    assert any("reinicio automático" in m["text"] for m in done["measures"])
    # A restarted monitor does not open them again.
    IncidentTracker(site.cfg, ledger).scan_ledger()
    assert len(ledger.incidents()) == 2


def test_the_supervisor_runs_the_monitor_when_enabled(tmp_site: Callable[..., Site]) -> None:
    on = tmp_site()
    supervisor = Supervisor(on.cfg, on.config_path)
    try:
        assert "monitor" in [p.name for p in supervisor.parts]
    finally:
        supervisor.ledger.close()
    off = tmp_site(enabled=False)
    supervisor = Supervisor(off.cfg, off.config_path)
    try:
        assert "monitor" not in [p.name for p in supervisor.parts]
    finally:
        supervisor.ledger.close()


def test_an_unreachable_configured_target_is_named_in_the_record(
        tmp_site: Callable[..., Site]) -> None:
    site = tmp_site()
    site.config_path.write_text(site.config_path.read_text() + (
        f'\n[[monitor.targets]]\nname = "borde"\nurl = "http://127.0.0.1:{free_port()}"\n'
        "public = true\n"))
    cfg = config_mod.load(site.config_path)
    monitor = Monitor(cfg, site.ledger)
    (result,) = monitor.check_once()
    assert result.target == "borde" and result.failure == "outage"
    (row,) = site.ledger.probes(target="borde")
    assert row["vantage"] == "local" and row["interval_s"] == INTERVAL and not row["ok"]
