"""Cloudflare, through the official SDK: ``client.cache.purge(zone_id=..., files=[...])``.

``POST /client/v4/zones/{zone_id}/purge_cache`` with ``{"files": [URL, ...]}`` and
``Authorization: Bearer <token>``. For years Cloudflare documented 30 URLs per purge request; it
now documents 100 (500 on Enterprise). 30 is the default here, valid on every plan; ``batch_size``
raises it. The SDK's own retries are off: the template retries 429s, honouring ``Retry-After``.
``api_url`` replaces the SDK's base URL (it must end in ``/client/v4``, as the official one does).
"""

from __future__ import annotations

from typing import Any

import cloudflare

from difusor.config import CdnSettings
from difusor.errors import ConfigError
from difusor.publish.cdn.base import (
    PurgeError,
    Purger,
    RateLimited,
    Unavailable,
    http_client,
    retry_after,
)


class CloudflarePurger(Purger):
    kind = "cloudflare"
    default_batch = 30
    max_batch = 500
    needs_token = True

    def __init__(self, settings: CdnSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        if not settings.zone_id:
            raise ConfigError(f"[[cdn]] «{self.name}»: cloudflare necesita zone_id (el ID de la "
                              "zona, en el panel de Cloudflare › Resumen)")
        self.client = cloudflare.Cloudflare(
            api_token=self.secret, base_url=settings.api_url or None, max_retries=0,
            timeout=settings.timeout, http_client=http_client(settings.timeout),
        )

    def _send(self, batch: list[str]) -> str | None:
        return self._purge(files=batch)

    def _send_all(self) -> str | None:
        return self._purge(purge_everything=True)

    def _purge(self, **what: Any) -> str | None:
        try:
            answer = self.client.cache.purge(zone_id=self.settings.zone_id, **what)
        except cloudflare.RateLimitError as exc:
            raise RateLimited("Cloudflare limitó las purgas (429)",
                              retry_after(exc.response.headers.get("retry-after"))) from None
        except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
            raise PurgeError(
                f"Cloudflare rechazó el token ({exc.status_code}{_errors(exc)}): ¿tiene el permiso "
                "«Zona › Purga de caché» sobre esta zona?") from None
        except cloudflare.NotFoundError as exc:
            raise PurgeError(f"Cloudflare no encuentra la zona {self.settings.zone_id} "
                             f"(404{_errors(exc)}): revisa zone_id") from None
        except cloudflare.APIStatusError as exc:
            if exc.status_code >= 500:
                raise Unavailable(f"Cloudflare respondió {exc.status_code}") from None
            raise PurgeError(f"Cloudflare respondió {exc.status_code}{_errors(exc)}") from None
        except cloudflare.APIConnectionError as exc:
            raise Unavailable(f"no pude conectar con la API de Cloudflare: {exc.message}") from None
        return answer.id if answer is not None else None

    def close(self) -> None:
        self.client.close()


def _errors(exc: cloudflare.APIStatusError) -> str:
    """The API's own error messages, when it sent any."""
    found = [f"{e.code}: {e.message}" for e in exc.errors if getattr(e, "message", None)]
    return f"; {'; '.join(found)}" if found else ""
