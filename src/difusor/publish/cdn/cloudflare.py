"""Cloudflare, through the official SDK: ``client.cache.purge(zone_id=..., files=[...])``.

``POST /client/v4/zones/{zone_id}/purge_cache`` with ``{"files": [URL, ...]}`` and
``Authorization: Bearer <token>``. For years Cloudflare documented 30 URLs per purge request; it
now documents 100 (500 on Enterprise). 30 is the default here, valid on every plan; ``batch_size``
raises it. The SDK's own retries are off: the template retries 429s, honouring ``Retry-After``.
``api_url`` replaces the SDK's base URL (it must end in ``/client/v4``, as the official one does).
"""

from __future__ import annotations

from typing import Any

from difusor.config import CloudflareCdnSettings
from difusor.errors import PurgeError
from difusor.providers import cloudflare_api
from difusor.publish.cdn.base import Purger, RateLimited, Unavailable


class CloudflarePurger(Purger):
    kind = "cloudflare"
    default_batch = 30
    max_batch = 500
    needs_token = True
    settings: CloudflareCdnSettings

    def __init__(self, settings: CloudflareCdnSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.client = cloudflare_api.client(self.secret, api_url=settings.api_url,
                                            timeout=settings.timeout)
        self.refusals = cloudflare_api.Refusals(
            error=PurgeError, throttled=RateLimited, unavailable=Unavailable,
            throttled_message="Cloudflare limitó las purgas (429)",
            token_hint="¿tiene el permiso «Zona › Purga de caché» sobre esta zona?",
            missing=f"la zona {settings.zone_id}", fix="zone_id")

    def _send(self, batch: list[str]) -> str | None:
        return self._purge(files=batch)

    def _send_all(self) -> str | None:
        return self._purge(purge_everything=True)

    def _purge(self, **what: Any) -> str | None:
        try:
            answer = self.client.cache.purge(zone_id=self.settings.zone_id, **what)
        except cloudflare_api.API_ERRORS as exc:
            raise self.refusals(exc) from None
        return answer.id if answer is not None else None

    def close(self) -> None:
        self.client.close()
