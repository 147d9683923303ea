"""``difusor verify URL``: anyone, anywhere, without a configuration, checks a difusor.

1. the chain (``/_difusor/cortes.json`` and its pages): sequence, links, hashes, signatures
   under the key it publishes (or the one given with ``--key``);
2. the live corte: the one the site serves (``X-Difusor-Corte`` of ``/json/main.json``) is the
   chain's last activation, and its manifest's Merkle root is the one the chain signed;
3. the files, as a visitor gets them (through the CDN, compressed encodings decoded): all, or a
   random sample, each against the manifest's SHA-256;
4. given the authority's package: it is a package the chain names, and its files are the
   manifest's (all of them for a full package; each one for an incremental).

A corte that goes live during the check is not a mismatch: the check starts over once.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from difusor.integrity.chain import FORMAT, live_entry, problems
from difusor.integrity.download import POOL, fetch_all
from difusor.integrity.merkle import root
from difusor.integrity.published import CHAIN_PATH, MANIFEST_PATH
from difusor.integrity.signing import fingerprint

MAIN = "json/main.json"


@dataclass
class Mismatch:
    path: str
    expected: str
    served: str


@dataclass
class Report:
    url: str
    ok: bool = False
    key: str = ""  # the fingerprint the chain was checked with
    entries: int = 0
    head: str = ""
    corte: str | None = None
    files: int = 0  # in the live corte's manifest
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    package: dict[str, Any] | None = None
    seconds: float = 0.0
    unreachable: bool = False  # the chain itself could not be read (see ``problems``)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Unreachable(Exception):
    pass


def _json(http: httpx.Client, url: str) -> Any:
    try:
        r = http.get(url)
    except httpx.HTTPError as exc:
        raise _Unreachable(f"{url}: {exc or type(exc).__name__}") from None
    if r.status_code != 200:
        raise _Unreachable(f"{url}: HTTP {r.status_code}")
    try:
        return r.json()
    except ValueError:
        raise _Unreachable(f"{url}: no es JSON") from None


def fetch_chain(http: httpx.Client, base: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = _json(http, base + CHAIN_PATH)
    if not isinstance(doc, dict) or doc.get("formato") != FORMAT:
        raise _Unreachable(f"{base}{CHAIN_PATH}: formato desconocido (se esperaba {FORMAT})")
    entries: list[dict[str, Any]] = []
    for page in doc.get("paginas", []):
        entries += _json(http, base + page).get("entradas", [])
    entries += doc.get("entradas", [])
    return doc, entries


def verify_site(url: str, *, sample: int | None = 50, package: Path | None = None,
                key: str | None = None, timeout: float = 30.0, seed: int | None = None,
                http: httpx.Client | None = None,
                manifests: dict[str, dict[str, Any]] | None = None) -> Report:
    """``sample=None``: every file. Never raises for the site's trouble: it is in the report.
    ``manifests``: a cache kept between calls (a monitor's rounds), by manifest root."""
    base = url.rstrip("/")
    started = time.monotonic()
    own = http is None
    http = http or httpx.Client(timeout=timeout, follow_redirects=True,
                                limits=httpx.Limits(max_connections=POOL),
                                headers={"User-Agent": "difusor-verify"})
    try:
        cache = manifests if manifests is not None else {}
        run = (http, base, sample, package, key, seed, cache, own, timeout)
        report = _verify(*run)
        if report.problems == ["__moved__"]:  # a new corte went live meanwhile: once more
            report = _verify(*run)
            if report.problems == ["__moved__"]:
                report.problems = ["el corte en línea cambió dos veces durante la "
                                   "verificación; vuelve a intentarlo"]
    finally:
        if own:
            http.close()
    report.ok = not report.problems and not report.mismatches
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _verify(http: httpx.Client, base: str, sample: int | None, package: Path | None,
            key: str | None, seed: int | None, cache: dict[str, dict[str, Any]], own: bool,
            timeout: float) -> Report:
    report = Report(base)
    try:
        doc, entries = fetch_chain(http, base)
    except _Unreachable as exc:
        report.problems.append(f"no pude leer la cadena: {exc}")
        report.unreachable = True
        return report
    public = str(doc.get("llave_publica", ""))
    report.key, report.entries = fingerprint(public) if public else "", len(entries)
    report.head = str(entries[-1].get("hash", "")) if entries else ""
    if key and key not in (public, report.key):
        report.problems.append(f"la cadena está firmada con la llave {report.key}, no con la "
                               f"esperada {key}")
    if doc.get("total") != len(entries):
        report.problems.append(f"la cadena dice tener {doc.get('total')} entradas y publica "
                               f"{len(entries)}")
    report.problems += problems(entries, public)
    live = live_entry(entries)
    if live is None:
        report.problems.append("la cadena no tiene un corte en línea")
        return report
    report.corte = live["corte"]
    manifest = _manifest(http, base, live, report, cache)
    if manifest is None:
        return report
    files = manifest["archivos"]
    report.files = len(files)
    chosen = files if sample is None or sample >= len(files) else \
        random.Random(seed).sample(files, sample)
    if sample is not None and not any(f[0] == MAIN for f in chosen):
        chosen = [*(f for f in files if f[0] == MAIN), *chosen]  # the file that matters most
    report.checked = len(chosen)
    report.mismatches = [Mismatch(*m) for m in fetch_all(base, http, own, timeout, chosen)]
    served = _served_corte(http, base)
    if served != live["corte"] or (report.mismatches and _head(http, base) != report.head):
        return Report(base, problems=["__moved__"])
    if package is not None:
        report.package = _package(http, base, package, entries, report)
    return report


def _manifest(http: httpx.Client, base: str, live: dict[str, Any], report: Report,
              cache: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    if cache is not None and live["manifest_root"] in cache:
        return cache[live["manifest_root"]]  # checked against this very root before
    path = MANIFEST_PATH.format(corte=quote(str(live["corte"]), safe=""))
    try:
        manifest = _json(http, base + path)
    except _Unreachable as exc:
        report.problems.append(f"no pude leer el manifiesto del corte {live['corte']}: {exc}")
        return None
    digest = root((f[0], f[1]) for f in manifest.get("archivos", []))
    if digest != live["manifest_root"] or manifest.get("raiz") != digest:
        report.problems.append(
            f"el manifiesto publicado del corte {live['corte']} no es el que firmó la cadena "
            f"(raíz {digest[:12]}…, firmada {str(live['manifest_root'])[:12]}…)")
        return None
    if cache is not None:
        cache.clear()  # one corte at a time is enough for a monitor
        cache[digest] = dict(manifest)
    return dict(manifest)


def _served_corte(http: httpx.Client, base: str) -> str | None:
    try:
        return http.get(f"{base}/{MAIN}").headers.get("x-difusor-corte")
    except httpx.HTTPError:
        return None


def _head(http: httpx.Client, base: str) -> str:
    try:
        _doc, entries = fetch_chain(http, base)
    except _Unreachable:
        return ""
    return str(entries[-1].get("hash", "")) if entries else ""


def _package(http: httpx.Client, base: str, path: Path, entries: list[dict[str, Any]],
             report: Report) -> dict[str, Any]:
    from difusor.integrity.package import package_files

    sha, kind, files = package_files(path)
    named = [e for e in entries if e.get("package_sha256") == sha and e.get("corte")]
    out: dict[str, Any] = {"archivo": str(path), "sha256": sha, "tipo": kind,
                           "archivos": len(files), "corte": None, "diferencias": []}
    if not named:
        report.problems.append(f"el paquete {path.name} (sha256 {sha[:12]}…) no aparece en la "
                               "cadena: no es uno que este difusor haya publicado")
        return out
    corte = named[0]["corte"]
    out["corte"] = corte
    manifest = _manifest(http, base, named[0], report)
    if manifest is None:
        return out
    listed = {str(f[0]): str(f[1]) for f in manifest["archivos"]}
    diffs = [Mismatch(p, h, listed.get(p, "ausente del manifiesto")) for p, h in
             sorted(files.items()) if listed.get(p) != h]
    if kind != "incremental":
        diffs += [Mismatch(p, "ausente del paquete", listed[p]) for p in sorted(listed)
                  if p not in files]
    out["diferencias"] = [asdict(d) for d in diffs]
    if diffs:
        report.problems.append(f"el manifiesto del corte {corte} no es el contenido del paquete "
                               f"{path.name}: {len(diffs)} diferencias")
    return out
