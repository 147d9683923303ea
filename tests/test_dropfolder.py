"""The drop-folder watcher: only whole files reach the inbox, once, byte for byte."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import pytest
from conftest import Site, make_site

from difusor.config import Config
from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import DifusorError
from difusor.publish.activate import live_release
from difusor.publish.status import status
from difusor.receive.dropfolder import DropFolderWatcher
from difusor.receive.inbox import arrivals
from difusor.receive.intake import original_name


class WatcherThread:
    """A :class:`DropFolderWatcher` running in a thread, recording deliveries and log lines."""

    def __init__(self, cfg: Config) -> None:
        self.delivered: queue.Queue[Path] = queue.Queue()
        self.logs: list[str] = []
        self.watcher = DropFolderWatcher(cfg, on_delivered=self.delivered.put, log=self.logs.append)
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run(self.stop)
        except BaseException as exc:  # surfaced by the test through .failure
            self.failure = exc

    def start(self) -> WatcherThread:
        self.thread.start()
        wait_for(lambda: any(line.startswith("vigilando") for line in self.logs), 10)
        return self

    def close(self) -> float:
        """Stop it; returns how long ``run`` took to return."""
        t0 = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "run() no terminó"
        assert self.failure is None, self.failure
        return time.monotonic() - t0

    def next(self, timeout: float = 10) -> Path:
        return self.delivered.get(timeout=timeout)

    def none_within(self, seconds: float) -> None:
        with pytest.raises(queue.Empty):
            got = self.delivered.get(timeout=seconds)
            pytest.fail(f"se entregó {got}")

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.logs)


@contextmanager
def watching(cfg: Config) -> Iterator[WatcherThread]:
    w = WatcherThread(cfg).start()
    try:
        yield w
    finally:
        w.close()


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("tiempo agotado")
        time.sleep(0.02)


def dropfolder_toml(*dirs: Path, **opts: object) -> str:
    lines = ["", "[dropfolder]", "dirs = [" + ", ".join(f'"{d}"' for d in dirs) + "]"]
    for key, value in opts.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def drop_site(tmp_path: Path, drop: Path, **opts: object) -> Site:
    return make_site(tmp_path / "difusor", dropfolder_toml(drop, **opts))


@pytest.fixture
def dsite(tmp_path: Path, drop: Path) -> Iterator[Site]:
    s = drop_site(tmp_path, drop)
    yield s
    s.ledger.close()


def payload(size: int = 300_000, seed: int = 1) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def write_in_chunks(path: Path, data: bytes, chunks: int = 4) -> None:
    """Open, write piece by piece and close: what an interrupted transfer leaves, too."""
    step = max(1, len(data) // chunks)
    with path.open("wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(0.02)


def sidecar_text(data: bytes, name: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


def inbox_names(site: Site) -> list[str]:
    return [a.name for a in arrivals(site.state.inbox)]


@pytest.mark.slow
def test_rename_from_part_delivers_once_byte_identical(dsite: Site, drop: Path) -> None:
    data = payload()
    with watching(dsite.cfg) as w:
        write_in_chunks(drop / "20241208_2030_PREP.zip.part", data)
        w.none_within(0.3)  # still a temporary name
        os.rename(drop / "20241208_2030_PREP.zip.part", drop / "20241208_2030_PREP.zip")
        got = w.next()
        w.none_within(1.5)
    assert got.read_bytes() == data
    assert original_name(got.name) == "20241208_2030_PREP.zip"
    assert inbox_names(dsite) == ["20241208_2030_PREP.zip"]
    assert list(drop.iterdir()) == []
    assert w.logged("renombrado desde un nombre temporal")


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync no está instalado")
@pytest.mark.slow
def test_rsync_into_the_folder_delivers_once(dsite: Site, drop: Path, tmp_path: Path) -> None:
    source = tmp_path / "paquetes" / "20241208_2040_PREP.zip"
    source.parent.mkdir()
    source.write_bytes(payload(2_000_000, seed=2))
    with watching(dsite.cfg) as w:
        subprocess.run(["rsync", "-a", str(source), str(drop) + "/"], check=True, timeout=30)
        got = w.next()
        w.none_within(1.5)
        # --delay-updates renames from a subfolder: the file is moved in whole.
        subprocess.run(["rsync", "-a", "--delay-updates", str(source), str(drop) + "/"],
                       check=True, timeout=30)
        again = w.next()
        w.none_within(1.0)
    assert got.read_bytes() == again.read_bytes() == source.read_bytes()
    assert inbox_names(dsite) == ["20241208_2040_PREP.zip"] * 2
    assert list(drop.iterdir()) == []


@pytest.mark.slow
def test_partial_file_under_its_final_name_is_not_delivered(dsite: Site, drop: Path) -> None:
    with watching(dsite.cfg) as w:
        write_in_chunks(drop / "20241208_2050_PREP.zip", payload()[:100_000])  # then "killed"
        w.none_within(2.5)
        wait_for(lambda: w.logged("no se entrega"), 5)
    assert (drop / "20241208_2050_PREP.zip").exists()
    assert inbox_names(dsite) == []
    assert sum("20241208_2050_PREP.zip tiene su nombre final" in line for line in w.logs) == 1


@pytest.mark.slow
def test_matching_sidecar_delivers_package_then_sidecar(dsite: Site, drop: Path) -> None:
    data = payload(seed=3)
    with watching(dsite.cfg) as w:
        write_in_chunks(drop / "X.zip", data)
        w.none_within(0.3)
        (drop / "X.zip.sha256").write_text(sidecar_text(data, "X.zip"))
        first, second = w.next(), w.next()
    assert original_name(first.name) == "X.zip" and first.read_bytes() == data
    assert original_name(second.name) == "X.zip.sha256"
    assert inbox_names(dsite) == ["X.zip", "X.zip.sha256"]
    assert list(drop.iterdir()) == []


@pytest.mark.slow
def test_mismatching_sidecar_delivers_nothing_and_says_why(dsite: Site, drop: Path) -> None:
    data = payload(seed=4)
    with watching(dsite.cfg) as w:
        write_in_chunks(drop / "Y.zip", data[:1000])  # cut short
        (drop / "Y.zip.sha256").write_text(sidecar_text(data, "Y.zip"))
        w.none_within(2.0)
        wait_for(lambda: w.logged("no coincide"), 5)
    line = next(line for line in w.logs if "no coincide" in line)
    assert "Y.zip" in line and hashlib.sha256(data).hexdigest()[:12] in line
    assert inbox_names(dsite) == []
    assert sorted(p.name for p in drop.iterdir()) == ["Y.zip", "Y.zip.sha256"]


def test_sidecar_after_a_renamed_package_follows_it(dsite: Site, drop: Path) -> None:
    data = payload(seed=5)
    with watching(dsite.cfg) as w:
        (drop / "Z.zip.part").write_bytes(data)
        os.rename(drop / "Z.zip.part", drop / "Z.zip")
        w.next()
        (drop / "Z.zip.sha256.part").write_text(sidecar_text(data, "Z.zip"))
        os.rename(drop / "Z.zip.sha256.part", drop / "Z.zip.sha256")
        w.next()
    assert inbox_names(dsite) == ["Z.zip", "Z.zip.sha256"]


def test_sidecar_first_then_package_under_its_final_name(dsite: Site, drop: Path) -> None:
    data = payload(seed=6)
    with watching(dsite.cfg) as w:
        (drop / "W.zip.sha256").write_text(sidecar_text(data, "W.zip"))
        assert original_name(w.next().name) == "W.zip.sha256"  # alone; paired by name
        write_in_chunks(drop / "W.zip", data)
        assert w.next().read_bytes() == data  # checked against the remembered digest
    assert inbox_names(dsite) == ["W.zip.sha256", "W.zip"]


@pytest.mark.slow
def test_hidden_and_temporary_files_are_never_delivered(dsite: Site, drop: Path) -> None:
    with watching(dsite.cfg) as w:
        (drop / ".oculto").write_bytes(b"x")
        (drop / ".A.zip.Xy12Zq").write_bytes(b"rsync a medias")
        (drop / "B.zip.filepart").write_bytes(b"winscp a medias")
        (drop / "C.zip.tmp").write_bytes(b"x")
        (drop / "C.zip.tmp.sha256").write_text(sidecar_text(b"x", "C.zip.tmp"))
        w.none_within(2.0)
    assert len(list(drop.iterdir())) == 5 and not w.logged("no se entrega")


@pytest.mark.slow
def test_polling_fallback(tmp_path: Path, drop: Path) -> None:
    site = drop_site(tmp_path, drop, inotify=False, poll_interval=0.2)
    data = payload(seed=7)
    with watching(site.cfg) as w:
        assert w.logged("revisando cada 0.2 s")
        (drop / "P.zip.part").write_bytes(data)
        w.none_within(0.6)  # seen under its temporary name
        os.rename(drop / "P.zip.part", drop / "P.zip")
        assert w.next(5).read_bytes() == data
        write_in_chunks(drop / "Q.zip", data)
        (drop / "Q.zip.sha256").write_text(sidecar_text(data, "Q.zip"))
        assert original_name(w.next(5).name) == "Q.zip"
        assert original_name(w.next(5).name) == "Q.zip.sha256"
        write_in_chunks(drop / "R.zip", data[:500])  # cut short, no sidecar
        w.none_within(2.0)
    assert inbox_names(site) == ["P.zip", "Q.zip", "Q.zip.sha256"]
    site.ledger.close()


def test_files_present_before_start_are_picked_up(dsite: Site, drop: Path) -> None:
    data = payload(seed=8)
    (drop / "S.zip").write_bytes(data)
    (drop / "S.zip.sha256").write_text(sidecar_text(data, "S.zip"))
    (drop / "T.zip.part").write_bytes(data)  # still uploading when we stopped
    watcher = DropFolderWatcher(dsite.cfg, log=lambda _: None)
    got = watcher.scan_once()
    assert [original_name(p.name) for p in got] == ["S.zip", "S.zip.sha256"]
    assert got[0].read_bytes() == data
    assert sorted(p.name for p in drop.iterdir()) == ["T.zip.part"]
    with watching(dsite.cfg) as w:  # and the upload finishes once we run again
        os.rename(drop / "T.zip.part", drop / "T.zip")
        assert w.next().read_bytes() == data


def test_run_picks_up_what_arrived_while_stopped(dsite: Site, drop: Path) -> None:
    data = payload(seed=9)
    (drop / "U.zip").write_bytes(data)
    (drop / "U.zip.sha256").write_text(sidecar_text(data, "U.zip"))
    with watching(dsite.cfg) as w:
        assert w.next().read_bytes() == data
        w.next()
    assert inbox_names(dsite) == ["U.zip", "U.zip.sha256"]


@pytest.mark.slow
def test_close_rule(tmp_path: Path, drop: Path) -> None:
    site = drop_site(tmp_path, drop, complete_on=["close"])
    data = payload(seed=10)
    (drop / "antes.zip").write_bytes(data)  # found at start: taken once it stays unchanged
    with watching(site.cfg) as w:
        t0 = time.monotonic()
        assert w.next(5).read_bytes() == data
        assert time.monotonic() - t0 >= 0.9
        write_in_chunks(drop / "despues.zip", data)  # closed → taken (even if it was cut)
        assert w.next(5).read_bytes() == data
    assert inbox_names(site) == ["antes.zip", "despues.zip"]
    site.ledger.close()


@pytest.mark.parametrize("inotify", [True, False])
def test_stop_makes_run_return_quickly(tmp_path: Path, drop: Path, inotify: bool) -> None:
    site = drop_site(tmp_path, drop, inotify=inotify, poll_interval=5.0)
    w = WatcherThread(site.cfg).start()
    time.sleep(0.3)
    assert w.close() < 0.5
    site.ledger.close()


def test_missing_folder_is_an_operator_error(tmp_path: Path) -> None:
    site = drop_site(tmp_path, tmp_path / "no-existe")
    with pytest.raises(DifusorError, match="no existe la carpeta vigilada"):
        DropFolderWatcher(site.cfg).run(threading.Event())
    site.ledger.close()


def _other_filesystem(than: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != than.stat().st_dev:
        return shm
    return None


def test_other_filesystem_copies_then_removes(tmp_path: Path) -> None:
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no hay otro sistema de archivos escribible (/dev/shm)")
    drop = other / f"difusor-drop-{os.getpid()}-{time.monotonic_ns()}"
    drop.mkdir()
    try:
        site = drop_site(tmp_path, drop)
        data = payload(1_500_000, seed=11)
        with watching(site.cfg) as w:
            (drop / "V.zip.part").write_bytes(data)
            os.rename(drop / "V.zip.part", drop / "V.zip")
            got = w.next()
        assert got.read_bytes() == data
        assert list(drop.iterdir()) == []
        assert [p.name for p in site.state.inbox.iterdir()] == [got.name]  # no temp left
        # A copy interrupted by a crash is finished by the next scan.
        claim = drop / ".difusor-entrega-0badf00d-K.zip"
        claim.write_bytes(data)
        got = DropFolderWatcher(site.cfg, log=lambda _: None).scan_once()
        assert [original_name(p.name) for p in got] == ["K.zip"] and got[0].read_bytes() == data
        assert not claim.exists()
        site.ledger.close()
    finally:
        shutil.rmtree(drop, ignore_errors=True)


def test_what_the_watcher_receives_gets_published(dsite: Site, drop: Path, tmp_path: Path) -> None:
    first, second = SyntheticElection(casillas=6).cortes(2)
    packages = tmp_path / "autoridad"
    live_main = []
    with watching(dsite.cfg) as w:
        for n, corte in enumerate((first, second)):
            pkg = write_package(corte, packages, kind="full" if n == 0 else "incremental")
            shutil.copyfile(pkg, drop / (pkg.name + ".part"))
            os.rename(drop / (pkg.name + ".part"), drop / pkg.name)
            got = w.next()
            assert got.read_bytes() == pkg.read_bytes()
            outcome = dsite.publisher.publish(got, name=original_name(got.name), link=True)
            assert outcome.status == "published"
            doc = status(dsite.ledger, dsite.store, UTC)
            assert doc["corte"]["id"] == outcome.release_id
            assert doc["corte"]["paquete_sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
            manifest = dsite.publisher.manifests.load(live_release(dsite.store))
            live_main.append(manifest.files["json/main.json"].sha256)
            assert live_main[-1] == hashlib.sha256(corte.files["json/main.json"]).hexdigest()
    assert live_main[0] != live_main[1]
