"""The ingest's lookups (place of an address, kind of an agent) in their helper process."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from difusor.analytics import lookups as lookups_mod
from difusor.analytics.geo import Geo, default_db
from difusor.analytics.lookups import HELPER_BYTES, Lookups, answer, prestart
from difusor.errors import LogFormatError

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "", "curl/8.5.0", "agente\traro\ncon saltos",
]


def asked() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    rng = random.Random(5)
    ips = ["189.130.0.1", "200.52.1.1", "148.216.0.1", "8.8.8.8", "10.0.0.1", "::1",
           "2806:2f0::1", "no-es-ip"]
    ips += [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.1"
            for _ in range(3000)]
    return ([(ip, rng.getrandbits(64)) for ip in ips],
            [(ua, rng.getrandbits(64)) for ua in AGENTS])


def wait_gone(pid: int) -> bool:
    """Whether the process ends within 5 s (a zombie waiting for its parent has ended)."""
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_the_helper_answers_what_this_process_answers() -> None:
    ips, uas = asked()
    geo = Geo(default_db())
    try:
        here = answer(geo, ips, uas)
    finally:
        geo.close()
    assert "\tMX\tCiudad de México\n" in here[0] and "\tMX\tNuevo León\n" in here[0]
    lookups = Lookups(default_db())
    assert lookups.pid is None  # answers here until started
    lookups.start()
    pid = lookups.pid
    assert pid is not None
    try:
        assert lookups.ask(ips, uas) == here
        first_five = "".join(here[0].splitlines(keepends=True)[:5])
        assert lookups.ask(ips[:5], []) == (first_five, "")
        assert lookups.pid == pid  # the same helper answered both
    finally:
        lookups.close()
    assert wait_gone(pid)


@pytest.mark.slow
def test_a_helper_that_dies_is_replaced_by_answers_here() -> None:
    ips, uas = asked()
    lookups = Lookups(default_db())
    lookups.start()
    try:
        first = lookups.ask(ips, uas)
        pid = lookups.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid)
        assert lookups.ask(ips, uas) == first  # noticed, and answered here
        assert lookups.pid is None
    finally:
        lookups.close()


def test_a_bad_geolocation_database_is_a_clear_error_from_the_helper(tmp_path: Path) -> None:
    bad = tmp_path / "ciudades.mmdb"
    bad.write_bytes(b"esto no es una base mmdb")
    lookups = Lookups(bad)
    lookups.start()
    try:
        with pytest.raises(LogFormatError, match="no puedo abrir la base de geolocalización"):
            lookups.ask([("8.8.8.8", 1)], [])
        assert lookups.pid is not None  # an answer, not a death: the helper is still there
    finally:
        lookups.close()


def test_the_helper_ends_when_its_ingest_dies(tmp_path: Path) -> None:
    """A killed ingest cannot kill its helper: the helper ends when its stdin closes."""
    import subprocess
    import sys

    script = ("import sys, time\n"
              "from difusor.analytics.geo import default_db\n"
              "from difusor.analytics.lookups import Lookups\n"
              "lk = Lookups(default_db()); lk.start(); print(lk.pid, flush=True); time.sleep(60)\n")
    ingest = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert ingest.stdout is not None
        pid = int(ingest.stdout.readline())
        ingest.kill()
        ingest.wait()
        assert wait_gone(pid)
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()
        if ingest.stdout is not None:
            ingest.stdout.close()


def big_log(tmp_path: Path, size: int = HELPER_BYTES) -> Path:
    log = tmp_path / "grande.log"
    with log.open("wb") as f:
        f.truncate(size)  # (sparse: only its size matters to prestart)
    return log


@pytest.mark.slow
def test_a_large_ingest_prestarts_the_helper_and_start_takes_it(tmp_path: Path) -> None:
    """The launcher starts the helper before the CLI's imports; ``start`` takes that one
    (tells it the mmdb only then) and it answers as this process would."""
    log = big_log(tmp_path)
    prestart(["analytics", "ingest", "--format", "combined", str(log), "--config", "x.toml"])
    early = lookups_mod._prestarted
    assert early is not None
    lookups = Lookups(default_db())
    try:
        lookups.start()
        assert lookups.pid == early.pid and lookups_mod._prestarted is None
        ips, uas = asked()
        geo = Geo(default_db())
        try:
            assert lookups.ask(ips, uas) == answer(geo, ips, uas)
        finally:
            geo.close()
    finally:
        lookups.close()
    assert wait_gone(early.pid)


@pytest.mark.parametrize("argv", [["analytics", "ingest", "{small}"],
                                  ["analytics", "summary", "{big}"],
                                  ["analytics", "ingest", "no-existe.log", "--format", "combined"]],
                         ids=["small-log", "other-command", "no-file"])
def test_nothing_is_prestarted_for_small_logs_or_other_commands(tmp_path: Path,
                                                               argv: list[str]) -> None:
    small = tmp_path / "chico.log"
    small.write_text("x\n")
    names = {"small": str(small), "big": str(big_log(tmp_path))}
    prestart([a.format(**names) for a in argv])
    assert lookups_mod._prestarted is None


def test_a_prestarted_helper_not_needed_is_ended(tmp_path: Path) -> None:
    """The files turned out to hold little new (already ingested): the warm helper goes."""
    prestart(["analytics", "ingest", str(big_log(tmp_path))])
    early = lookups_mod._prestarted
    assert early is not None
    lookups = Lookups(default_db())
    lookups.start_for(1000)
    assert lookups.pid is None and lookups_mod._prestarted is None
    assert wait_gone(early.pid)
    lookups.close()
