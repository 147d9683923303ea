"""II.2.b: the CDN purges. A harmless path of its own per check, ``/_difusor/sonda-cdn/N.txt``
(the embedded server answers it from ``state/check/sonda-cdn/N.txt``, cacheable; nginx passes it
through; deleted afterwards), is fetched
through each edge with a first token, the token changes, the edge is shown to still hold the
first (else it does not cache the path and a purge proves nothing), the path is purged with the
same driver a publication uses, and the edge must serve the new token within the CDN's
``verify_timeout``."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import httpx

from difusor.compliance.outcome import Outcome
from difusor.config import Config
from difusor.errors import DifusorError
from difusor.paths import StateLayout
from difusor.providers import http_client
from difusor.publish.cdn.base import purger_for
from difusor.publish.cdn.edge import verify_edge

PROBE_PREFIX = "/_difusor/sonda-cdn/"
ITEM = ("cdn_purge", "II.2.b", "CDN con purga del caché verificada en el borde")


def _write_token(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"difusor check {secrets.token_hex(8)}\n".encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
    return body


def _fetch(http: httpx.Client, url: str) -> bytes | None:
    try:
        r = http.get(url)
    except httpx.HTTPError:
        return None
    return r.content if r.status_code == 200 else None


def cdn_purge(cfg: Config) -> list[Outcome]:
    edges = [c for c in cfg.cdn if c.edge_url]
    if not cfg.cdn:
        return [Outcome.fail(*ITEM, "no hay [[cdn]] configurada (la convocatoria pide una red "
                             "de entrega de contenidos con limpieza del caché)")]
    if not edges:
        return [Outcome.unknown(*ITEM, "ninguna [[cdn]] tiene edge_url: no puedo ver el borde")]
    out = []
    with http_client(10.0, follow_redirects=False) as http:
        for settings in edges:
            # A fresh name each time: an edge may still hold an earlier check's copy.
            path = StateLayout(cfg.state_dir).cdn_probes / f"{secrets.token_hex(8)}.txt"
            try:
                out.append(_one(cfg, settings, path, http))
            finally:
                path.unlink(missing_ok=True)
    return out


def _one(cfg: Config, settings: object, path: Path, http: httpx.Client) -> Outcome:
    label = f"CDN «{settings.label}»"  # type: ignore[attr-defined]
    edge = settings.edge_url.rstrip("/")  # type: ignore[attr-defined]
    probe = PROBE_PREFIX + path.name
    url = edge + probe
    first = _write_token(path)
    if _fetch(http, url) != first:
        return Outcome.fail(*ITEM, f"{label}: {url} no sirve la ruta de prueba a través del "
                            "borde (¿origen o CDN caídos?)", edge=edge)
    second = _write_token(path)
    held = _fetch(http, url)
    if held == second:
        return Outcome.unknown(*ITEM, f"{label}: el borde no guarda {probe} en caché "
                               "(trae cada vez la versión nueva), así que una purga no se "
                               "puede demostrar con ella", edge=edge)
    public = str(cfg.site.url).rstrip("/") + probe
    purger = None
    try:
        purger = purger_for(cfg, settings)  # type: ignore[arg-type]
        result = purger.purge([public])
    except DifusorError as exc:
        return Outcome.fail(*ITEM, f"{label}: la purga falló: {exc.message}", edge=edge)
    finally:
        if purger is not None:
            purger.close()
    if not result.ok:
        return Outcome.fail(*ITEM, f"{label}: {result.message}", edge=edge)
    timeout = settings.verify_timeout or 30.0  # type: ignore[attr-defined]
    report = verify_edge(edge, {probe: hashlib.sha256(second).hexdigest()},
                         timeout=timeout, client=http)
    data = {"edge": edge, "purge_ms": result.ms, "edge_ms": report.ms}
    if not report.ok:
        return Outcome.fail(*ITEM, f"{label}: purga aceptada ({result.message}), pero el borde "
                            f"siguió sirviendo la versión vieja de {probe} durante "
                            f"{timeout:g} s", **data)
    return Outcome.ok(*ITEM, f"{label}: el borde guardaba la versión vieja; tras la purga "
                      f"({result.ms:.0f} ms) sirvió la nueva en {report.ms:.0f} ms", **data)
