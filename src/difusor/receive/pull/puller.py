"""The puller's schedule: poll every ``pull.interval``, back off while the server fails, stop
promptly; and the delivery of a whole download (and its sidecar) into the inbox."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from difusor.config import Config
from difusor.errors import ConfigError, DifusorError
from difusor.paths import StateLayout
from difusor.receive.inbox import deliver
from difusor.receive.intake import SIDECAR_SUFFIX
from difusor.receive.pull.fetch import Fetcher
from difusor.receive.pull.state import Download, PullState
from difusor.receive.sidecar import stated_digest

Log = Callable[[str], None]

BACKOFF_MAX = 120.0  # seconds between attempts at most while the authority's server fails


class Puller:
    def __init__(self, cfg: Config, *, on_delivered: Callable[[Path], None] | None = None,
                 log: Log | None = None, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self.url = cfg.pull.url
        layout = StateLayout(cfg.state_dir)
        self.inbox = layout.inbox
        self.work = layout.root / "pull"
        self.on_delivered = on_delivered
        self.log = log or (lambda _m: None)
        self.state = PullState.load(layout.root / "pull.json", self.work / "descarga.part",
                                    self.url, self.log)
        self.fetcher = Fetcher(cfg, self.state, self.work, client, self.log)
        self._mismatch: str | None = None  # bytes whose sidecar disagreed once already

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; failures are logged and retried later, with backoff."""
        self.fetcher.stop = stop
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop, done), daemon=True,
                                   name="difusor-pull-stop")
        watcher.start()
        self.log(f"descarga HTTPS: consultando {self.url} cada {self.cfg.pull.interval:g} s")
        failures = 0
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.poll_once()
                    failures = 0
                except Exception as exc:
                    text = exc.message if isinstance(exc, DifusorError) else (
                        f"falla inesperada en la descarga HTTPS: {exc!r}")
                    if stop.is_set():
                        self.log(text)
                        break
                    failures += 1
                    delay = self._delay(failures)
                    self.log(f"{text} (nuevo intento en {delay:g} s)")
                    stop.wait(delay)
                    continue
                stop.wait(max(0.0, started + self.cfg.pull.interval - time.monotonic()))
        finally:
            done.set()
            watcher.join()
            self.fetcher.stop = None
            self.close()

    def _delay(self, failures: int) -> float:
        interval = self.cfg.pull.interval
        return min(interval * 2 ** min(failures - 1, 16), max(interval, BACKOFF_MAX))

    def _watch(self, stop: threading.Event, done: threading.Event) -> None:
        # A read that waits on a silent server ends at once when its socket is shut down.
        # (Connecting and waiting for the headers are bounded by the timeouts instead.)
        while not done.wait(0.05):
            if stop.is_set():
                self.fetcher.shut_socket()

    def close(self) -> None:
        self.fetcher.close()

    def __enter__(self) -> Puller:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- one poll -----------------------------------------------------------------------------

    def poll_once(self) -> Path | None:
        """One conditional request; returns the inbox path of a newly delivered package."""
        if not self.url:
            raise ConfigError("pull.url está vacío: no hay nada que descargar")
        download = self.fetcher.package()
        return None if download is None else self._hand_over(download)

    def _hand_over(self, download: Download) -> Path | None:
        if download.sha256 == self.state.data.get("sha256"):
            self.state.discard()
            self.state.remember(download)
            self.log(f"{download.name}: mismo contenido que la última descarga "
                     f"(sha256 {download.sha256[:12]}…); no se entrega de nuevo")
            return None
        side = self.fetcher.sidecar()
        if side is not None and self._mismatch != download.sha256:
            stated = stated_digest(side)
            if stated is not None and stated != download.sha256:
                # Probably the authority replaced the package between our two requests: fetch
                # both again. The same disagreement twice goes to the publisher, which refuses
                # it with the reason on record.
                self._mismatch = download.sha256
                self.state.discard()
                raise DifusorError(
                    f"{download.name}: su {download.name}{SIDECAR_SUFFIX} dice {stated[:12]}…, "
                    f"lo descargado tiene {download.sha256[:12]}…; se descargará de nuevo")
        if side is not None:
            # The sidecar goes first, so the publisher always finds it beside its package.
            tmp = self.work / "suma.part"
            with tmp.open("wb") as f:
                f.write(side)
                f.flush()
                os.fsync(f.fileno())
            deliver(tmp, self.inbox, name=download.name + SIDECAR_SUFFIX)
        path = deliver(self.state.part, self.inbox, name=download.name)
        self._mismatch = None
        self.state.remember(download, delivered=True)
        self.log(f"{download.name}: descargado ({download.size} bytes, sha256 "
                 f"{download.sha256[:12]}…{', con su suma' if side else ''}) y entregado")
        if self.on_delivered:
            self.on_delivered(path)
        return path
