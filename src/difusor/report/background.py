"""The ledger's figures read in a child process while this one summarises the visits.

The summary of a month (DuckDB, most of the memoria's time) and the ledger's part (uptime over
half a million probes, the corte chronology, probes per hour: plain Python over SQLite) do not
depend on each other. A thread would not do: beside a thread busy in Python, the month's
summary took twice as long (measured; DuckDB's client keeps taking the GIL back as it runs).
A forked child has its own interpreter: it opens its own connection to the ledger (never the
parent's: SQLite connections do not cross a fork), does its job and sends the result back,
while DuckDB has this process to itself. Without ``fork`` the job runs here, first.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class Pending:
    """A job's result (or its exception), asked for once with ``result``."""

    def __init__(self, conn: Connection | None = None, proc: Any = None,
                 done: tuple[str, Any] | None = None) -> None:
        self._conn, self._proc, self._done = conn, proc, done

    def result(self) -> Any:
        if self._done is None:
            assert self._conn is not None
            try:
                self._done = self._conn.recv()
            except (EOFError, OSError):
                self._done = ("error", RuntimeError("el proceso que leía la bitácora terminó "
                                                    "sin responder"))
            finally:
                self._conn.close()
                self._proc.join(timeout=5)
        kind, value = self._done
        if kind == "error":
            raise value
        return value


def _run(conn: Connection, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        reply: tuple[str, Any] = ("ok", work(*args))
    except BaseException as exc:  # sent back whole: the parent raises it as its own
        reply = ("error", exc)
    try:
        conn.send(reply)
    except OSError:
        pass  # the parent is gone: nobody to tell
    finally:
        conn.close()


def in_child(work: Callable[..., Any], *args: Any) -> Pending:
    """``work(*args)`` in a forked child (arguments by fork, the result pickled back); here, at
    once, without ``fork``. A daemon: the command ending stops it."""
    if "fork" not in multiprocessing.get_all_start_methods():
        try:
            return Pending(done=("ok", work(*args)))
        except Exception as exc:
            return Pending(done=("error", exc))
    ctx = multiprocessing.get_context("fork")
    conn, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run, args=(child, work, args), daemon=True,
                       name="difusor-bitacora")
    proc.start()
    child.close()
    return Pending(conn, proc)
