"""``logtail.Follower``: whole lines only, across a rename rotation (the renamed file still read
while a writer may append to it) and a truncation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from difusor import logtail
from difusor.logtail import Follower


def test_lines_after_a_rotation_come_from_both_files_then_the_old_one_is_let_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"a\nb")
    follower = Follower(path)
    assert follower.read() == b"a\n"  # "b" has no end of line yet
    old = path.open("ab")  # a worker still holding the file logrotate renames
    os.rename(path, tmp_path / "access.log.1")
    path.write_bytes(b"new-1\n")
    assert follower.read() == b"new-1\n"
    old.write(b"\nc\n")
    old.flush()
    assert follower.read() == b"b\nc\n"  # still read after the move to the new file
    old.close()
    follower.close()


def test_the_renamed_file_is_let_go_after_its_grace_with_its_last_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtail, "RETIRED_SECONDS", 0.0)
    path = tmp_path / "access.log"
    path.write_bytes(b"a\n")
    follower = Follower(path)
    assert follower.read() == b"a\n"
    with path.open("ab") as old:
        os.rename(path, tmp_path / "access.log.1")
        path.write_bytes(b"")
        old.write(b"tail")  # the writer's last, unterminated line
        old.flush()
        assert follower.read() == b""  # moves to the new file; the old one is due now
        assert follower.read() == b"tail"  # let go: its tail delivered, once
        old.write(b"\nlate\n")
    assert follower.read() == b""
    follower.close()


def test_a_truncation_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"one\ntwo\n")
    follower = Follower(path)
    assert follower.read() == b"one\ntwo\n"
    path.write_bytes(b"3\n")
    assert follower.read() == b"3\n"
    follower.close()
