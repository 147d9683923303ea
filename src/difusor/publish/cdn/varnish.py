"""Varnish (self-hosted edge): an HTTP ``PURGE`` of each exact URL, ``BAN`` for everything.

Works with ``deploy/varnish/difusor.vcl``, which accepts both only from its ``purgadores`` ACL. The
PURGE goes to ``purge_url`` (``edge_url`` by default) with the public site's Host header, so it
also matches a VCL whose cache key includes the host. Purging everything sends
``BAN /`` with ``X-Ban-Url: .`` (a regular expression over the cached paths); with the xkey vmod,
a VCL could purge by key instead (see docs/cdn.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from difusor.config import VarnishCdnSettings
from difusor.providers import http_client, retry_after, url_path
from difusor.publish.cdn.base import PurgeError, Purger, RateLimited, Unavailable

_HINTS = {
    403: "agrega la IP de este equipo al ACL «purgadores» del VCL",
    405: "agrega la IP de este equipo al ACL «purgadores» del VCL",
    501: "ese Varnish no acepta el método; ¿usa deploy/varnish/difusor.vcl?",
}


class VarnishPurger(Purger):
    kind = "varnish"
    concurrency = 8  # one request per URL, several at once
    settings: VarnishCdnSettings

    def __init__(self, settings: VarnishCdnSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.base = (settings.purge_url or settings.edge_url).rstrip("/")
        self.host = urlsplit(self.site_url).netloc
        self.client = http_client(settings.timeout)

    def targets(self, urls: list[str]) -> list[str]:
        return [url_path(u) for u in urls]

    def _send(self, batch: list[str]) -> str | None:
        self._request("PURGE", batch[0], {})
        return None

    def _send_all(self) -> str | None:
        self._request("BAN", "/", {"X-Ban-Url": "."})
        return None

    def _request(self, method: str, path: str, headers: dict[str, str]) -> None:
        try:
            r = self.client.request(method, self.base + path, headers={"Host": self.host, **headers})
        except httpx.TransportError as exc:
            raise Unavailable(f"no pude conectar con Varnish en {self.base}: {exc}") from None
        if r.status_code in (200, 204):
            return
        if r.status_code == 429:  # a rate limit in front of the edge: waited out like a CDN's
            raise RateLimited(f"Varnish limitó las purgas (429) a {method} {path}",
                              retry_after(r.headers.get("retry-after")))
        if r.status_code >= 500 and r.status_code != 501:
            raise Unavailable(f"Varnish respondió {r.status_code} a {method} {path}")
        hint = _HINTS.get(r.status_code, "revisa el VCL")
        raise PurgeError(f"Varnish respondió {r.status_code} a {method} {path}: {hint}")

    def close(self) -> None:
        self.client.close()
