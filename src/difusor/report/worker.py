"""The memoria's drawing and typesetting in two child processes that get ready while the figures
are gathered.

Importing Matplotlib takes about 0.8 s and WeasyPrint about 0.75 s, as long together as the
CLI's imports and DuckDB's count of a night's visits: the command's prelude (``prestart``,
cli/prelude.py) forks both before the CLI is even imported (before DuckDB or any thread exists
in this process). One child imports Matplotlib and draws (``render.draw_all``), the other
imports WeasyPrint and typesets (``render.write_memoria``, given the drawings); each gets ready
on its own while this process gathers the figures, then ``write`` hands the document to the
first and its drawings to the second. The files are the very ones ``write_memoria`` writes in
one process — it *is* ``write_memoria`` — and a child's exception is raised here. Without
``fork`` (or if a child dies) the work is done in this process: slower, never different.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difusor.config import Config
    from difusor.report.tables import Table


def _serve(conn: Connection, preload: str, work: Callable[[Any], Any]) -> None:
    """Child: import and warm up (``render.<preload>``), then do one job and send the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        from difusor.report import render

        getattr(render, preload)()
        job = conn.recv()
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away or needed nothing
    try:
        reply: tuple[str, Any] = ("ok", work(job))
    except BaseException as exc:  # sent back whole: the parent raises it as its own
        reply = ("error", exc)
    try:
        conn.send(reply)
    except Exception as exc:  # an exception that does not pickle: its text, then
        conn.send(("error", RuntimeError(f"{type(exc).__name__}: {reply[1]!r}")))
    finally:
        conn.close()


def _draw(job: tuple[dict[str, Any], Config]) -> dict[str, str]:
    from difusor.report.render import draw_all

    return draw_all(*job)


def _typeset(job: tuple[Any, ...]) -> tuple[list[Path], Any]:
    from difusor.report.render import write_memoria

    doc = job[0]
    return write_memoria(*job), doc["anexos"]


class _Child:
    def __init__(self, name: str, preload: str, work: Callable[[Any], Any]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, preload, work), daemon=True,
                                name=name)
        self.proc.start()
        child.close()
        self.sent = False

    def ask(self, job: Any) -> tuple[str, Any]:
        """("ok", result), ("error", exception) or ("lost", None) when the child is gone."""
        try:
            self.sent = True
            self.conn.send(job)
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return "lost", None
        finally:
            self.close()

    def close(self) -> None:
        self.conn.close()
        if not self.sent:  # an error before the figures were ready: nothing to wait for
            self.proc.kill()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


_prestarted: RenderWorker | None = None


def prestart(args: list[str]) -> None:
    """``difusor report``'s prelude (cli/prelude.py): fork before the CLI's imports, so the
    children have the whole of them to get ready in. Not for ``--json`` or ``--help``."""
    global _prestarted
    if not {"--json", "--help"} & set(args):
        _prestarted = RenderWorker.start()


class RenderWorker:
    def __init__(self) -> None:
        self._drawer: _Child | None = None
        self._typesetter: _Child | None = None

    @classmethod
    def start(cls) -> RenderWorker:
        """The worker the prelude started, or a new one."""
        global _prestarted
        if _prestarted is not None:
            worker, _prestarted = _prestarted, None
            return worker
        worker = cls()
        if "fork" in multiprocessing.get_all_start_methods():
            worker._drawer = _Child("difusor-graficas", "preload_drawing", _draw)
            worker._typesetter = _Child("difusor-memoria", "preload_typesetting", _typeset)
        return worker

    def write(self, doc: dict[str, Any], tables: dict[str, Table], outdir: Path,
              cfg: Config) -> list[Path]:
        """``render.write_memoria(doc, tables, outdir, cfg)``, in the children when there are."""
        drawings = None
        if self._drawer is not None:
            kind, value = self._drawer.ask((doc, cfg))
            self._drawer = None
            if kind == "error":
                raise value
            drawings = value if kind == "ok" else None
        if self._typesetter is not None:
            kind, value = self._typesetter.ask((doc, tables, outdir, cfg, drawings))
            self._typesetter = None
            if kind == "ok":
                paths, annexes = value
                doc["anexos"] = annexes  # filled by the child, as write_memoria does
                return list(paths)
            if kind == "error":
                raise value
        from difusor.report.render import write_memoria

        if drawings is None:
            return write_memoria(doc, tables, outdir, cfg)
        return write_memoria(doc, tables, outdir, cfg, drawings)

    def close(self) -> None:
        for child in (self._drawer, self._typesetter):
            if child is not None:
                child.close()
        self._drawer = self._typesetter = None

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
