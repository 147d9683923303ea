"""The chain's entries: what one says, how it is hashed and signed, and every check of a chain.

An entry is a JSON object. Its ``hash`` is the SHA-256 of its canonical form without ``hash``
and ``sig`` (keys sorted, no spaces, UTF-8); ``sig`` is the difusor's Ed25519 signature of
those 32 bytes; ``prev`` is the previous entry's ``hash`` (64 zeros for the first). Activations
(``publish``, ``rollback``, ``recovery``) name the corte that went live, the package's SHA-256 as
received and the Merkle root of the files served (``merkle``); ``takedown`` (the final one) and
``reset`` (a test site emptied after a simulacro) say that nothing is served any more.
Nothing is ever rewritten: a correction is a new entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from difusor.integrity.signing import valid

FORMAT = "difusor-cadena/1"
GENESIS = "0" * 64
KINDS = ("publish", "rollback", "recovery", "takedown", "reset")
ENDS = ("takedown", "reset")  # nothing is served after one (until the next activation)
FIELDS = ("seq", "kind", "site", "corte", "corte_time", "package_sha256", "manifest_root",
          "files", "received_at", "live_at", "prev")


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_of(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("hash", "sig")}


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body_of(entry))).hexdigest()


def problems(entries: Sequence[dict[str, Any]], public_key: str) -> list[str]:
    """Every way ``entries`` (in order) fail to be one intact chain signed by ``public_key``,
    in Spanish, naming the entry; empty when it holds."""
    out: list[str] = []
    prev = GENESIS
    for i, entry in enumerate(entries, 1):
        where = f"entrada {i} (seq {entry.get('seq', '?')}, corte {entry.get('corte', '?')})"
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            out.append(f"{where}: le faltan {', '.join(missing)}")
            continue
        if entry["seq"] != i:
            out.append(f"{where}: número de secuencia {entry['seq']}, se esperaba {i} "
                       "(falta, sobra o se reordenó una entrada)")
        if entry["prev"] != prev:
            out.append(f"{where}: no enlaza con la anterior (prev {entry['prev'][:12]}…, "
                       f"se esperaba {prev[:12]}…)")
        computed = entry_hash(entry)
        if entry.get("hash") != computed:
            out.append(f"{where}: su contenido no corresponde a su hash (alterada)")
        elif not valid(public_key, str(entry.get("sig", "")), bytes.fromhex(computed)):
            out.append(f"{where}: la firma no es válida con la llave publicada")
        if entry["kind"] not in KINDS:
            out.append(f"{where}: tipo desconocido «{entry['kind']}»")
        prev = str(entry.get("hash", ""))
    return out


def live_entry(entries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry of the corte being served now (None before the first, or after a takedown or
    a reset)."""
    if not entries or entries[-1]["kind"] in ENDS:
        return None
    return entries[-1]
