"""The memoria's renderer in child processes (report/worker.py: one draws, one typesets): the
same bytes as in this process, their errors raised here, and never a child left behind."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from report_doc import DRAWINGS, TABLES, make_doc

from difusor.report import render
from difusor.report.worker import RenderWorker


@pytest.fixture
def fixed_drawings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "draw_all", lambda doc, cfg: dict(DRAWINGS))


def _pids(worker: RenderWorker) -> list[int]:
    return [c.proc.pid for c in (worker._drawer, worker._typesetter) if c is not None
            and c.proc.pid is not None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.slow
def test_the_worker_writes_what_this_process_writes(tmp_path: Path, fixed_drawings: None) -> None:
    cfg = SimpleNamespace(root=tmp_path)
    there_doc, here_doc = make_doc(), make_doc()
    with RenderWorker.start() as worker:
        pids = _pids(worker)
        assert len(pids) == 2 and os.getpid() not in pids
        there = worker.write(there_doc, TABLES, tmp_path / "hijo", cfg)
    assert not any(_alive(pid) for pid in pids)
    here = render.write_memoria(here_doc, TABLES, tmp_path / "aqui", cfg)
    assert [p.relative_to(tmp_path / "hijo") for p in there] == [
        p.relative_to(tmp_path / "aqui") for p in here]
    for a, b in zip(there, here, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert there_doc["anexos"] == here_doc["anexos"] != []  # filled here, as in process


@pytest.mark.slow
def test_an_error_in_the_worker_is_raised_here(tmp_path: Path, fixed_drawings: None) -> None:
    blocked = tmp_path / "ocupado"
    blocked.write_text("un archivo donde iría la carpeta")
    with RenderWorker.start() as worker, pytest.raises(OSError):
        worker.write(make_doc(), TABLES, blocked, SimpleNamespace(root=tmp_path))


def test_a_worker_never_used_is_gone_at_once() -> None:
    worker = RenderWorker.start()
    pids = _pids(worker)
    started = time.monotonic()
    worker.close()  # e.g. a bad --from: the command ends without rendering
    assert time.monotonic() - started < 2 and not any(_alive(pid) for pid in pids)


@pytest.mark.slow
def test_an_error_while_drawing_is_raised_here_and_the_typesetter_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(doc: dict, cfg: object) -> dict:
        raise ValueError("gráfica imposible")

    monkeypatch.setattr(render, "draw_all", broken)
    with RenderWorker.start() as worker:
        pids = _pids(worker)
        with pytest.raises(ValueError, match="gráfica imposible"):
            worker.write(make_doc(), TABLES, tmp_path / "x", SimpleNamespace(root=tmp_path))
    assert not any(_alive(pid) for pid in pids) and not (tmp_path / "x").exists()


def test_without_a_child_the_work_is_done_here(tmp_path: Path, fixed_drawings: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(render, "write_memoria",
                        lambda doc, tables, outdir, cfg: calls.append(outdir) or [outdir])
    with RenderWorker() as worker:  # no fork (or --json): in this process
        assert worker.write(copy.deepcopy(make_doc()), TABLES, tmp_path, None) == [tmp_path]
    assert calls == [tmp_path]
