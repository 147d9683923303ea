"""The Merkle root of a corte: one hash over every served file's path and SHA-256.

Leaves are ``SHA-256(0x00 ‖ path ‖ 0x00 ‖ sha256)`` over the files sorted by path (UTF-8 bytes),
inner nodes ``SHA-256(0x01 ‖ left ‖ right)``; a level with an odd count carries its last node up
unchanged (RFC 6962's domain separation: a leaf can never pass for a node). The empty corte's
root is ``SHA-256("")``. Written out so that anyone can recompute it without this code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_LEAF, _NODE = b"\x00", b"\x01"


def leaf(path: str, sha256_hex: str) -> bytes:
    return hashlib.sha256(_LEAF + path.encode("utf-8") + b"\x00"
                          + bytes.fromhex(sha256_hex)).digest()


def root(files: Iterable[tuple[str, str]]) -> str:
    """Hex root of ``(path, sha256 hex)`` pairs (any order: sorted here by path)."""
    level = [leaf(p, h) for p, h in sorted(files, key=lambda f: f[0].encode("utf-8"))]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        nxt = [hashlib.sha256(_NODE + level[i] + level[i + 1]).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()
