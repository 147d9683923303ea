"""Fastly: the purge API, one URL per call.

``POST {api}/purge/{host/path}`` (the cached URL without its scheme) with ``Fastly-Key: <token>``
and, for a soft purge (the copy is marked stale instead of removed), ``Fastly-Soft-Purge: 1``; the
answer is ``{"status": "ok", "id": "..."}``. Purging everything is
``POST {api}/service/{service_id}/purge_all`` (never soft, per Fastly). Fastly honours
``Surrogate-Control`` for targeted caching.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from difusor.config import FastlyCdnSettings
from difusor.errors import ConfigError
from difusor.providers import http_client
from difusor.publish.cdn.base import PurgeError, Purger, Unavailable, check_answer

API = "https://api.fastly.com"


class FastlyPurger(Purger):
    kind = "fastly"
    concurrency = 8
    needs_token = True
    settings: FastlyCdnSettings

    def __init__(self, settings: FastlyCdnSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.api = (settings.api_url or API).rstrip("/")
        self.client = http_client(settings.timeout)

    def targets(self, urls: list[str]) -> list[str]:
        return [quote(u.split("://", 1)[-1], safe="/:@!$&'()*+,;=%~?") for u in urls]

    def _send(self, batch: list[str]) -> str | None:
        headers = {"Fastly-Soft-Purge": "1"} if self.settings.soft else {}
        return self._post(f"/purge/{batch[0]}", headers)

    def _send_all(self) -> str | None:
        if not self.settings.service_id:
            raise ConfigError(f"[[cdn]] «{self.name}»: purgar todo en Fastly necesita "
                              "service_id (el ID del servicio)")
        return self._post(f"/service/{quote(self.settings.service_id)}/purge_all", {})

    def _post(self, path: str, headers: dict[str, str]) -> str | None:
        try:
            r = self.client.post(self.api + path, headers={
                "Fastly-Key": self.secret, "Accept": "application/json", **headers})
        except httpx.TransportError as exc:
            raise Unavailable(f"no pude conectar con la API de Fastly: {exc}") from None
        check_answer("Fastly", r.status_code, r.headers.get("retry-after"),
                     credentials_hint=f"el token ({r.status_code}): ¿tiene el alcance "
                     "«purge_select» (y «purge_all» para --all)?")
        if r.status_code != 200:
            raise PurgeError(f"Fastly respondió {r.status_code} a POST {path}: {r.text[:200]}")
        try:
            return str(r.json().get("id") or "") or None
        except ValueError:
            return None

    def close(self) -> None:
        self.client.close()
