"""What a publication changes at the edge: the URLs to purge, and what the edge must then serve.

Exactly the URLs whose answer changed between two manifests: every added, changed or removed
file; a folder's URL (``/dir/``) with its ``index.html``, and its redirect (``/dir``) when the
index appears or disappears. ``/json/main.json`` is always purged, and last: a browser that sees
the new corte in main.json then finds every file it points to already fresh at the edge.
"""

from __future__ import annotations

import random
from urllib.parse import quote

from difusor.store.manifest import Manifest, changed_paths

_SAFE = "/!$&'()*+,;=:@~"
INDEX = "index.html"


def quote_path(path: str) -> str:
    """A site path as browsers request it (spaces and non-ASCII percent-encoded)."""
    return quote(path, safe=_SAFE)


def public_url(base: str, path: str) -> str:
    """``https://prep.example.mx`` + ``/json/main.json``."""
    return base.rstrip("/") + quote_path(path)


def _hidden(path: str) -> bool:
    # Dot-files are never served (as the embedded server and nginx do): nothing to purge.
    return any(p.startswith(".") and p != ".well-known" for p in path.split("/"))


def purge_paths(previous: Manifest | None, current: Manifest, main_json: str) -> list[str]:
    """URL paths (``/json/main.json``, ``/``, ``/dir/``) whose answer changed, main.json last."""
    changed, removed = changed_paths(previous, current)
    before = previous.files if previous is not None else {}
    paths: set[str] = set()
    for path in [*changed, *removed]:
        if _hidden(path):
            continue
        paths.add("/" + path)
        if path == INDEX or path.endswith("/" + INDEX):
            folder = "/" + path[: -len(INDEX)]
            paths.add(folder)
            if folder != "/" and ((path in before) != (path in current.files)):
                paths.add(folder[:-1])  # the /dir → /dir/ redirect appears or disappears
    main = "/" + main_json.lstrip("/")
    paths.discard(main)
    return [*sorted(paths), main]


def expected_at_edge(paths: list[str], previous: Manifest | None, current: Manifest,
                     main_json: str, sample: int) -> dict[str, str | None]:
    """What the edge must serve once purged: URL path → sha256 of the new bytes, or None for a
    file that is gone (404). main.json first; of the rest, ``sample`` chosen at random (the same
    choice for the same corte), so a 20,000-file corte is checked in seconds."""
    main = "/" + main_json.lstrip("/")
    out: dict[str, str | None] = {}
    entry = current.files.get(main_json.lstrip("/"))
    if entry is not None:
        out[main] = entry.sha256
    others: dict[str, str | None] = {}
    before = previous.files if previous is not None else {}
    for path in paths:
        if path == main:
            continue
        name = path[1:] + INDEX if path.endswith("/") else path[1:]
        if name in current.files:
            others[path] = current.files[name].sha256
        elif name in before and not _hidden(name):
            others[path] = None
    chosen = sorted(others)
    if len(chosen) > sample:
        chosen = sorted(random.Random(current.release_id).sample(chosen, sample))
    out.update((p, others[p]) for p in chosen)
    return out
