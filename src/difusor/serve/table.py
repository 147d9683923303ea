"""The response table: a live release turned into ready-made answers, one per URL path.

Everything a request needs is computed here, once per activation: bodies (in memory, or an
object file for large ones), every header, the ETags of each representation. Answers for files
whose bytes did not change are carried over from the previous table, so an incremental corte
costs only its changed files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo

from difusor.headers import HeaderPolicy
from difusor.publish.status import corte_doc
from difusor.store.manifest import FileEntry, Manifest
from difusor.store.mediatypes import compressible
from difusor.store.objects import ENCODINGS, ObjectStore

SERVER = ("Server", "difusor")
_CODING = {"br": "br", "gz": "gzip"}


@dataclass(slots=True)
class Representation:
    body: bytes | memoryview | None  # in memory (or a mapped pack), None when served from ``file``
    file: str | None
    size: int
    etag: str
    headers: list[tuple[str, str]]  # for a 200
    not_modified: list[tuple[str, str]]  # for a 304


@dataclass(slots=True)
class Resource:
    sha256: str
    media_type: str
    identity: Representation
    encoded: dict[str, Representation]  # "br" / "gz", only when smaller than identity
    negotiable: bool  # compressible type: answers carry Vary: Accept-Encoding
    settled: bool  # final: its object is loose and every variant it can have is present


@dataclass
class Table:
    release_id: str | None
    resources: dict[str, Resource]  # "/json/main.json", and "/" or "/dir/" for index.html
    redirects: dict[str, str]  # "/dir" → "/dir/"
    by_path: dict[str, Resource]
    status_body: bytes
    corte_header: tuple[str, str]

    @classmethod
    def empty(cls, zone: tzinfo = UTC) -> Table:
        return cls(None, {}, {}, {}, status_body(None, zone), ("X-Difusor-Corte", "-"))


def status_body(manifest: Manifest | None, zone: tzinfo) -> bytes:
    """``/_difusor/status.json``: the corte and the zone its times are in, as ``status --json``."""
    corte = corte_doc(manifest.release_id, manifest.corte_time, manifest.created,
                      manifest.package_sha256, zone) if manifest else None
    return json.dumps({"corte": corte, "zona": str(zone)}, ensure_ascii=False).encode()


def hidden(path: str) -> bool:
    """Dot-files and dot-folders are not served (``.well-known`` excepted), as in nginx."""
    return any(p.startswith(".") and p != ".well-known" for p in path.split("/"))


class TableBuilder:
    def __init__(self, objects: ObjectStore, policy: HeaderPolicy, memory_max_file: int,
                 compress_min_bytes: int = 0, zone: tzinfo = UTC) -> None:
        self.objects = objects
        self.zone = zone  # [site] timezone: status.json states its times there
        self.policy = policy
        self.memory_max_file = memory_max_file
        self.compress_min_bytes = compress_min_bytes  # smaller files never get variants
        self._headers: dict[str, list[tuple[str, str]]] = {}  # per path: the policy's verdict

    def build(self, manifest: Manifest, previous: Table | None) -> Table:
        """The whole table for a release (answers for unchanged bytes carried over)."""
        self.objects.packs.refresh()
        old = previous.by_path if previous else {}
        by_path: dict[str, Resource] = {}
        for path, entry in manifest.files.items():
            res = old.get(path)
            if res is None and hidden(path):
                continue
            if res is None or res.sha256 != entry.sha256 or not res.settled:
                res = self._resource(path, entry, res)
            by_path[path] = res
        resources: dict[str, Resource] = {}
        redirects: dict[str, str] = {}
        for path, res in by_path.items():
            _link_url(resources, redirects, by_path, path, res)
        return self._table(manifest, by_path, resources, redirects)

    def apply(self, delta: Manifest, removed: list[str], previous: Table) -> Table:
        """The next release's table from the previous one and only what changed (``delta``
        holds the changed files): an incremental corte costs its changes, not the site."""
        self.objects.packs.refresh()
        by_path = dict(previous.by_path)
        resources = dict(previous.resources)
        redirects = dict(previous.redirects)
        for path in removed:
            if by_path.pop(path, None) is not None:
                _link_url(resources, redirects, by_path, path, None)
        for path, entry in delta.files.items():
            res = by_path.get(path)
            if res is None and hidden(path):
                continue
            if res is None or res.sha256 != entry.sha256 or not res.settled:
                res = self._resource(path, entry, res)
                by_path[path] = res
                _link_url(resources, redirects, by_path, path, res)
        return self._table(delta, by_path, resources, redirects)

    def settle(self, table: Table, paths: list[str]) -> Table:
        """The same release with ``paths`` answered afresh, now that their objects are loose
        and their variants made (a few at a time, so a new corte is never kept waiting)."""
        self.objects.packs.refresh()
        by_path = dict(table.by_path)
        resources = dict(table.resources)
        redirects = dict(table.redirects)
        for path in paths:
            old = by_path.get(path)
            if old is None or old.settled:
                continue
            entry = FileEntry(old.sha256, old.identity.size, old.media_type)
            res = self._resource(path, entry, old)
            by_path[path] = res
            _link_url(resources, redirects, by_path, path, res)
        return Table(table.release_id, resources, redirects, by_path, table.status_body,
                     table.corte_header)

    def empty(self) -> Table:
        return Table.empty(self.zone)

    def _table(self, manifest: Manifest, by_path: dict[str, Resource],
               resources: dict[str, Resource], redirects: dict[str, str]) -> Table:
        return Table(manifest.release_id, resources, redirects, by_path,
                     status_body(manifest, self.zone), ("X-Difusor-Corte", manifest.release_id))

    def _resource(self, path: str, entry: FileEntry, previous: Resource | None) -> Resource:
        negotiable = compressible(entry.media_type)
        policy = self._headers.get(path)
        if policy is None:
            policy = self._headers[path] = self.policy.headers_for(path)
        merged = {"server": SERVER, "content-type": ("Content-Type", entry.media_type)}
        for name, value in policy:
            merged[name.lower()] = (name, value)
        base = list(merged.values())
        if negotiable:
            base.append(("Vary", "Accept-Encoding"))
        tag = entry.sha256[:24]
        if previous is not None and previous.sha256 == entry.sha256:
            identity = previous.identity  # same bytes; only the variants were pending
            if isinstance(identity.body, memoryview) and self.objects.loose(entry.sha256):
                # Now loose: keep the bytes, let the pack's mapping go.
                identity = replace(identity, body=bytes(identity.body))
        else:
            identity = self._representation(
                entry.sha256, None, entry.size, f'"{tag}"', [*base, ("Accept-Ranges", "bytes")]
            )
        encoded: dict[str, Representation] = {}
        packed = isinstance(identity.body, memoryview)
        settled = not packed  # a packed object has no variants yet: no point looking
        if negotiable and not packed and entry.size >= self.compress_min_bytes:
            sizes = self.objects.variants(entry.sha256)
            settled = len(sizes) == len(ENCODINGS)
            for enc, size in sizes.items():
                if size < entry.size:
                    encoded[enc] = self._representation(
                        entry.sha256, enc, size, f'"{tag}-{enc}"',
                        [*base, ("Content-Encoding", _CODING[enc])],
                    )
        # Served from a pack until the object is loose; then rebuilt once (settle), so the
        # pack's mapping is let go.
        return Resource(entry.sha256, entry.media_type, identity, encoded, negotiable, settled)

    def _representation(
        self, sha: str, enc: str | None, size: int, etag: str, headers: list[tuple[str, str]]
    ) -> Representation:
        body: bytes | memoryview | None
        file = None
        if enc is not None:  # variants are always loose files
            body = self.objects.read(sha, enc) if size <= self.memory_max_file else None
            file = None if body is not None else self.objects.where(sha, enc)
        elif (packed := self.objects.packs.view(sha, refresh=False)) is not None:
            body = packed  # fresh from its publication's pack: mapped, not copied
        elif size <= self.memory_max_file:
            body = self.objects.read(sha)
        else:
            body, file = None, self.objects.where(sha)
        headers = [*headers, ("ETag", etag)]
        keep = {"cache-control", "vary", "etag", "server", "x-content-type-options"}
        not_modified = [h for h in headers if h[0].lower() in keep]
        return Representation(body, file, size, etag, headers, not_modified)


def _link_url(resources: dict[str, Resource], redirects: dict[str, str],
              by_path: dict[str, Resource], path: str, res: Resource | None) -> None:
    """Point the URLs of ``path`` at ``res`` (or drop them): the file itself, and its folder
    (``/dir/``, with ``/dir`` redirecting there) when it is an ``index.html``."""
    if res is None:
        resources.pop("/" + path, None)
    else:
        resources["/" + path] = res
    if path != "index.html" and not path.endswith("/index.html"):
        return
    folder = "/" + path[: -len("index.html")]
    if res is None:
        resources.pop(folder, None)
        redirects.pop(folder[:-1], None)
        return
    resources[folder] = res
    if folder != "/" and folder[1:-1] not in by_path:
        redirects[folder[:-1]] = folder
