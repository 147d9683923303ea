"""Media types by extension (as nginx's mime.types, with current names) and compressibility."""

from __future__ import annotations

import mimetypes

_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css",
    ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
    ".map": "application/json", ".webmanifest": "application/manifest+json",
    ".xml": "application/xml", ".txt": "text/plain", ".csv": "text/csv",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject", ".pdf": "application/pdf",
    ".zip": "application/zip", ".gz": "application/gzip", ".tgz": "application/gzip",
    ".mp4": "video/mp4", ".webm": "video/webm", ".wasm": "application/wasm",
    ".sha256": "text/plain",
}
DEFAULT = "application/octet-stream"
_COMPRESSIBLE_PREFIXES = ("text/",)
_COMPRESSIBLE = {
    "application/json", "application/manifest+json", "application/xml", "image/svg+xml",
    "application/javascript", "image/x-icon", "font/ttf", "font/otf",
    "application/vnd.ms-fontobject", "application/wasm",
}


def media_type(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    if name == "sha256sums":
        return "text/plain"
    dot = name.rfind(".")
    if dot >= 0:
        known = _TYPES.get(name[dot:])
        if known:
            return known
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT


def compressible(mtype: str) -> bool:
    return mtype.startswith(_COMPRESSIBLE_PREFIXES) or mtype in _COMPRESSIBLE
