"""difusor.log: control characters shown, never obeyed; rotated by size, every file 0640."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from difusor.run import supervisor


@pytest.fixture
def operator_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(supervisor, "LOG_MAX_BYTES", 4000)
    path = tmp_path / "logs" / "difusor.log"
    previous = os.umask(0)  # the worst umask: the files must still be 0640
    try:
        supervisor.setup_logging(path)
        yield path
    finally:
        os.umask(previous)
        for handler in supervisor.log.handlers:
            handler.close()
        supervisor.log.handlers[:] = []


def test_control_characters_are_written_escaped(operator_log: Path, capsys) -> None:
    supervisor.log.info("sondeo de /\x1b[2J\x1b]0;pwned\x07x\rfin")
    text = operator_log.read_text()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "/\\x1b[2J\\x1b]0;pwned\\x07x\\x0dfin" in text
    assert "\x1b" not in capsys.readouterr().err


def test_the_log_rotates_by_size_and_every_file_stays_private(operator_log: Path) -> None:
    for n in range(200):
        supervisor.log.info(f"línea {n:03d} " + "x" * 60)
    files = sorted(operator_log.parent.glob("difusor.log*"))
    assert len(files) >= 3
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o640 for f in files), [oct(f.stat().st_mode) for f in files]
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 200 and all(f.stat().st_size <= 4000 for f in files)
