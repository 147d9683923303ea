"""The contract every origin kind fulfils, and the retries, timing and errors they share.

An origin is a place the public is served from. Publishing to it has two phases: ``stage`` puts
the whole corte there without anyone seeing it, ``switch`` makes it the one served, in a single
atomic step (a symlink rename, a remote ``mv -T``, the upload of ``json/main.json``). The public
methods here retry with backoff and time every attempt; a driver implements only ``_stage``,
``_switch`` and ``live`` for its kind (see ``local.py``, ``nginx.py``, ``ssh.py``, ``s3.py``).
"""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from difusor.config import Config, OriginSettings
from difusor.errors import DifusorError
from difusor.store.layout import StoreLayout
from difusor.store.manifest import Manifest, ManifestStore
from difusor.store.objects import ObjectStore


class OriginError(DifusorError):
    """An origin could not stage or switch; the message tells the operator what to check."""


@dataclass(frozen=True)
class Context:
    """What drivers may read: the configuration and the store (never the ledger)."""

    cfg: Config
    layout: StoreLayout
    objects: ObjectStore
    manifests: ManifestStore


@dataclass(frozen=True)
class Release:
    """A corte ready to be staged: its manifest and its materialised tree of files."""

    id: str
    manifest: Manifest
    tree: Path  # store/releases/<id>: hard links to the objects, variants beside them


@dataclass
class Result:
    """One phase on one origin: how it ended, how long it took, after how many attempts."""

    origin: str
    kind: str
    phase: str  # stage | switch
    ok: bool = False
    attempts: int = 0
    started: float = 0.0  # wall clock (time.time()) of the first attempt
    ended: float = 0.0
    error: str = ""
    exception: BaseException | None = field(default=None, repr=False)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ms(self) -> float:
        return round((self.ended - self.started) * 1000, 1)


class Origin(ABC):
    kind: ClassVar[str]
    retryable: ClassVar[bool] = True  # the local activation is not retried: it is one rename
    # Staging overwrites what the public may fetch (a bucket's objects): an interrupted staging
    # must be repaired by staging the live corte again.
    stages_in_place: ClassVar[bool] = False

    def __init__(self, settings: OriginSettings, ctx: Context) -> None:
        self.settings = settings
        self.ctx = ctx
        self.name = settings.name
        self.retries = settings.retries if self.retryable else 0
        self.backoff = settings.backoff
        self.timeout = settings.timeout

    # -- what a driver implements ---------------------------------------------------------

    @abstractmethod
    def _stage(self, release: Release) -> dict[str, Any]:
        """Put the whole release on the origin without serving it; returns details to record."""

    @abstractmethod
    def _switch(self, release_id: str) -> dict[str, Any]:
        """Serve ``release_id`` from now on, in one atomic step (it was staged before)."""

    def live(self) -> str | None:
        """The release the origin serves now, as the origin itself says (None: unknown)."""
        return None

    def add_variants(self, release: Release) -> dict[str, Any]:
        """After the switch: add the compressed variants made since staging (``.gz``/``.br``
        beside their files) to the live release; adding files never changes one served."""
        return {}

    def prune(self, keep: set[str]) -> int:
        """Remove staged releases not in ``keep`` (never the live one); returns how many."""
        return 0

    def close(self) -> None:  # noqa: B027 - most kinds keep nothing open
        """Let go of connections kept between publications."""

    # -- what everyone gets ---------------------------------------------------------------

    def stage(self, release: Release, *, retries: int | None = None) -> Result:
        """Stage with up to ``retries`` retries (default and ceiling: the configured ones)."""
        return self._attempt("stage", lambda: self._stage(release), retries)

    def switch(self, release_id: str, *, retries: int | None = None) -> Result:
        """Switch with up to ``retries`` retries (default and ceiling: the configured ones)."""
        return self._attempt("switch", lambda: self._switch(release_id), retries)

    def _attempt(self, phase: str, call: Any, retries: int | None) -> Result:
        tries = 1 + (self.retries if retries is None else min(retries, self.retries))
        result = Result(self.name, self.kind, phase, started=time.time())
        delay = self.backoff
        for n in range(1, tries + 1):
            result.attempts = n
            try:
                result.detail = call() or {}
                result.ok, result.error, result.exception = True, "", None
                break
            except Exception as exc:
                result.exception = exc
                if isinstance(exc, DifusorError):
                    result.error = exc.message
                elif isinstance(exc, subprocess.TimeoutExpired):
                    result.error = (f"origen {self.name}: {Path(str(exc.cmd[0])).name} sin "
                                    f"respuesta en {exc.timeout:.0f} s")
                else:
                    result.error = f"origen {self.name}: {type(exc).__name__}: {exc}"
                if n < tries:
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
        result.ended = time.time()
        return result
