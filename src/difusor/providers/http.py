"""What drivers that speak to an API share: the HTTP client, URL paths, and their secrets.

Secrets come from the environment (the variable a setting names) or from a credentials file,
never from difusor.toml; they are read when a driver is built, never deeper in the code.
"""

from __future__ import annotations

import functools
import ssl
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def http_client(timeout: float, **kwargs: object) -> httpx.Client:
    """An HTTP client sharing one TLS context per process: building a context costs tens of
    milliseconds, which would otherwise be paid on every purge right after a publication."""
    return httpx.Client(timeout=timeout, verify=_tls(), **kwargs)  # type: ignore[arg-type]


def url_path(url: str) -> str:
    """``https://host/a/b?x`` → ``/a/b?x`` (what a PURGE or an invalidation path names)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def env_secret(env: Mapping[str, str], variable: str) -> str:
    """The secret held by the environment variable a setting names ("" when unset or blank)."""
    return env.get(variable, "").strip() if variable else ""


def secret_file_warning(path: Path) -> str | None:
    """A Spanish warning when a file holding credentials is readable by others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        return (f"aviso: {path} (credenciales) lo pueden leer otros usuarios; "
                f"corrígelo con «chmod 600 {path}»")
    return None
