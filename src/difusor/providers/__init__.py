"""The provider kit: what every provider family shares — CDN purgers (``publish/cdn``), origins
(``publish/origins``) and the shield's enforcement points (``shield/enforce``).

    drivers.py          DriverTable: name → "module:Class", imported on use; unknown names listed
    retry.py            retrying() with Backoff, honouring Retry-After; the Transient mixin
    http.py             the shared HTTP client, URL paths, secrets from the environment or a file
    cloudflare_api.py   Cloudflare's SDK client and one mapping of its errors (imports the SDK)

It sits above ``config`` and ``errors`` and below both families, and imports neither of them;
each driver's settings model lives in ``difusor.config.providers``.
"""

from difusor.providers.drivers import DriverTable
from difusor.providers.http import env_secret, http_client, secret_file_warning, url_path
from difusor.providers.retry import Backoff, Transient, retry_after, retrying

__all__ = [
    "Backoff",
    "DriverTable",
    "Transient",
    "env_secret",
    "http_client",
    "retry_after",
    "retrying",
    "secret_file_warning",
    "url_path",
]
