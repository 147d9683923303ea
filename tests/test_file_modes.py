"""Files that hold visitors' IPs are 0640 whatever the umask (issue 17, item 16)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_site

from difusor.analytics.db import connect, database_path
from difusor.ledger import Ledger
from difusor.paths import StateLayout


@pytest.fixture
def umask_000() -> Iterator[None]:
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ledger_analytics_and_log_are_0640_under_umask_000(tmp_path: Path,
                                                           umask_000: None) -> None:
    site = make_site(tmp_path / "d")
    site.ledger.close()
    layout = StateLayout(site.cfg.state_dir)
    assert mode(layout.ledger) == 0o640
    with Ledger(layout.ledger) as ledger:  # a write makes the -wal and -shm: same mode
        ledger.event("run_started", "prueba")
        for extra in ("-wal", "-shm"):
            side = Path(str(layout.ledger) + extra)
            if side.exists():
                assert mode(side) & 0o007 == 0, side
    con = connect(site.cfg)
    con.close()
    assert mode(database_path(site.cfg)) == 0o640
    assert mode(layout.analytics) & 0o007 == 0
    layout.create()
    assert mode(layout.log_file) == 0o640


def test_an_existing_world_readable_ledger_is_tightened(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d")
    site.ledger.close()
    ledger = StateLayout(site.cfg.state_dir).ledger
    os.chmod(ledger, 0o666)
    Ledger(ledger).close()
    assert mode(ledger) == 0o640
