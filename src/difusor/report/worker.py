"""The memoria's drawing and typesetting in two child processes that get ready while the figures
are gathered, then work side by side.

Importing Matplotlib takes about 0.8 s and WeasyPrint about 0.75 s, as long together as the
CLI's imports and DuckDB's count of a night's visits: the command's prelude (``prestart``,
cli/prelude.py) forks both before the CLI is even imported (before DuckDB or any thread exists
in this process). One child imports Matplotlib and draws (``render.draw_all``); the other warms
up WeasyPrint (``typeset.preload``) and typesets (``typeset.typeset``). ``write`` hands the
document to both at once: the typesetter parses the page and computes its styles while the
drawer draws, then gets the drawings from here when WeasyPrint first needs one (typeset.py).
The files are the very ones ``render.write_memoria`` writes in one process — both run
``typeset`` — and a child's exception is raised here. Without ``fork`` (or if a child dies)
the work is done in this process: slower, never different.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difusor.config import Config
    from difusor.report.tables import Table


def _serve(conn: Connection, preload: Callable[[], None],
           work: Callable[[Any, Connection], Any]) -> None:
    """Child: warm up, then do one job and send the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        preload()
        # One job, then the process ends: the cyclic collector would only walk the imports
        # and the page's boxes again and again (a sixth of the typesetting) to free a few MB.
        gc.freeze()
        gc.disable()
        job = conn.recv()
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away or needed nothing
    try:
        reply: tuple[str, Any] = ("ok", work(job, conn))
    except BaseException as exc:  # sent back whole: the parent raises it as its own
        reply = ("error", exc)
    try:
        conn.send(reply)
    except OSError:
        pass  # the parent is gone (or stopping this child): nobody to tell
    except Exception as exc:  # an exception that does not pickle: its text, then
        with contextlib.suppress(OSError):
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {reply[1]!r}")))
    finally:
        conn.close()


def _preload_drawing() -> None:
    from difusor.report.render import preload_drawing

    preload_drawing()


def _draw(job: tuple[dict[str, Any], Config], _conn: Connection) -> dict[str, str]:
    from difusor.report import render

    return render.draw_all(*job)


def _preload_typesetting() -> None:
    from difusor.report.typeset import preload

    preload()


def _typeset(job: tuple[Any, ...], conn: Connection) -> tuple[list[Path], Any]:
    """``typeset`` with the drawings read from the parent when WeasyPrint first needs one."""
    from difusor.report.typeset import typeset

    def drawings() -> dict[str, str]:
        kind, value = conn.recv()  # EOFError when the parent gave up (a drawing failed)
        if kind != "drawings":
            raise RuntimeError("el proceso principal no envió las gráficas")
        return value  # type: ignore[no-any-return]

    doc, tables, outdir = job
    return typeset(doc, tables, outdir, drawings), doc["anexos"]


class _Child:
    def __init__(self, name: str, preload: Callable[[], None],
                 work: Callable[[Any, Connection], Any]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, preload, work), daemon=True,
                                name=name)
        self.proc.start()
        child.close()
        self.sent = False

    def send(self, message: Any) -> bool:
        """False when the child is gone (it may have left its reply: ``reply`` reads it)."""
        try:
            self.sent = True
            self.conn.send(message)
            return True
        except OSError:
            return False

    def reply(self) -> tuple[str, Any]:
        """("ok", result), ("error", exception) or ("lost", None) when the child is gone."""
        try:
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return "lost", None

    def ask(self, message: Any) -> tuple[str, Any]:
        self.send(message)
        return self.reply()

    def close(self, *, stop: bool = False) -> None:
        if stop or not self.sent:  # nothing to wait for: an error before, or a drawing failed
            self.proc.kill()  # before the pipe closes, so that it never wakes to an EOF
        self.conn.close()
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
            worker._drawer = _Child("difusor-graficas", _preload_drawing, _draw)
            worker._typesetter = _Child("difusor-memoria", _preload_typesetting, _typeset)
        return worker

    def write(self, doc: dict[str, Any], tables: dict[str, Table], outdir: Path,
              cfg: Config) -> list[Path]:
        """``render.write_memoria(doc, tables, outdir, cfg)``, in the children when there are."""
        from difusor.report import render

        drawer, typesetter = self._drawer, self._typesetter
        self._drawer = self._typesetter = None
        if drawer is None and typesetter is None:
            return render.write_memoria(doc, tables, outdir, cfg)
        try:
            if drawer is not None:
                drawer.send((doc, cfg))
            if typesetter is not None:
                typesetter.send((doc, tables, outdir))  # starts on the page meanwhile
            drawings = self._drawings(drawer, doc, cfg)
            if typesetter is not None:
                typesetter.send(("drawings", drawings))
                kind, value = typesetter.reply()
                if kind == "ok":
                    paths, annexes = value
                    doc["anexos"] = annexes  # filled by the child, as write_memoria does
                    return list(paths)
                if kind == "error":
                    raise value
            return render.write_memoria(doc, tables, outdir, cfg, drawings)
        except BaseException:
            if typesetter is not None:
                typesetter.close(stop=True)  # it may be waiting for drawings that never come
            raise
        finally:
            for child in (drawer, typesetter):
                if child is not None:
                    child.close()

    @staticmethod
    def _drawings(drawer: _Child | None, doc: dict[str, Any], cfg: Config) -> dict[str, str]:
        if drawer is not None:
            kind, value = drawer.reply()
            drawer.close()
            if kind == "error":
                raise value
            if kind == "ok":
                return value  # type: ignore[no-any-return]
        from difusor.report import render

        return render.draw_all(doc, cfg)  # no drawer, or it died: here

    def close(self) -> None:
        for child in (self._drawer, self._typesetter):
            if child is not None:
                child.close()
        self._drawer = self._typesetter = None

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
