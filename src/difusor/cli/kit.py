"""What every command module shares: the consoles, the --config and --now options, moments typed
on the command line, the ledger and the state folder checked before use, progress bars."""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from difusor import config as config_mod
from difusor.errors import StoreError
from difusor.ledger import Ledger
from difusor.moments import parse_moment
from difusor.paths import StateLayout

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Archivo de configuración.", show_default=True),
]
DEFAULT_CONFIG = Path(config_mod.DEFAULT_CONFIG)
JsonOpt = Annotated[bool, typer.Option("--json", help="Salida JSON.")]
SiteOpt = Annotated[str | None, typer.Option(
    "--site", help="Sitio con nombre (sección sites.NOMBRE); por omisión, el oficial.")]
NowOpt = Annotated[str | None, typer.Option(
    "--now", envvar="DIFUSOR_NOW", hidden=True,
    help="Momento fijo (ISO 8601) en lugar del reloj: solo para simulacros y pruebas.")]


def moment_from(value: str | None, zone: ZoneInfo, what: str = "--now / DIFUSOR_NOW") -> datetime:
    """A moment from the command line, ISO 8601 or ``dd/mm/aaaa HH:MM`` (a naive one is in the
    site's ``zone``); None is the clock. ``--now``/``DIFUSOR_NOW`` fix the clock for drills."""
    return datetime.now(UTC) if value is None else parse_moment(value, zone, what)


def optional_moment(value: str | None, zone: ZoneInfo, what: str) -> datetime | None:
    """An optional bound (``--from``, ``--to``): None stays None (open-ended)."""
    return None if value is None else parse_moment(value, zone, what)


def ledger_for(cfg: config_mod.Config) -> Ledger:
    """The ledger; an unusable state folder is ``StoreError`` (exit 4), never a traceback."""
    root = cfg.state_dir
    if root.exists() and not root.is_dir():
        raise StoreError(_not_a_folder(root))
    path = StateLayout(root).ledger
    try:
        return Ledger(path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(_unusable(root, exc, f"no puedo abrir la bitácora {path}")) from None


def existing_state(cfg: config_mod.Config) -> StateLayout:
    """The state folder of a site already made (``difusor init``), writable: checked before a
    command that needs it, so that a missing disk is said, not silently replaced by an empty
    folder, and a read-only one is one line (exit 4)."""
    root = cfg.state_dir
    if not root.exists():
        raise StoreError(f"la carpeta de estado {root} no existe: ¿falta montar el disco o es "
                         "otro --config? («difusor init» la crea)")
    if not root.is_dir():
        raise StoreError(_not_a_folder(root))
    try:
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise StoreError(_unusable(root, exc, "no puedo escribir")) from None
    return StateLayout(root)


def site_view(cfg: config_mod.Config, site: str | None) -> config_mod.Config:
    """``--site NAME`` → that site's view of the file (its state folder made inside the
    difusor's, which must exist); no ``[sites]`` and no ``--site``: the file itself."""
    from difusor.sites.catalog import resolve

    view = resolve(cfg, site)
    if view is not cfg:
        existing_state(cfg)
        StateLayout(view.state_dir).create()
    return view


def _not_a_folder(root: Path) -> str:
    return f"la carpeta de estado {root} no es una carpeta (es un archivo): revisa [state] dir"


def _unusable(root: Path, exc: Exception, doing: str) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.EROFS or "readonly" in str(exc):
        return (f"la carpeta de estado {root} es de solo lectura ({doing}): ¿el sistema la "
                "remontó así tras un error de disco?")
    if code in (errno.EACCES, errno.EPERM):
        return (f"sin permiso en la carpeta de estado {root} ({doing}): ¿otro usuario? "
                f"(este proceso es el uid {os.geteuid()})")
    reason = getattr(exc, "strerror", None) or str(exc)
    return f"la carpeta de estado {root} no se puede usar ({doing}): {reason}"


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on a terminal for long work, as the callback the library takes
    ``(done, total)``; nothing when output is redirected."""
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
