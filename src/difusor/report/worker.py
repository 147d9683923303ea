"""The memoria's drawing and typesetting in a child process that gets ready while the figures are
gathered.

Importing WeasyPrint, Matplotlib and Jinja2 and warming up their fonts takes about a second and a
half, longer than the CLI's imports and DuckDB's count of a night's visits: the command's prelude
(``prestart``, cli/prelude.py) forks before the CLI is even imported (before DuckDB or any thread
exists in this process), the child gets ready on the other core, and ``write`` hands it the
finished document. The child writes the same files ``render.write_memoria`` writes — it *is*
``write_memoria`` — and sends back the paths, or the exception to raise here. Without ``fork``
(or if the child dies) the work is done in this process: slower, never different.
"""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difusor.config import Config
    from difusor.report.tables import Table


def _child(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        from difusor.report import render

        render.preload()
        job = conn.recv()
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away or needed nothing
    try:
        paths = render.write_memoria(*job)
        reply: tuple[str, Any] = ("ok", (paths, job[0]["anexos"]))
    except BaseException as exc:  # sent back whole: the parent raises it as its own
        reply = ("error", exc)
    try:
        conn.send(reply)
    except Exception as exc:  # an exception that does not pickle: its text, then
        conn.send(("error", RuntimeError(f"{type(exc).__name__}: {reply[1]!r}")))
    finally:
        conn.close()


_prestarted: RenderWorker | None = None


def prestart(args: list[str]) -> None:
    """``difusor report``'s prelude (cli/prelude.py): fork before the CLI's imports, so the child
    has the whole of them to get ready in. Not for ``--json`` or ``--help``: nothing to draw."""
    global _prestarted
    if not {"--json", "--help"} & set(args):
        _prestarted = RenderWorker.start()


class RenderWorker:
    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._sent = False

    @classmethod
    def start(cls) -> RenderWorker:
        """The worker the prelude started, or a new one."""
        global _prestarted
        if _prestarted is not None:
            worker, _prestarted = _prestarted, None
            return worker
        worker = cls()
        if "fork" not in multiprocessing.get_all_start_methods():
            return worker
        parent, child = multiprocessing.get_context("fork").Pipe()
        proc = multiprocessing.get_context("fork").Process(
            target=_child, args=(child,), daemon=True, name="difusor-memoria")
        proc.start()
        child.close()
        worker._conn, worker._proc = parent, proc
        return worker

    def write(self, doc: dict[str, Any], tables: dict[str, Table], outdir: Path,
              cfg: Config) -> list[Path]:
        """``render.write_memoria(doc, tables, outdir, cfg)``, in the child when there is one."""
        if self._conn is not None:
            try:
                self._sent = True
                self._conn.send((doc, tables, outdir, cfg))
                kind, value = self._conn.recv()
            except (EOFError, OSError):
                kind, value = "lost", None
            finally:
                self.close()
            if kind == "ok":
                paths, annexes = value
                doc["anexos"] = annexes  # filled by the child, as write_memoria does
                return list(paths)
            if kind == "error":
                raise value
        from difusor.report.render import write_memoria

        return write_memoria(doc, tables, outdir, cfg)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            if not self._sent:  # an error before the figures were ready: nothing to wait for
                self._proc.kill()
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
