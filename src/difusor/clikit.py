"""What every command module shares: the console, the --config option, progress bars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from difusor import config as config_mod
from difusor.ledger import Ledger
from difusor.paths import StateLayout

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Archivo de configuración.", show_default=True),
]
DEFAULT_CONFIG = Path(config_mod.DEFAULT_CONFIG)


def ledger_for(cfg: config_mod.Config) -> Ledger:
    return Ledger(StateLayout(cfg.state_dir).ledger)


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on a terminal for long work; nothing when output is redirected."""
    if not err.is_terminal:
        yield None
        return
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True)
    task = bar.add_task(label, total=None)

    def update(done: int, total: int | None) -> None:
        if total is not None and total < 500:
            return
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()
