"""The contract every origin kind fulfils, and the retries, timing and errors they share.

An origin is a place the public is served from. Publishing to it has two phases: ``stage`` puts
the whole corte there without anyone seeing it, ``switch`` makes it the one served, in a single
atomic step (a symlink rename, a remote ``mv -T``, the upload of ``json/main.json``). The public
methods here retry with backoff (``providers.retrying``) and time every attempt; a driver
implements only ``_stage``, ``_switch`` and ``live`` for its kind (see ``local.py``, ``nginx.py``,
``ssh.py``, ``s3.py``), reading its own settings model (``config.providers``), which difusor.toml's
loading has already checked.
"""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from difusor.config import Config, OriginBase
from difusor.errors import DifusorError
from difusor.providers import Backoff, DriverTable, retrying
from difusor.store.layout import StoreLayout
from difusor.store.manifest import Manifest, ManifestStore
from difusor.store.objects import ObjectStore

DRIVERS: DriverTable[Origin] = DriverTable({
    "local": "difusor.publish.origins.local:LocalOrigin",
    "nginx": "difusor.publish.origins.nginx:NginxOrigin",
    "ssh": "difusor.publish.origins.ssh:SshOrigin",
    "s3": "difusor.publish.origins.s3:S3Origin",
}, unknown="tipo de origen desconocido «{name}»; los conocidos: {known}")
MAX_BACKOFF = 30.0  # the longest wait between two tries, however many retries
RSYNC_FLAGS = ["-a", "--delete", "--modify-window=-1"]  # -1: mtimes compared to the nanosecond


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
    settings: OriginBase  # each driver narrows it to its own model (config.providers)

    def __init__(self, settings: OriginBase, ctx: Context) -> None:
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
        result = Result(self.name, self.kind, phase, started=time.time())
        try:
            result.detail = retrying(
                call, retries=self.retries if retries is None else min(retries, self.retries),
                backoff=Backoff(first=self.backoff, cap=MAX_BACKOFF), retry_on=(Exception,),
                on_try=lambda n: setattr(result, "attempts", n)) or {}
            result.ok = True
        except Exception as exc:  # every try failed: the result says why, the set decides
            result.exception = exc
            result.error = self._reason(exc)
        result.ended = time.time()
        return result

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, DifusorError):
            return exc.message
        if isinstance(exc, subprocess.TimeoutExpired):
            return (f"origen {self.name}: {Path(str(exc.cmd[0])).name} sin respuesta en "
                    f"{exc.timeout:.0f} s")
        return f"origen {self.name}: {type(exc).__name__}: {exc}"
