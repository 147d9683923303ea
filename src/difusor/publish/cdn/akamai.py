"""Akamai: Fast Purge API v3, signed with EdgeGrid (edgegrid-python).

``POST /ccu/v3/invalidate/url/{network}`` with ``{"objects": [URL, ...]}``; the answer is
``201 {"purgeId": ..., "estimatedSeconds": ...}``. Invalidation marks the copies stale, so the
edge revalidates them with the origin. A request body may not exceed 50,000 bytes, so URLs go in
batches under that size. Credentials and the API host come from an ``.edgerc`` file
(``edgerc`` / ``edgerc_section``), as Akamai's own tools read them; ``api_url`` overrides the
host. ``difusor purge --all`` invalidates the configured CP code
(``POST /ccu/v3/invalidate/cpcode/{network}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
from akamai.edgegrid import EdgeGridAuth, EdgeRc

from difusor.config import AkamaiCdnSettings, Config
from difusor.errors import ConfigError
from difusor.providers import secret_file_warning
from difusor.publish.cdn.base import PurgeError, Purger, Unavailable, check_answer

MAX_BODY = 50_000
_KEYS = ("client_token", "client_secret", "access_token")


class AkamaiPurger(Purger):
    kind = "akamai"
    default_batch = 10_000
    max_batch = 10_000
    settings: AkamaiCdnSettings

    def __init__(self, settings: AkamaiCdnSettings, *, auth: EdgeGridAuth, host: str,
                 **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.base = (settings.api_url or f"https://{host}").rstrip("/")
        self.session = requests.Session()
        self.session.auth = auth

    @classmethod
    def from_config(cls, cfg: Config, settings: AkamaiCdnSettings,  # type: ignore[override]
                    env: Mapping[str, str]) -> Purger:
        """The credentials come from the ``.edgerc`` file, read here (never from the TOML)."""
        name = settings.label
        path = cfg.path(settings.edgerc)
        if not path.is_file():
            raise ConfigError(f"[[cdn]] «{name}»: no existe el archivo de credenciales de Akamai "
                              f"{path} (edgerc)")
        rc = EdgeRc(str(path))
        section = settings.edgerc_section
        if not rc.has_section(section):
            raise ConfigError(f"[[cdn]] «{name}»: {path} no tiene la sección [{section}]")
        missing = [k for k in _KEYS if not rc.get(section, k)]
        if missing:
            raise ConfigError(f"[[cdn]] «{name}»: a la sección [{section}] de {path} le falta "
                              f"{', '.join(missing)}")
        host = rc.get(section, "host")
        if not host and not settings.api_url:
            raise ConfigError(f"[[cdn]] «{name}»: falta host en [{section}] de {path}")
        purger = cls(settings, auth=EdgeGridAuth.from_edgerc(rc, section), host=host,
                     site_url=cfg.site.url)
        warning = secret_file_warning(path)
        if warning:
            purger.warnings.append(warning)
        return purger

    def batches(self, targets: list[str]) -> list[list[str]]:
        """Batches whose JSON body stays under Fast Purge's 50,000 bytes."""
        out: list[list[str]] = []
        current: list[str] = []
        size = len('{"objects": []}')
        for url in targets:
            extra = len(json.dumps(url)) + 2
            if current and (size + extra > MAX_BODY - 1000 or len(current) >= self.batch):
                out.append(current)
                current, size = [], len('{"objects": []}')
            current.append(url)
            size += extra
        if current:
            out.append(current)
        return out

    def _send(self, batch: list[str]) -> str | None:
        return self._post(f"/ccu/v3/invalidate/url/{self.settings.network}", batch)

    def _send_all(self) -> str | None:
        if not self.settings.cp_code.isdigit():
            raise ConfigError(f"[[cdn]] «{self.name}»: purgar todo en Akamai necesita cp_code "
                              "(el número del código CP que se invalida)")
        return self._post(f"/ccu/v3/invalidate/cpcode/{self.settings.network}",
                          [int(self.settings.cp_code)])

    def _post(self, path: str, objects: list[Any]) -> str | None:
        try:
            r = self.session.post(self.base + path, json={"objects": objects},
                                  timeout=self.settings.timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"no pude conectar con Fast Purge de Akamai: {exc}") from None
        check_answer("Akamai", r.status_code, r.headers.get("retry-after"),
                     credentials_hint=f"las credenciales ({r.status_code}): ¿el cliente de API "
                     "tiene acceso de lectura y escritura a «CCU APIs» (Fast Purge)?")
        if r.status_code not in (200, 201):
            raise PurgeError(f"Akamai respondió {r.status_code} a POST {path}: {_detail(r)}")
        try:
            return str(r.json().get("purgeId") or "") or None
        except ValueError:
            return None

    def close(self) -> None:
        self.session.close()


def _detail(r: requests.Response) -> str:
    try:
        doc = r.json()
        return str(doc.get("detail") or doc.get("title") or doc)[:200]
    except ValueError:
        return r.text[:200]
