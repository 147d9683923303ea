"""Cloudflare's API through its official SDK, for the two drivers that use it: the CDN purger
(``publish/cdn/cloudflare.py``) and the shield's IP list (``shield/enforce/cloudflare.py``).

One client factory (the SDK's own retries off: ``retrying`` decides, honouring Retry-After) and
one mapping of the SDK's errors to the caller's own, worded for what the caller was doing. This
module imports the SDK: only those two drivers import it, and they load only when configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import cloudflare

from difusor.errors import DifusorError
from difusor.providers.http import http_client
from difusor.providers.retry import Transient, retry_after

API_ERRORS = (cloudflare.APIStatusError, cloudflare.APIConnectionError)


def client(token: str, *, api_url: str, timeout: float) -> cloudflare.Cloudflare:
    """``api_url`` replaces the SDK's base URL (it must end in ``/client/v4``, as the official
    one does); empty: the official one."""
    return cloudflare.Cloudflare(api_token=token, base_url=api_url or None, max_retries=0,
                                 timeout=timeout, http_client=http_client(timeout))


@dataclass(frozen=True)
class Refusals:
    """How one caller words Cloudflare's answers, and which of its own errors it raises."""

    error: type[DifusorError]  # a refusal; also a failure the caller does not retry
    throttled: type[DifusorError]  # a 429: should mix in Transient to be waited out
    throttled_message: str
    token_hint: str  # what the token may lack, after «Cloudflare rechazó el token (403): »
    missing: str  # what a 404 did not find: «la zona …», «la lista … de la cuenta …»
    fix: str  # the keys to check after a 404
    unavailable: type[DifusorError] | None = None  # a 5xx or no connection, when retried
    doing: str = ""  # what was being done, for a refusal without a better name

    def __call__(self, exc: cloudflare.APIStatusError | cloudflare.APIConnectionError
                 ) -> DifusorError:
        if isinstance(exc, cloudflare.RateLimitError):
            err = self.throttled(self.throttled_message)
            if isinstance(err, Transient):
                err.retry_after = retry_after(exc.response.headers.get("retry-after"))
            return err
        if isinstance(exc, cloudflare.AuthenticationError | cloudflare.PermissionDeniedError):
            return self.error(f"Cloudflare rechazó el token ({exc.status_code}{_errors(exc)}): "
                              f"{self.token_hint}")
        if isinstance(exc, cloudflare.NotFoundError):
            return self.error(f"Cloudflare no encuentra {self.missing} (404{_errors(exc)}): "
                              f"revisa {self.fix}")
        if isinstance(exc, cloudflare.APIStatusError):
            if exc.status_code >= 500 and self.unavailable is not None:
                return self.unavailable(f"Cloudflare respondió {exc.status_code}")
            return self.error(f"Cloudflare respondió {exc.status_code}{_errors(exc)}{self.doing}")
        return (self.unavailable or self.error)(
            f"no pude conectar con la API de Cloudflare: {exc.message}")


def _errors(exc: cloudflare.APIStatusError) -> str:
    """The API's own error messages, when it sent any."""
    found = [f"{e.code}: {e.message}" for e in exc.errors if getattr(e, "message", None)]
    return f"; {'; '.join(found)}" if found else ""
