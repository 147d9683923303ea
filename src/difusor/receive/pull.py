"""HTTPS pull: for authorities that publish a download link instead of uploading to us.

Every ``pull.interval`` seconds :class:`Puller` asks for ``pull.url`` with the ETag and
Last-Modified of the last complete download (kept in ``state/pull.json``, so a restart does not
fetch the same package again); a 304 costs nothing. A new package streams into ``state/pull/``
(same filesystem as the inbox, never the inbox itself), within ``pull.max_bytes``; an interrupted
download continues where it stopped (``Range`` + ``If-Range``) when the server gave a strong
ETag. Only a whole file — as many bytes as announced, or a chunked body that ended properly — is
fsynced and delivered, with its ``NAME.sha256`` if the server publishes one at URL + ``.sha256``
(the only check left for a body without length or chunks, which ends when the server closes).
The same bytes as the last delivery are never delivered twice, whatever their ETag says.
"""

from __future__ import annotations

import contextlib
import email.message
import hashlib
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from difusor import __version__
from difusor.config import Config
from difusor.errors import ConfigError, DifusorError
from difusor.package.checksums import parse_sidecar
from difusor.paths import StateLayout
from difusor.receive.inbox import deliver
from difusor.receive.intake import SIDECAR_SUFFIX, hash_file

Log = Callable[[str], None]

DEFAULT_NAME = "paquete.zip"
BACKOFF_MAX = 120.0  # seconds between attempts at most while the authority's server fails
CONNECT_TIMEOUT = 10.0
_SIDECAR_MAX = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class _Download:
    name: str
    sha256: str
    size: int
    etag: str | None
    last_modified: str | None


class _StartOver(Exception):
    """The partial download cannot be continued: fetch the whole file instead."""


class Puller:
    def __init__(self, cfg: Config, *, on_delivered: Callable[[Path], None] | None = None,
                 log: Log | None = None, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self.url = cfg.pull.url
        layout = StateLayout(cfg.state_dir)
        self.inbox = layout.inbox
        self.work = layout.root / "pull"
        self.part = self.work / "descarga.part"
        self.state_file = layout.root / "pull.json"
        self.on_delivered = on_delivered
        self.log = log or (lambda _m: None)
        self._client = client
        self._owns_client = client is None
        self._state = self._load_state()
        self._stop: threading.Event | None = None
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._mismatch: str | None = None  # bytes whose sidecar disagreed once already

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; failures are logged and retried later, with backoff."""
        self._stop = stop
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
            self._stop = None
            self.close()

    def _delay(self, failures: int) -> float:
        interval = self.cfg.pull.interval
        return min(interval * 2 ** min(failures - 1, 16), max(interval, BACKOFF_MAX))

    def _watch(self, stop: threading.Event, done: threading.Event) -> None:
        # A read that waits on a silent server ends at once when its socket is shut down.
        # (Connecting and waiting for the headers are bounded by the timeouts instead.)
        while not done.wait(0.05):
            if stop.is_set():
                with self._sock_lock:
                    if self._sock is not None:
                        with contextlib.suppress(OSError):
                            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Puller:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- one poll -----------------------------------------------------------------------------

    def poll_once(self) -> Path | None:
        """One conditional request; returns the inbox path of a newly delivered package."""
        if not self.url:
            raise ConfigError("pull.url está vacío: no hay nada que descargar")
        try:
            download = self._fetch(resume=True)
        except _StartOver:
            self._discard()
            download = self._fetch(resume=False)
        return None if download is None else self._hand_over(download)

    def _fetch(self, *, resume: bool) -> _Download | None:
        partial = self._state.get("partial") or {}
        offset = self.part.stat().st_size if resume and self._resumable() else 0
        headers: dict[str, str] = {}
        if self._state.get("etag"):
            headers["If-None-Match"] = self._state["etag"]
        if self._state.get("last_modified"):
            headers["If-Modified-Since"] = self._state["last_modified"]
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
            raise self._network_error(exc) from None

    def _receive(self, response: httpx.Response, offset: int) -> _Download | None:
        status = response.status_code
        if status == 304:
            return None
        if status == 416 and offset:
            total = _content_range(response)[2]
            if total != offset:
                raise _StartOver
            partial = self._state["partial"]  # we had it all already
            sha, size = hash_file(self.part)
            return _Download(partial["name"], sha, size, partial.get("etag"),
                             partial.get("last_modified"))
        if status == 206 and offset:
            start, _end, total = _content_range(response)
            etag = response.headers.get("etag")
            partial = self._state["partial"]
            if (start != offset or total is None or (etag and etag != partial["etag"])
                    or partial.get("total") not in (None, total)):
                raise _StartOver
            self._check_size(total, partial["name"])
            return self._save(response, partial, offset, total)
        if status == 200:
            if offset:
                self.log("el servidor no continuó la descarga interrumpida: se descarga completa")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            name = _name(response)
            self._check_size(total, name)
            partial = {"etag": response.headers.get("etag"),
                       "last_modified": response.headers.get("last-modified"),
                       "name": name, "total": total}
            self._state["partial"] = partial
            self._save_state()
            return self._save(response, partial, 0, total)
        hint = " (¿la autoridad aún no publica el paquete?)" if status == 404 else ""
        raise DifusorError(f"el servidor respondió {status} al pedir {self.url}{hint}")

    def _save(self, response: httpx.Response, partial: dict[str, Any], offset: int,
              total: int | None) -> _Download:
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
                    if self._stop is not None and self._stop.is_set():
                        raise DifusorError(f"descarga de {partial['name']} detenida a los {size} "
                                           "bytes; se reanudará")
                    size += len(chunk)
                    if size > self.cfg.pull.max_bytes:
                        self._discard()
                        raise self._too_big(partial["name"], f"llevaba {size} bytes sin terminar")
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except httpx.HTTPError as exc:
            resumable = self._resumable()
            if not resumable:
                self._discard()
            stopped = self._stop is not None and self._stop.is_set()
            why = "detenida" if stopped else (
                f"sin datos por más de {self.cfg.pull.timeout:g} s (pull.timeout)"
                if isinstance(exc, httpx.TimeoutException) else "interrumpida")
            raise DifusorError(
                f"descarga de {partial['name']} {why} a los {size} de {total or '?'} bytes; "
                + ("se reanudará" if resumable else "se repetirá completa")) from None
        except OSError as exc:
            self._discard()
            raise DifusorError(f"no se pudo guardar la descarga en {self.part}: "
                               f"{exc.strerror or exc}") from None
        if total is not None and size != total:
            self._discard()
            raise DifusorError(f"descarga de {partial['name']} incompleta: {size} de {total} "
                               "bytes; se repetirá")
        return _Download(partial["name"], digest.hexdigest(), size, partial.get("etag"),
                         partial.get("last_modified"))

    def _check_size(self, total: int | None, name: str) -> None:
        if total is not None and total > self.cfg.pull.max_bytes:
            self._discard()
            raise self._too_big(name, f"mide {total} bytes")

    def _too_big(self, name: str, size: str) -> DifusorError:
        return DifusorError(f"descarga de {name} rechazada: {size}, más que pull.max_bytes = "
                            f"{self.cfg.pull.max_bytes}; no se entrega")

    # -- delivery -----------------------------------------------------------------------------

    def _hand_over(self, download: _Download) -> Path | None:
        if download.sha256 == self._state.get("sha256"):
            self._discard()
            self._remember(download)
            self.log(f"{download.name}: mismo contenido que la última descarga "
                     f"(sha256 {download.sha256[:12]}…); no se entrega de nuevo")
            return None
        side = self._sidecar()
        if side is not None and self._mismatch != download.sha256:
            stated = _stated(side)
            if stated is not None and stated != download.sha256:
                # Probably the authority replaced the package between our two requests: fetch
                # both again. The same disagreement twice goes to the publisher, which refuses
                # it with the reason on record.
                self._mismatch = download.sha256
                self._discard()
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
        path = deliver(self.part, self.inbox, name=download.name)
        self._mismatch = None
        self._remember(download, delivered=True)
        self.log(f"{download.name}: descargado ({download.size} bytes, sha256 "
                 f"{download.sha256[:12]}…{', con su suma' if side else ''}) y entregado")
        if self.on_delivered:
            self.on_delivered(path)
        return path

    def _sidecar(self) -> bytes | None:
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
                if len(data) > _SIDECAR_MAX:
                    self.log(f"{url} mide más de {_SIDECAR_MAX} bytes: no es una suma; se ignora")
                    return None
            return data

    # -- state --------------------------------------------------------------------------------

    def _resumable(self) -> bool:
        return _can_resume(self._state, self.part)

    def _discard(self) -> None:
        self.part.unlink(missing_ok=True)
        if self._state.pop("partial", None) is not None:
            self._save_state()

    def _remember(self, download: _Download, *, delivered: bool = False) -> None:
        state = {k: v for k, v in self._state.items() if k in ("sha256", "name", "size")}
        if delivered:
            state.update(sha256=download.sha256, name=download.name, size=download.size)
        self._state = {**state, "url": self.url, "etag": download.etag,
                       "last_modified": download.last_modified}
        self._save_state()

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text("utf-8"))
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as exc:
            self.log(f"no pude leer {self.state_file} ({exc}); se empieza de cero")
            state = {}
        if not isinstance(state, dict) or state.get("url") != self.url:
            state = {"url": self.url}  # another URL: nothing of the old one applies
        if not _can_resume(state, self.part):
            state.pop("partial", None)
            self.part.unlink(missing_ok=True)
        return state

    def _save_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(self._state, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # -- HTTP ---------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:
            timeout = self.cfg.pull.timeout
            self._client = httpx.Client(
                verify=self._tls(), follow_redirects=True,
                timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
                headers={"User-Agent": f"difusor/{__version__}", "Accept-Encoding": "identity"},
            )
        return self._client

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        paths = ssl.get_default_verify_paths()
        if not (paths.cafile or paths.capath):  # no system store: Mozilla's, as httpx would
            import certifi

            context.load_verify_locations(cafile=certifi.where())
        if self.cfg.pull.ca_file:
            ca = self.cfg.path(self.cfg.pull.ca_file)
            try:
                context.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"pull.ca_file: no puedo leer el certificado {ca} ({exc})") from None
        return context

    def _network_error(self, exc: httpx.HTTPError) -> DifusorError:
        host = httpx.URL(self.url).host
        if isinstance(exc, httpx.TimeoutException):
            return DifusorError(f"{host} no respondió en {self.cfg.pull.timeout:g} s "
                                "(pull.timeout); se reintentará")
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            return DifusorError(
                f"el certificado de {host} no es de confianza ({cause.verify_message}); si la "
                "autoridad usa una CA propia, indica su certificado en pull.ca_file")
        if isinstance(exc, httpx.ConnectError):
            return DifusorError(f"no se pudo conectar con {host} ({exc}); se reintentará")
        return DifusorError(f"falla de red con {host} ({exc}); se reintentará")


def _name(response: httpx.Response) -> str:
    """Content-Disposition's filename, else the URL's last segment, else ``paquete.zip``."""
    disposition = response.headers.get("content-disposition")
    if disposition:
        msg = email.message.Message()
        msg["content-disposition"] = disposition
        name = _basename(msg.get_filename() or "")
        if name:
            return name
    return _basename(response.url.path) or DEFAULT_NAME


def _basename(value: str) -> str:
    name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "" if name in (".", "..") else name


def _can_resume(state: dict[str, Any], part: Path) -> bool:
    """A partial file exists and its ETag is strong, as ``If-Range`` needs."""
    etag = (state.get("partial") or {}).get("etag") or ""
    return bool(etag) and not etag.startswith("W/") and part.is_file() and part.stat().st_size > 0


def _content_range(response: httpx.Response) -> tuple[int | None, int | None, int | None]:
    m = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if not m:
        raise _StartOver
    start, end, total = m.groups()
    return (int(start) if start else None, int(end) if end else None,
            int(total) if total and total != "*" else None)


def _stated(side: bytes) -> str | None:
    try:
        return parse_sidecar(side.decode("utf-8", "replace"))
    except DifusorError:
        return None  # not sha256sum's format: the publisher says so when it reads it
