"""The contract every CDN driver fulfils, and the one place that batches, retries and times purges.

A driver implements only the vendor call: ``_send`` (one batch of targets) and ``_send_all``
(everything), turning its SDK's or API's errors into the errors below. ``Purger.purge`` does the
rest once for all of them: de-duplication, batches within the provider's limit, calls in parallel
for per-URL APIs, back-off on 429 honouring ``Retry-After`` (``providers.retrying``), and a
``PurgeResult`` that never raises, so a failing CDN never stops the others.

    PurgeError (errors.py, exit 9)     the CDN refused or could not be reached; one Spanish line
    ├── RateLimited                     429 or the vendor's throttling: retried after Retry-After
    └── Unavailable                     a 5xx or a network failure: retried with back-off

Drivers are named in ``DRIVERS`` and imported only when configured, so an SDK loads only when its
driver is used. Each one's settings model (``config.providers``) says what it cannot work
without; ``purger_for`` checks it before building the driver, which then reads its secret.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

from difusor.config import CdnBase, CdnSettings, Config
from difusor.errors import ConfigError, DifusorError, PurgeError
from difusor.providers import Backoff, DriverTable, Transient, env_secret, retry_after, retrying

DRIVERS: DriverTable[Purger] = DriverTable({
    "varnish": "difusor.publish.cdn.varnish:VarnishPurger",
    "cloudflare": "difusor.publish.cdn.cloudflare:CloudflarePurger",
    "fastly": "difusor.publish.cdn.fastly:FastlyPurger",
    "cloudfront": "difusor.publish.cdn.cloudfront:CloudFrontPurger",
    "akamai": "difusor.publish.cdn.akamai:AkamaiPurger",
}, unknown="CDN desconocida «{name}»; usa una de: {known}")
BACKOFF = Backoff(first=0.5, cap=60.0)  # 0.5 s, 1 s, 2 s… or Retry-After, at most a minute


class RateLimited(PurgeError, Transient):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(PurgeError, Transient):
    """Worth another try: the API answered 5xx, or could not be reached."""


@dataclass
class PurgeResult:
    cdn: str  # the [[cdn]]'s name (its kind when it has none)
    kind: str  # provider
    urls: int  # how many URLs were asked for (0 with everything=True)
    ok: bool
    ms: float
    requests: int = 0  # vendor calls made, retries included
    retries: int = 0
    waited: float = 0.0  # seconds spent backing off
    everything: bool = False
    ids: list[str] = field(default_factory=list)  # the vendor's purge / invalidation ids
    message: str = ""  # one Spanish line for the operator

    def detail(self) -> dict[str, object]:
        return {"cdn": self.cdn, "provider": self.kind, "urls": self.urls, "ms": self.ms,
                "requests": self.requests, "retries": self.retries,
                "waited_s": round(self.waited, 3), "everything": self.everything,
                "ids": self.ids[:20]}


@dataclass
class _Tally:
    requests: int = 0
    retries: int = 0
    waited: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, requests: int = 0, retries: int = 0, waited: float = 0.0) -> None:
        with self.lock:
            self.requests += requests
            self.retries += retries
            self.waited += waited


class Purger(ABC):
    """One configured CDN. Subclasses set the class attributes and implement ``_send``."""

    kind: ClassVar[str]
    default_batch: ClassVar[int] = 1  # targets per vendor call unless batch_size says otherwise
    max_batch: ClassVar[int] = 1  # the most the vendor accepts in one call
    concurrency: ClassVar[int] = 1  # vendor calls in flight at once
    needs_token: ClassVar[bool] = False  # token_env must name a non-empty variable
    settings: CdnBase  # each driver narrows it to its own model (config.providers)

    def __init__(self, settings: CdnBase, *, site_url: str, secret: str = "",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.site_url = site_url.rstrip("/")
        self.secret = secret
        self.sleep = sleep
        self.batch = max(1, min(settings.batch_size or self.default_batch, self.max_batch))
        self.warnings: list[str] = []  # for the operator (e.g. a credentials file others read)

    @property
    def name(self) -> str:
        return self.settings.label

    @classmethod
    def from_config(cls, cfg: Config, settings: CdnBase, env: Mapping[str, str]) -> Purger:
        """The driver for ``settings`` (already checked); reads its secret here, never deeper."""
        variable = getattr(settings, "token_env", "")  # only the kinds whose API takes a token
        secret = env_secret(env, variable)
        if cls.needs_token and not secret:
            where = (f"la variable de entorno {variable} está vacía o no existe" if variable
                     else "falta token_env (el nombre de la variable de entorno con el token)")
            raise ConfigError(f"[[cdn]] «{settings.label}»: {where}")
        return cls(settings, site_url=cfg.site.url, secret=secret)

    # -- what drivers implement ----------------------------------------------------------

    def targets(self, urls: list[str]) -> list[str]:
        """What the vendor call takes for each public URL (the URL itself by default)."""
        return urls

    def batches(self, targets: list[str]) -> list[list[str]]:
        return [targets[i:i + self.batch] for i in range(0, len(targets), self.batch)]

    @abstractmethod
    def _send(self, batch: list[str]) -> str | None:
        """Purge one batch; returns the vendor's id for it, if any."""

    @abstractmethod
    def _send_all(self) -> str | None:
        """Purge everything this CDN holds for the site."""

    def close(self) -> None:  # noqa: B027 — optional hook
        """Release connections (drivers with a client override it)."""

    # -- the template --------------------------------------------------------------------

    def purge(self, urls: list[str]) -> PurgeResult:
        """Purge exactly these public URLs (``https://site/path``), in this order."""
        urls = list(dict.fromkeys(urls))
        start = time.monotonic()
        tally = _Tally()
        ids: list[str] = []
        if not urls:
            return PurgeResult(self.name, self.kind, 0, True, 0.0, message=f"{self._label()}: "
                               "nada que purgar")
        batches = self.batches(self.targets(urls))
        try:
            if self.concurrency > 1 and len(batches) > 1:
                with ThreadPoolExecutor(min(self.concurrency, len(batches)),
                                        thread_name_prefix=f"purga-{self.kind}") as pool:
                    found = list(pool.map(lambda b: self._call(self._send, b, tally), batches))
            else:
                found = [self._call(self._send, b, tally) for b in batches]
            ids = [i for i in found if i]
        except DifusorError as exc:
            return self._result(len(urls), False, start, tally, ids,
                                f"{self._label()}: no se pudo purgar: {exc.message}")
        return self._result(
            len(urls), True, start, tally, ids,
            f"{self._label()}: {len(urls)} URL purgadas en {tally.requests} "
            f"solicitud{'es' if tally.requests != 1 else ''}",
        )

    def purge_all(self) -> PurgeResult:
        """Purge everything this CDN holds for the site."""
        start = time.monotonic()
        tally = _Tally()
        try:
            found = self._call(lambda _b: self._send_all(), [], tally)
        except DifusorError as exc:
            result = self._result(0, False, start, tally, [],
                                  f"{self._label()}: no se pudo purgar todo: {exc.message}")
        else:
            result = self._result(0, True, start, tally, [found] if found else [],
                                  f"{self._label()}: purgado todo el sitio")
        result.everything = True
        return result

    def _call(self, send: Callable[[list[str]], str | None], batch: list[str],
              tally: _Tally) -> str | None:
        try:
            return retrying(lambda: send(batch), retries=self.settings.retries, backoff=BACKOFF,
                            sleep=self.sleep, on_try=lambda _n: tally.add(requests=1),
                            on_wait=lambda wait: tally.add(retries=1, waited=wait))
        except Transient as exc:  # still throttled or down after every retry
            message = exc.message if isinstance(exc, DifusorError) else str(exc)
            raise PurgeError(f"{message} (tras {self.settings.retries} reintentos)") from None

    def _result(self, urls: int, ok: bool, start: float, tally: _Tally, ids: list[str],
                message: str) -> PurgeResult:
        ms = round((time.monotonic() - start) * 1000, 1)
        if tally.retries:
            message += f", {tally.retries} reintentos ({tally.waited:.1f} s de espera)"
        return PurgeResult(self.name, self.kind, urls, ok, ms, tally.requests, tally.retries,
                           tally.waited, False, ids, f"{message} ({ms:.0f} ms)")

    def _label(self) -> str:
        return f"CDN «{self.name}» ({self.kind})" if self.settings.name else f"CDN {self.kind}"


# -- shared helpers for drivers ---------------------------------------------------------------

def check_answer(provider: str, status: int, retry_after_header: str | None, *,
                 credentials_hint: str) -> None:
    """The part of an API answer every provider shares: 429 is retried after Retry-After,
    401/403 is a credentials problem worth explaining, 5xx is retried as unavailable."""
    if status == 429:
        raise RateLimited(f"{provider} limitó las purgas (429)", retry_after(retry_after_header))
    if status in (401, 403):
        raise PurgeError(f"{provider} rechazó {credentials_hint}")
    if status >= 500:
        raise Unavailable(f"{provider} respondió {status}")


# -- the table ----------------------------------------------------------------------------

def purger_for(cfg: Config, settings: CdnSettings, *, env: Mapping[str, str] | None = None
               ) -> Purger:
    """One ``[[cdn]]``'s purger; ConfigError (Spanish, naming the CDN) when it is unusable."""
    cls = DRIVERS.load(settings.kind)
    problem = settings.problem()
    if problem:
        raise ConfigError(f"[[cdn]] «{settings.label}»: {problem}")
    return cls.from_config(cfg, settings, os.environ if env is None else env)


def purgers(cfg: Config, *, env: Mapping[str, str] | None = None) -> list[Purger]:
    """Every configured CDN's purger, in the order of ``[[cdn]]``."""
    return [purger_for(cfg, s, env=env) for s in cfg.cdn]
