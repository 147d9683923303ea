"""SHA-256 statements that come with a package: a ``NAME.sha256`` sidecar, a ``SHA256SUMS`` inside.

Both use the ``sha256sum`` format: ``<64 hex>  <name>`` (or ``*<name>`` for binary mode).
"""

from __future__ import annotations

import re

from difusor.errors import PackageRefused

INNER_NAMES = ("SHA256SUMS", "SHA256SUMS.txt")
_LINE = re.compile(r"^\\?([0-9a-fA-F]{64})(?:\s+\*?(.+))?$")


def parse_sidecar(text: str) -> str:
    """The package digest a sidecar states (its first line)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            break
        return m.group(1).lower()
    raise PackageRefused(
        "checksum_format", "el archivo .sha256 no tiene el formato de sha256sum («<hex>  nombre»)"
    )


def parse_sums(text: str, strip_prefix: str | None) -> dict[str, str]:
    """Path → digest from a SHA256SUMS file; paths made relative to the site root."""
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line.strip())
        if not m or not m.group(2):
            raise PackageRefused(
                "checksum_format", f"SHA256SUMS, línea {n}: no tiene la forma «<hex>  ruta»"
            )
        path = m.group(2).strip()
        while path.startswith("./"):
            path = path[2:]
        if strip_prefix and path.startswith(strip_prefix + "/"):
            path = path[len(strip_prefix) + 1:]
        sums[path] = m.group(1).lower()
    return sums


def verify_sums(sums: dict[str, str], files: dict[str, str], listing: str) -> None:
    """Every listed file present with its digest; every other file listed (the list excepted)."""
    for path, digest in sums.items():
        actual = files.get(path)
        if actual is None:
            raise PackageRefused(
                "checksum_inner_missing", f"SHA256SUMS menciona «{path}», que no viene en el paquete"
            )
        if actual != digest:
            raise PackageRefused(
                "checksum_inner",
                f"«{path}» no coincide con SHA256SUMS (esperado {digest[:12]}…, "
                f"recibido {actual[:12]}…)",
            )
    unlisted = sorted(set(files) - set(sums) - {listing})
    if unlisted:
        raise PackageRefused(
            "checksum_unlisted",
            f"«{unlisted[0]}» viene en el paquete pero no en SHA256SUMS"
            + (f" (y {len(unlisted) - 1} más)" if len(unlisted) > 1 else ""),
        )
