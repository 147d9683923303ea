"""The disks, watched: every volume the difusor writes to is measured each monitor round and
keeps one «disco casi lleno» incident — a warning below ``disk_warn_gb``, critical below
``disk_critical_gb`` (or the inode thresholds), resolved once back above the warning — whose
cause states the figures and what ``difusor gc`` would free. Real tmpfs volumes of a few MB,
with the thresholds in fractions of a GB; the monitor's round is called directly."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Site, make_site, minimal_site

from difusor import config as config_mod
from difusor.monitor import disk
from difusor.monitor.alerts import Alerter
from difusor.monitor.incident_sheet import incident_doc
from difusor.monitor.service import Monitor
from difusor.publish.collect import collect_cortes

MIB = 2**20
QUIET = ("disk_warn_gb", "disk_warn_percent", "disk_critical_gb", "disk_warn_inodes_percent",
         "disk_critical_inodes_percent")


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a tmpfs of its own on a folder (root only); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(folder: Path, options: str) -> Path:
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("hace falta root y mount para montar un tmpfs pequeño")
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"no se pudo montar un tmpfs: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def monitor_toml(**thresholds: float) -> str:
    settings = {**dict.fromkeys(QUIET, 0), "interval": 1, "timeout": 0.5, **thresholds}
    return "\n[monitor]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


def site_on(tmpfs: Callable[[Path, str], Path], root: Path, options: str,
            **thresholds: float) -> Site:
    """A difusor whose state folder is a tmpfs of its own."""
    state = tmpfs(root / "state", options)
    site = make_site(root, monitor_toml(**thresholds))
    assert site.cfg.state_dir.resolve() == state.resolve()
    return site


def publish(site: Site, count: int, extra: int = 0) -> None:
    for n in range(count):
        files = minimal_site(hora=f"20:{n:02d}",
                             extra={"datos/x.bin": os.urandom(extra)} if extra else None)
        site.publisher.publish(site.write_package(f"20241208_20{n:02d}_PREP.zip", files))


def free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill_until(folder: Path, left: int) -> None:
    """Grow ``folder/relleno`` until about ``left`` bytes are free."""
    with (folder / "relleno").open("ab") as f:
        f.write(b"\0" * max(0, free(folder) - left))
        f.flush()
        os.fsync(f.fileno())


def disk_incidents(site: Site) -> list[dict[str, Any]]:
    return [i for i in site.ledger.incidents() if i["kind"] == "disk"]


def test_a_filling_volume_warns_then_is_critical_then_resolves(
        tmp_path: Path, tmpfs: Callable[[Path, str], Path]) -> None:
    site = site_on(tmpfs, tmp_path / "d", "size=8m", disk_warn_gb=0.004, disk_critical_gb=0.002)
    try:
        publish(site, 7)  # old cortes for «difusor gc» to suggest collecting
        changes: list[tuple[str, dict[str, Any]]] = []
        monitor = Monitor(site.cfg, site.ledger, on_incident=lambda i, c: changes.append((c, i)))
        state = site.cfg.state_dir
        monitor.check_once()
        assert disk_incidents(site) == []  # 8 MB almost empty: above 0.004 GB

        fill_until(state, 3 * MIB)  # below the warning (4.3 MB), above the critical (2.1 MB)
        monitor.check_once()
        (incident,) = disk_incidents(site)
        assert incident["severity"] == "minor" and incident["state"] == "investigating"
        (volume,) = disk.volumes(site.cfg)
        assert incident["target"] == disk.name(volume) and str(state) in incident["target"]
        cause = incident["cause_suggested"]
        for said in ("menos que el aviso de 4.1 MB", "MB libres de 8.0 MB", "inodos libres",
                     "guarda 7 cortes", "«difusor gc --keep 5» liberaría unos",
                     "se reintenta solo"):
            assert said in cause, (said, cause)
        assert incident["detail"]["level"] == "warning"
        assert incident["detail"]["free_bytes"] < 4.3 * MIB
        alert = Alerter(site.cfg, site.ledger).render(incident, "opened")
        assert cause in alert.text  # the alert carries the figures and the gc suggestion

        monitor.check_once()  # the same level: the same incident, nothing new announced
        assert len(disk_incidents(site)) == 1 and [c for c, _ in changes if c != "opened"] == []

        fill_until(state, int(1.2 * MIB))
        monitor.check_once()
        (incident,) = disk_incidents(site)
        assert incident["severity"] == "critical" and incident["detail"]["level"] == "critical"
        assert "menos que el mínimo de 2.0 MB (convocatoria II.1.c)" in \
            incident["cause_suggested"]
        assert [c for c, i in changes if i["kind"] == "disk"] == ["opened", "updated"]

        (state / "relleno").unlink()
        monitor.check_once()
        (done,) = disk_incidents(site)
        assert done["state"] == "resolved" and done["severity"] == "critical"  # the worst stays
        doc = incident_doc(done, now=datetime.now(UTC))
        assert doc["inicio"] and doc["fin"] and doc["fin"] >= doc["inicio"], doc
        assert [c for c, i in changes if i["kind"] == "disk"][-1] == "resolved"
    finally:
        site.publisher.close()
        site.ledger.close()


def test_few_free_inodes_warn_then_are_critical(
        tmp_path: Path, tmpfs: Callable[[Path, str], Path]) -> None:
    site = site_on(tmpfs, tmp_path / "d", "size=8m,nr_inodes=400",
                   disk_warn_inodes_percent=40, disk_critical_inodes_percent=15)
    try:
        monitor = Monitor(site.cfg, site.ledger)
        state = site.cfg.state_dir
        many = state / "muchos"
        many.mkdir()

        def leave(fraction: float) -> None:
            st = os.statvfs(state)
            for n in range(st.f_favail - int(st.f_files * fraction)):
                (many / f"{fraction}-{n}").touch()

        monitor.check_once()
        assert disk_incidents(site) == []
        leave(0.30)
        monitor.check_once()
        (incident,) = disk_incidents(site)
        assert incident["severity"] == "minor"
        assert "inodos libres" in incident["cause_suggested"]
        assert "menos que el aviso de 40 %" in incident["cause_suggested"]
        leave(0.10)
        monitor.check_once()
        (incident,) = disk_incidents(site)
        assert incident["severity"] == "critical"
        assert "menos que el mínimo de 15 %" in incident["cause_suggested"]
        shutil.rmtree(many)
        monitor.check_once()
        assert disk_incidents(site)[0]["state"] == "resolved"
    finally:
        site.publisher.close()
        site.ledger.close()


def test_folders_on_one_volume_are_one_volume_and_on_two_are_two(
        tmp_path: Path, tmpfs: Callable[[Path, str], Path]) -> None:
    other = tmpfs(tmp_path / "otro", "size=4m")
    site = site_on(tmpfs, tmp_path / "d", "size=8m")
    try:
        site.config_path.write_text(site.config_path.read_text()
                                    + f'\n[nginx]\naccess_log = "{other}/nginx/access.log"\n')
        cfg = config_mod.load(site.config_path)
        found = disk.volumes(cfg)
        assert len(found) == 2 and found[0].device != found[1].device
        state, logs = found
        for folder in (cfg.state_dir, site.state.store, site.state.logs, site.state.quarantine):
            assert str(folder) in state.folders
        assert logs.folders == (str(other / "nginx"),)  # not there yet: measured at its parent
        assert 7 * MIB < state.total <= 8 * MIB and 3 * MIB < logs.total <= 4 * MIB
        assert 0 < state.free <= state.total and state.inodes_free <= state.inodes_total
        assert disk.name(state) == f"{cfg.state_dir} ({len(state.folders)} carpetas)"
        assert disk.name(logs) == str(other / "nginx")
        assert disk.mount_point(other / "nginx") == other
        # Defaults: an 8 MB disk is far below the convocatoria's 20 GB.
        lvl, why = disk.level(state, config_mod.MonitorSettings())
        assert lvl == "critical" and "convocatoria II.1.c" in why
        # Each volume is judged on its own: only the nearly full one has an incident.
        fill_until(other, 2 * MIB)
        watched = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(
            update={"disk_warn_gb": 0.003})})
        Monitor(watched, site.ledger).check_once()
        (incident,) = disk_incidents(site)
        assert incident["target"] == str(other / "nginx") and incident["severity"] == "minor"
        assert "el almacén" not in incident["cause_suggested"]  # no store on that one
    finally:
        site.publisher.close()
        site.ledger.close()


def test_each_site_and_feed_state_is_watched(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d", '\n[sites.prueba]\nrole = "prueba"\n'
                     'url = "http://prueba.localhost:8080"\n'
                     '\n[sites.oficial]\nrole = "oficial"\nurl = "http://prep.localhost:8080"\n')
    try:
        state = site.cfg.state_dir
        listed = [Path(f) for f in disk.folders(site.cfg)]
        for name in ("prueba", "oficial"):
            assert state / "sites" / name / "store" in listed
        (volume,) = disk.volumes(site.cfg)  # all on the test machine's one disk
        assert str(state / "sites" / "oficial" / "store") in volume.folders
        assert [s for s, _ in disk.stores(site.cfg)] == ["prueba", "oficial"]
    finally:
        site.publisher.close()
        site.ledger.close()


def test_the_gc_estimate_is_what_gc_frees(site: Site) -> None:
    publish(site, 8, extra=20_000)
    estimate = disk.gc_estimate(site.state.store)
    assert estimate.releases == 8 and set(estimate.freeable) == {5}  # 20 keeps all of them
    assert "«difusor gc --keep 5» liberaría unos" in disk.gc_text(estimate)
    result = collect_cortes(site.publisher, 5)
    assert len(result.releases) == 3 and result.freed == estimate.freeable[5] > 3 * 20_000
    assert disk.gc_estimate(site.state.store).freeable == {}  # 5 left: nothing to suggest


@pytest.mark.parametrize(("old", "expected"), [
    (2048, {"disk_critical_gb": 2.0, "disk_warn_gb": 25.0}),
    (0, dict.fromkeys(QUIET, 0.0)),
])
def test_the_old_single_threshold_still_loads(old: int, expected: dict[str, float]) -> None:
    monitor = config_mod.MonitorSettings.model_validate({"disk_min_free_mb": old})
    assert {k: getattr(monitor, k) for k in expected} == expected
