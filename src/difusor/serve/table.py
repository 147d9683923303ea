"""The response table: a live release turned into ready-made answers, one per URL path.

Everything a request needs is computed here, once per activation: bodies (in memory, or an
object file for large ones), every header, the ETags of each representation. Answers for files
whose bytes did not change are carried over from the previous table, so an incremental corte
costs only its changed files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from difusor.serve.policy import HeaderPolicy
from difusor.store.manifest import FileEntry, Manifest
from difusor.store.mediatypes import compressible
from difusor.store.objects import ENCODINGS, ObjectStore

SERVER = ("Server", "difusor")
_CODING = {"br": "br", "gz": "gzip"}


@dataclass(slots=True)
class Representation:
    body: bytes | None  # in memory, or None when served from ``file``
    file: str | None
    size: int
    etag: str
    headers: list[tuple[str, str]]  # for a 200
    not_modified: list[tuple[str, str]]  # for a 304


@dataclass(slots=True)
class Resource:
    sha256: str
    identity: Representation
    encoded: dict[str, Representation]  # "br" / "gz", only when smaller than identity
    negotiable: bool  # compressible type: answers carry Vary: Accept-Encoding
    settled: bool  # every variant this resource can have is present


@dataclass
class Table:
    release_id: str | None
    resources: dict[str, Resource]  # "/json/main.json", and "/" or "/dir/" for index.html
    redirects: dict[str, str]  # "/dir" → "/dir/"
    by_path: dict[str, Resource]
    status_body: bytes
    corte_header: tuple[str, str]

    @classmethod
    def empty(cls) -> Table:
        return cls(None, {}, {}, {}, json.dumps({"corte": None}).encode(), ("X-Difusor-Corte", "-"))


def corte_summary(manifest: Manifest) -> dict[str, str]:
    """The contract's corte object, as ``difusor status --json`` prints it."""
    return {
        "id": manifest.release_id,
        "fecha_hora": manifest.corte_time,
        "publicado": manifest.created,
        "paquete_sha256": manifest.package_sha256,
    }


def hidden(path: str) -> bool:
    """Dot-files and dot-folders are not served (``.well-known`` excepted), as in nginx."""
    return any(p.startswith(".") and p != ".well-known" for p in path.split("/"))


class TableBuilder:
    def __init__(self, objects: ObjectStore, policy: HeaderPolicy, memory_max_file: int) -> None:
        self.objects = objects
        self.policy = policy
        self.memory_max_file = memory_max_file

    def build(self, manifest: Manifest, previous: Table | None) -> Table:
        old = previous.by_path if previous else {}
        by_path: dict[str, Resource] = {}
        for path, entry in manifest.files.items():
            if hidden(path):
                continue
            res = old.get(path)
            if res is None or res.sha256 != entry.sha256 or not res.settled:
                res = self._resource(path, entry, res)
            by_path[path] = res
        resources: dict[str, Resource] = {}
        redirects: dict[str, str] = {}
        for path, res in by_path.items():
            resources["/" + path] = res
            if path == "index.html" or path.endswith("/index.html"):
                folder = "/" + path[: -len("index.html")]
                resources[folder] = res
                if folder != "/" and folder[:-1][1:] not in by_path:
                    redirects[folder[:-1]] = folder
        status = json.dumps({"corte": corte_summary(manifest)}, ensure_ascii=False).encode()
        return Table(manifest.release_id, resources, redirects, by_path, status,
                     ("X-Difusor-Corte", manifest.release_id))

    def _resource(self, path: str, entry: FileEntry, previous: Resource | None) -> Resource:
        negotiable = compressible(entry.media_type)
        merged = {"server": SERVER, "content-type": ("Content-Type", entry.media_type)}
        for name, value in self.policy.headers_for(path):
            merged[name.lower()] = (name, value)
        base = list(merged.values())
        if negotiable:
            base.append(("Vary", "Accept-Encoding"))
        tag = entry.sha256[:24]
        if previous is not None and previous.sha256 == entry.sha256:
            identity = previous.identity  # same bytes; only the variants were pending
        else:
            identity = self._representation(
                entry.sha256, None, entry.size, f'"{tag}"', [*base, ("Accept-Ranges", "bytes")]
            )
        encoded: dict[str, Representation] = {}
        settled = True
        if negotiable:
            sizes = self.objects.variants(entry.sha256)
            settled = len(sizes) == len(ENCODINGS)
            for enc, size in sizes.items():
                if size < entry.size:
                    encoded[enc] = self._representation(
                        entry.sha256, enc, size, f'"{tag}-{enc}"',
                        [*base, ("Content-Encoding", _CODING[enc])],
                    )
        return Resource(entry.sha256, identity, encoded, negotiable, settled)

    def _representation(
        self, sha: str, enc: str | None, size: int, etag: str, headers: list[tuple[str, str]]
    ) -> Representation:
        path: Path = self.objects.path(sha, enc)
        body = path.read_bytes() if size <= self.memory_max_file else None
        headers = [*headers, ("ETag", etag)]
        keep = {"cache-control", "vary", "etag", "server", "x-content-type-options"}
        not_modified = [h for h in headers if h[0].lower() in keep]
        return Representation(body, None if body is not None else str(path), size, etag,
                              headers, not_modified)
