"""The inbox consumer: one package at a time, in arrival order, nothing lost."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from conftest import Site, make_site, minimal_site

from difusor.publish.activate import live_release
from difusor.receive.inbox import arrivals, deliver
from difusor.run.consumer import InboxConsumer


def _live_corte(site: Site) -> str | None:
    live = live_release(site.store)
    row = site.ledger.release(live) if live else None
    return row.corte_time if row else None


def _drop(site: Site, name: str, files: dict[str, bytes]) -> Path:
    return deliver(site.write_package(name, files), site.state.inbox)


def test_packages_publish_in_arrival_order_and_leave_the_inbox(site: Site) -> None:
    _drop(site, "b.zip", minimal_site(hora="20:30"))
    _drop(site, "a.zip", minimal_site(hora="20:40"))  # newer corte, arrived second
    consumer = InboxConsumer(site.cfg, site.ledger)
    assert consumer.drain() == 2
    assert _live_corte(site) == "2024-12-08T20:40:00-06:00"
    names = [r["name"] for r in reversed(site.ledger.packages())]  # newest first
    assert names == ["b.zip", "a.zip"]
    assert arrivals(site.state.inbox) == []
    assert sorted(p.name.split("_", 1)[1] for p in site.state.packages.iterdir()) == ["a.zip", "b.zip"]


def test_out_of_order_arrival_is_refused_not_published(site: Site) -> None:
    _drop(site, "new.zip", minimal_site(hora="20:40"))
    _drop(site, "old.zip", minimal_site(hora="20:30"))
    InboxConsumer(site.cfg, site.ledger).drain()
    assert _live_corte(site) == "2024-12-08T20:40:00-06:00"
    assert any(p.name.endswith("old.zip.motivo.txt") for p in site.state.quarantine.iterdir())


@pytest.mark.slow
def test_a_late_sidecar_is_waited_for_and_verified(site: Site) -> None:
    # This authority sends sidecars: the first package came with one.
    first = site.write_package("c1.zip", minimal_site(hora="20:30"))
    side = first.with_name("c1.zip.sha256")
    side.write_text(f"{hashlib.sha256(first.read_bytes()).hexdigest()}  c1.zip\n")
    deliver(side, site.state.inbox)
    deliver(first, site.state.inbox)
    consumer = InboxConsumer(site.cfg, site.ledger)
    consumer.drain()
    second = site.write_package("c2.zip", minimal_site(hora="20:40"))
    deliver(second, site.state.inbox)
    late = second.with_name("c2.zip.sha256")
    late.write_text(f"{'0' * 64}  c2.zip\n")  # wrong: must be refused, not skipped
    timer = threading.Timer(0.5, lambda: deliver(late, site.state.inbox))
    timer.start()
    consumer.drain()
    timer.join()
    assert _live_corte(site) == "2024-12-08T20:30:00-06:00"
    refused = [r for r in site.ledger.packages() if r["name"] == "c2.zip"]
    assert refused[0]["state"] == "refused" and refused[0]["reason_code"] == "checksum_sidecar"
    assert arrivals(site.state.inbox) == []


def test_without_sidecar_habit_nothing_waits(site: Site) -> None:
    _drop(site, "c.zip", minimal_site())
    started = time.monotonic()
    InboxConsumer(site.cfg, site.ledger).drain()
    assert time.monotonic() - started < site.cfg.receive.sidecar_wait
    assert _live_corte(site) is not None


def test_refused_package_leaves_live_corte_and_inbox_clean(site: Site) -> None:
    _drop(site, "ok.zip", minimal_site())
    (site.root / "roto.zip").write_bytes(b"PK\x03\x04 no es un zip completo")
    deliver(site.root / "roto.zip", site.state.inbox)
    InboxConsumer(site.cfg, site.ledger).drain()
    assert _live_corte(site) == "2024-12-08T20:30:00-06:00"
    assert (site.state.quarantine).glob("*roto.zip")
    assert arrivals(site.state.inbox) == []


@pytest.mark.slow
def test_busy_publisher_leaves_the_package_for_later(site: Site, tmp_path: Path) -> None:
    _drop(site, "c.zip", minimal_site())
    other = make_site(site.root)  # same folder: a manual `difusor publish` holding the lock
    consumer = InboxConsumer(site.cfg, site.ledger)
    try:
        with other.publisher.lock():
            assert consumer.drain() == 0
        assert len(arrivals(site.state.inbox)) == 1
        assert consumer.drain() == 1
    finally:
        other.ledger.close()
    assert _live_corte(site) is not None


def test_a_package_interrupted_mid_publish_is_published_on_next_start(site: Site) -> None:
    inbox_entry = _drop(site, "c.zip", minimal_site())
    # A run died after taking the package in (the incoming copy and ledger row exist) but
    # before it went live: the inbox entry is still there.
    from difusor.receive.intake import take_in

    intake = take_in(inbox_entry, site.state.incoming, name="c.zip", link=True)
    site.ledger.package_received("c.zip", intake.sha256, intake.size, intake.copy_name)
    consumer = InboxConsumer(site.cfg, site.ledger)
    assert consumer.drain() == 1
    assert _live_corte(site) == "2024-12-08T20:30:00-06:00"
    states = sorted(r["state"] for r in site.ledger.packages())
    assert states == ["activated", "interrupted"]


def test_orphan_sidecar_goes_to_quarantine_with_reason(site: Site) -> None:
    old = site.state.inbox / f"{time.time_ns() - 3600 * 10**9:020d}-abcd_x.zip.sha256"
    site.state.inbox.mkdir(parents=True, exist_ok=True)
    old.write_text(f"{'1' * 64}  x.zip\n")
    InboxConsumer(site.cfg, site.ledger).drain()
    assert not old.exists()
    reason = (site.state.quarantine / (old.name + ".motivo.txt")).read_text()
    assert "sin paquete" in reason


@pytest.mark.slow
def test_run_wakes_on_notify_and_stops(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d")
    consumer = InboxConsumer(site.cfg, site.ledger)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        path = _drop(site, "c.zip", minimal_site())
        consumer.notify(path)
        deadline = time.monotonic() + 10
        while _live_corte(site) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _live_corte(site) is not None
    finally:
        stop.set()
        thread.join(5)
        site.ledger.close()
    assert not thread.is_alive()
