"""What a command starts before the CLI's imports, declared per command.

Importing the CLI (its toolkit, pydantic and the config models) takes ≈ 0.3 s on one core. A
command may declare a *prelude*: a light function (no CLI, no pydantic, no DuckDB) called with
the arguments before those imports, and whether the garbage collector waits for the imports and
then freezes what they built (it lives as long as the process, so no later collection walks it).
``analytics ingest`` has one with nothing to start: a batch command on large logs, it spends
≈ 0.1 s less per million lines with the imports frozen, teardown included; ``report`` forks the
memoria's renderer
(``report.worker.prestart``), which gets ready while the figures are gathered.

This module imports nothing but the standard library: the launcher (``difusor/__main__.py``)
reads it before anything else.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Prelude:
    start: str | None  # "module:function", called with the command line's arguments
    freeze_gc: bool = True


PRELUDES: dict[tuple[str, ...], Prelude] = {
    ("analytics", "ingest"): Prelude(None),
    ("report",): Prelude("difusor.report.worker:prestart", freeze_gc=False),
}


def prelude_for(args: list[str]) -> Prelude | None:
    """The prelude of the command ``args`` name (without the program's name), if it has one."""
    for words, prelude in PRELUDES.items():
        if tuple(args[:len(words)]) == words:
            return prelude
    return None


@contextmanager
def before_imports(args: list[str]) -> Iterator[None]:
    """Runs the command's prelude, then the block (the CLI's imports) with the garbage collector
    held if the prelude asks, then freezes what the block built."""
    prelude = prelude_for(args)
    if prelude is None:
        yield
        return
    if prelude.start:
        module, _, name = prelude.start.partition(":")
        getattr(importlib.import_module(module), name)(args)
    if not prelude.freeze_gc:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
