"""One conditional download of the package into ``descarga.part``, resumed when it can be.

Only a whole file is returned: as many bytes as announced, or a chunked body that ended
properly. The socket of the request in flight is kept so a stop can shut it at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.receive.intake import SIDECAR_SUFFIX, hash_file
from difusor.receive.pull.client import (
    StartOver,
    content_range,
    http_client,
    network_error,
    response_name,
)
from difusor.receive.pull.state import Download, PullState
from difusor.receive.sidecar import SIDECAR_MAX


class Fetcher:
    def __init__(self, cfg: Config, state: PullState, work: Path, client: httpx.Client | None,
                 log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.url = cfg.pull.url
        self.state = state
        self.work = work
        self.part = state.part
        self.log = log
        self._client = client
        self._owns_client = client is None
        self.stop: threading.Event | None = None  # set while ``Puller.run`` runs
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()

    def package(self) -> Download | None:
        """The package if it changed since the last complete download (None: 304)."""
        try:
            return self._fetch(resume=True)
        except StartOver:
            self.state.discard()
            return self._fetch(resume=False)

    def sidecar(self) -> bytes | None:
        """``URL.sha256`` if the server publishes it; None when it does not."""
        url = self.url + SIDECAR_SUFFIX
        with self._get(url) as response:
            if response.status_code >= 500:
                raise DifusorError(f"el servidor respondió {response.status_code} al pedir "
                                   f"{url}; se reintentará")
            if response.status_code != 200:
                return None
            data = b""
            for chunk in response.iter_raw():
                data += chunk
                if len(data) > SIDECAR_MAX:
                    self.log(f"{url} mide más de {SIDECAR_MAX} bytes: no es una suma; se ignora")
                    return None
            return data

    def shut_socket(self) -> None:
        """End at once a read that waits on a silent server."""
        with self._sock_lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    # -- the request ----------------------------------------------------------------------

    def _fetch(self, *, resume: bool) -> Download | None:
        state = self.state.data
        partial = state.get("partial") or {}
        offset = self.part.stat().st_size if resume and self.state.resumable() else 0
        headers: dict[str, str] = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = partial["etag"]
        with self._get(self.url, headers) as response:
            return self._receive(response, offset)

    @contextlib.contextmanager
    def _get(self, url: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """A streamed GET whose socket ``run``'s stop can shut; network errors in Spanish."""
        try:
            with self._http().stream("GET", url, headers=headers) as response:
                with self._sock_lock:
                    stream = response.extensions.get("network_stream")
                    self._sock = stream.get_extra_info("socket") if stream else None
                try:
                    yield response
                finally:
                    with self._sock_lock:
                        self._sock = None
        except httpx.HTTPError as exc:
            raise network_error(self.url, self.cfg.pull.timeout, exc) from None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = http_client(self.cfg)
        return self._client

    def _receive(self, response: httpx.Response, offset: int) -> Download | None:
        status = response.status_code
        if status == 304:
            return None
        if status == 416 and offset:
            total = content_range(response)[2]
            if total != offset:
                raise StartOver
            partial = self.state.data["partial"]  # we had it all already
            sha, size = hash_file(self.part)
            return Download(partial["name"], sha, size, partial.get("etag"),
                            partial.get("last_modified"))
        if status == 206 and offset:
            start, _end, total = content_range(response)
            etag = response.headers.get("etag")
            partial = self.state.data["partial"]
            if (start != offset or total is None or (etag and etag != partial["etag"])
                    or partial.get("total") not in (None, total)):
                raise StartOver
            self._check_size(total, partial["name"])
            return self._save(response, partial, offset, total)
        if status == 200:
            if offset:
                self.log("el servidor no continuó la descarga interrumpida: se descarga completa")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            name = response_name(response)
            self._check_size(total, name)
            partial = {"etag": response.headers.get("etag"),
                       "last_modified": response.headers.get("last-modified"),
                       "name": name, "total": total}
            self.state.data["partial"] = partial
            self.state.save()
            return self._save(response, partial, 0, total)
        hint = " (¿la autoridad aún no publica el paquete?)" if status == 404 else ""
        raise DifusorError(f"el servidor respondió {status} al pedir {self.url}{hint}")

    # -- the body -------------------------------------------------------------------------

    def _save(self, response: httpx.Response, partial: dict[str, Any], offset: int,
              total: int | None) -> Download:
        """Stream the body onto the partial file; the result only if it is whole."""
        self.work.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = offset
        if offset:
            with self.part.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        try:
            with self.part.open("ab" if offset else "wb") as f:
                for chunk in response.iter_raw():
                    if self.stop is not None and self.stop.is_set():
                        raise DifusorError(f"descarga de {partial['name']} detenida a los {size} "
                                           "bytes; se reanudará")
                    size += len(chunk)
                    if size > self.cfg.pull.max_bytes:
                        self.state.discard()
                        raise self._too_big(partial["name"], f"llevaba {size} bytes sin terminar")
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except httpx.HTTPError as exc:
            resumable = self.state.resumable()
            if not resumable:
                self.state.discard()
            stopped = self.stop is not None and self.stop.is_set()
            why = "detenida" if stopped else (
                f"sin datos por más de {self.cfg.pull.timeout:g} s (pull.timeout)"
                if isinstance(exc, httpx.TimeoutException) else "interrumpida")
            raise DifusorError(
                f"descarga de {partial['name']} {why} a los {size} de {total or '?'} bytes; "
                + ("se reanudará" if resumable else "se repetirá completa")) from None
        except OSError as exc:
            self.state.discard()
            raise DifusorError(f"no se pudo guardar la descarga en {self.part}: "
                               f"{exc.strerror or exc}") from None
        if total is not None and size != total:
            self.state.discard()
            raise DifusorError(f"descarga de {partial['name']} incompleta: {size} de {total} "
                               "bytes; se repetirá")
        return Download(partial["name"], digest.hexdigest(), size, partial.get("etag"),
                        partial.get("last_modified"))

    def _check_size(self, total: int | None, name: str) -> None:
        if total is not None and total > self.cfg.pull.max_bytes:
            self.state.discard()
            raise self._too_big(name, f"mide {total} bytes")

    def _too_big(self, name: str, size: str) -> DifusorError:
        return DifusorError(f"descarga de {name} rechazada: {size}, más que pull.max_bytes = "
                            f"{self.cfg.pull.max_bytes}; no se entrega")
