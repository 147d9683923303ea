"""What the servers answer for the chain: files under ``state/integrity/``, written whole (a
temporary name, then a rename), so the embedded server and nginx serve the same bytes.

``cortes.json`` holds the chain's key, how the Merkle root is made, the full older pages' paths
and the entries after them; a full page (``cortes/N.json``) never changes again.
``manifest/<corte>.json`` lists a corte's files (path, SHA-256, size) with their root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from difusor.integrity.chain import FORMAT
from difusor.integrity.merkle import root
from difusor.integrity.signing import ALGORITHM, fingerprint
from difusor.store.manifest import Manifest

MANIFEST_FORMAT = "difusor-manifiesto/1"
MERKLE = ("hojas SHA-256(0x00 ‖ ruta UTF-8 ‖ 0x00 ‖ sha256) de cada archivo ordenado por ruta; "
          "nodos SHA-256(0x01 ‖ izquierdo ‖ derecho); con un número impar, el último sube igual")
CHAIN_PATH = "/_difusor/cortes.json"
PAGE_PATH = "/_difusor/cortes/{n}.json"
MANIFEST_PATH = "/_difusor/manifest/{corte}.json"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)  # public by nature; nginx's workers read it
    os.replace(tmp, path)


def manifest_root(manifest: Manifest) -> str:
    return root((p, f.sha256) for p, f in manifest.files.items())


def write_manifest(folder: Path, manifest: Manifest) -> str:
    """``manifest/<corte>.json`` (once: a corte's files never change); returns the root."""
    digest = manifest_root(manifest)
    target = folder / "manifest" / f"{manifest.release_id}.json"
    if not target.exists():
        files = sorted(([p, f.sha256, f.size] for p, f in manifest.files.items()),
                       key=lambda f: str(f[0]).encode("utf-8"))
        _write(target, orjson.dumps({
            "formato": MANIFEST_FORMAT, "corte": manifest.release_id,
            "corte_time": manifest.corte_time, "raiz": digest, "archivos": files}))
    return digest


def write_chain(folder: Path, entries: list[dict[str, Any]], *, site: str, url: str,
                public: str, page_size: int) -> None:
    full = len(entries) // page_size
    for n in range(1, full + 1):
        page = folder / "cortes" / f"{n}.json"
        if not page.exists():
            _write(page, orjson.dumps({"formato": FORMAT, "pagina": n,
                                       "entradas": entries[(n - 1) * page_size:n * page_size]}))
    _write(folder / "cortes.json", orjson.dumps({
        "formato": FORMAT, "sitio": site, "url": url, "algoritmo": ALGORITHM,
        "llave_publica": public, "huella": fingerprint(public), "merkle": MERKLE,
        "total": len(entries), "paginas": [PAGE_PATH.format(n=n) for n in range(1, full + 1)],
        "manifiesto": MANIFEST_PATH, "entradas": entries[full * page_size:]},
        option=orjson.OPT_INDENT_2))
