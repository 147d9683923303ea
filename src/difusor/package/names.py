"""Member names: what a path inside a package may look like.

A name becomes a site path only if it is relative, canonical, valid UTF-8 and free of control
characters; anything else is refused with its own reason. ``./`` prefixes (``tar -C dir .``) are
accepted and dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable

from difusor.errors import PackageRefused

RESERVED_PREFIX = "_difusor"
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes, kept by surrogateescape
_SUSPECT = re.compile("[\x00-\x1f\x7f\\\\\ud800-\udfff]|^/|^[A-Za-z]:")
_DRIVE = re.compile(r"^[A-Za-z]:")


def canonical(raw: str) -> str | None:
    """The site path for a member name, or None for the archive root itself (``./``).

    A trailing ``/`` (directory entries) is dropped. Raises PackageRefused for a bad name.
    """
    if _SUSPECT.search(raw):  # one C-level scan; the reason is worked out only when needed
        _refuse_suspect(raw)
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if name.endswith("/") else name
    if name in ("", "."):
        return None
    parts = name.split("/")
    if ".." in parts:
        raise PackageRefused(
            "parent_segment", f"la ruta «{_shown(raw)}» sube de carpeta con «..»"
        )
    if "" in parts or "." in parts:
        raise PackageRefused(
            "noncanonical", f"la ruta «{_shown(raw)}» no es canónica (segmentos vacíos o «.»)"
        )
    if len(name) > MAX_SEGMENT_BYTES // 4 and (
        len(name.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_SEGMENT_BYTES for p in parts)
    ):
        raise PackageRefused("name_too_long", f"la ruta «{_shown(raw)[:80]}…» es demasiado larga")
    return name


def _refuse_suspect(raw: str) -> None:
    shown = _shown(raw)
    if "\x00" in raw:
        raise PackageRefused("control_char", f"el nombre «{shown}» contiene un carácter nulo")
    if _SURROGATE.search(raw):
        raise PackageRefused("invalid_utf8", f"el nombre «{shown}» no es UTF-8 válido")
    if _CONTROL.search(raw):
        raise PackageRefused("control_char", f"el nombre «{shown}» contiene caracteres de control")
    if "\\" in raw:
        raise PackageRefused(
            "backslash",
            f"el nombre «{shown}» usa «\\» como separador; los paquetes deben usar «/»",
        )
    raise PackageRefused(
        "absolute_path", f"ruta absoluta «{shown}»: solo se aceptan rutas relativas"
    )


def check_reserved(path: str) -> None:
    top = path.split("/", 1)[0]
    if top.casefold() == RESERVED_PREFIX:
        raise PackageRefused(
            "reserved_prefix",
            f"«{path}» usa el prefijo reservado /{RESERVED_PREFIX}/ (endpoints del difusor)",
        )


def duplicate_key(path: str) -> str:
    """Two names that render the same (NFC) are the same file to a person reading the site."""
    return unicodedata.normalize("NFC", path)


def _shown(raw: str) -> str:
    text = raw.encode("utf-8", "backslashreplace").decode("utf-8", "replace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)[:200]


def folders(paths: Iterable[str]) -> set[str]:
    """Every folder that holds one of ``paths`` (``a/b/c`` → ``a``, ``a/b``)."""
    out: set[str] = set()
    for path in paths:
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in out:
                break
            out.add(parent)
            cut = path.rfind("/", 0, cut)
    return out


def check_conflicts(added: Collection[str], existing: Collection[str] = (),
                    existing_folders: Collection[str] | None = None) -> None:
    """Refuse a path that would be both a file and a folder, within ``added`` or against the
    ``existing`` files an incremental package lands on (``existing_folders``: their folders,
    when the caller has them already)."""
    added_folders = folders(added)
    if existing_folders is None:
        existing_folders = folders(existing)
    for path in added:
        if path in added_folders or path in existing_folders:
            raise PackageRefused("path_conflict", f"«{path}» sería a la vez archivo y carpeta")
    for folder in added_folders:
        if folder in existing:
            raise PackageRefused(
                "path_conflict", f"«{folder}» (en línea) sería a la vez archivo y carpeta"
            )
