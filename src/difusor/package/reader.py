"""Verify one package in a single streaming pass and hand its files to a content sink.

Everything the authority sent is checked before anything can go live: member names and types,
limits (``limits``), checksums, JSON validity and the corte's time (``cortesources``). The
reader never decides *where* bytes go: it gives them to a ``ContentSink`` (the store's staging
area) and returns the path → digest map, the kind (full / incremental) and the corte.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import IO, Protocol

from difusor.config import CorteSettings, PackageSettings
from difusor.errors import PackageRefused
from difusor.package import archive, checksums, corte, limits, names
from difusor.package.cortesources import CSV_HEAD, CorteClues
from difusor.package.decoding import parse_json, utf8_text
from difusor.package.wrapper import wrapper_folder

SMALL_FILE = 8 * 1024 * 1024  # read whole; larger files stream in chunks
CHUNK = 1024 * 1024
_INNER_LOWER = frozenset(n.lower() for n in checksums.INNER_NAMES)


class ContentSink(Protocol):
    """Where verified bytes go; returns the content's sha256."""

    def add(self, data: bytes) -> str: ...

    def add_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]: ...

    def read(self, sha256: str) -> bytes: ...


@dataclass(frozen=True)
class PackageFile:
    sha256: str
    size: int


@dataclass
class VerifiedPackage:
    files: dict[str, PackageFile]
    kind: str  # full | incremental | database (a whole PREP database: replaces, like full)
    corte: corte.CorteTime
    format: str
    wrapper: str | None
    checksums: list[str] = field(default_factory=list)


Progress = Callable[[int, int | None], None]


def read_package(
    path: Path,
    *,
    name: str,
    package_sha256: str,
    sidecar_text: str | None,
    settings: PackageSettings,
    corte_settings: CorteSettings,
    zone: tzinfo,
    sink: ContentSink,
    progress: Progress | None = None,
    site_folders: Collection[str] = (),
) -> VerifiedPackage:
    """``site_folders``: the live corte's top-level folders, which are never taken for a
    wrapper (``json.zip`` holding ``json/main.json`` is the site's ``json/`` folder)."""
    verified: list[str] = []
    if sidecar_text is not None:
        stated = checksums.parse_sidecar(sidecar_text)
        if stated != package_sha256:
            raise PackageRefused(
                "checksum_sidecar",
                f"el paquete no coincide con {name}.sha256 (esperado {stated[:12]}…, "
                f"recibido {package_sha256[:12]}…): llegó alterado o incompleto",
            )
        verified.append("sidecar")
    elif settings.require_checksum == "sidecar":
        raise PackageRefused(
            "checksum_missing", f"falta {name}.sha256 y la configuración exige verificarlo"
        )
    with archive.open_archive(path) as arc:
        scan = _Scan(settings, corte_settings, zone, sink, arc, progress)
        scan.run()
    return scan.finish(name, verified, site_folders)


class _Scan:
    def __init__(
        self,
        settings: PackageSettings,
        corte_settings: CorteSettings,
        zone: tzinfo,
        sink: ContentSink,
        arc: archive.Archive,
        progress: Progress | None,
    ) -> None:
        self.s = settings
        self.sink = sink
        self.arc = arc
        self.progress = progress
        self.files: dict[str, PackageFile] = {}  # canonical archive path → content
        self.dirs: set[str] = set()
        self.seen: dict[str, str] = {}
        self.kept: dict[str, bytes] = {}  # files needed whole after the pass (see _needed)
        self.clues = CorteClues(settings, corte_settings, zone, sink)
        self.budget = limits.Budget(settings, arc)
        self.head = b""  # the first bytes of the last file streamed in chunks
        self.pointer_paths = {p.split("#/", 1)[0].lstrip("/") for p in corte_settings.json_pointers}

    # -- the streaming pass ------------------------------------------------------------

    def run(self) -> None:
        members: Iterator[archive.Member] | list[archive.Member] = self.arc.members()
        expected: int | None = None
        if self.arc.format == "zip":
            # The central directory is known up front: judge the whole list before any data.
            members = list(members)
            limits.precheck_zip(members, self.s, self.arc.size)
            expected = sum(1 for m in members if m.kind == "file")
        done = 0
        for member in members:
            path = names.canonical(member.name)
            if path is None:
                continue
            limits.check_type(member, path)
            if member.kind == "dir":
                self.dirs.add(path)
                continue
            self._check_new(path)
            limits.check_member(path, member, len(self.files), self.s)
            self.files[path] = self._take(path, member)
            done += 1
            if self.progress:
                self.progress(done, expected)

    def _check_new(self, path: str) -> None:
        key = names.duplicate_key(path)
        if key in self.seen:
            raise PackageRefused("duplicate", f"«{path}» aparece dos veces en el paquete")
        self.seen[key] = path

    def _take(self, path: str, member: archive.Member) -> PackageFile:
        if member.read is not None and member.size <= SMALL_FILE:
            return self._accept(path, member.read())
        assert member.open is not None
        taken = self._read(path, member.size, member.open())
        if member.size > SMALL_FILE:  # streamed in chunks by _read, not inspected yet
            self._inspect_large(path, taken)
        return taken

    def _accept(self, path: str, data: bytes) -> PackageFile:
        self.budget.count(len(data))
        sha = self.sink.add(data)
        self._inspect(path, sha, data)
        return PackageFile(sha, len(data))

    def _read(self, path: str, declared: int, stream: IO[bytes]) -> PackageFile:
        try:
            with stream:
                if declared <= SMALL_FILE:
                    return self._accept(path, stream.read())
                sha, size = self.sink.add_chunks(self._chunks(stream))
                return PackageFile(sha, size)
        except PackageRefused:
            raise
        except archive.READ_ERRORS as exc:
            raise archive.member_read_error(self.arc.format, path, exc) from None

    def _chunks(self, stream: IO[bytes]) -> Iterator[bytes]:
        self.head = b""
        while chunk := stream.read(CHUNK):
            if not self.head:
                self.head = chunk[:CSV_HEAD]  # where a database CSV states its corte
            self.budget.count(len(chunk))
            yield chunk

    def _needed(self, path: str) -> bool:
        """Whether the whole content is needed after the pass (checksums, main.json, pointers)."""
        return (
            (path.count("/") <= 1 and path.lower().rsplit("/", 1)[-1] in _INNER_LOWER)
            or self._maybe(path, self.s.main_json)
            or self._maybe_pointer(path)
        )

    def _inspect(self, path: str, sha: str, data: bytes) -> None:
        lower = path.lower()
        if self._needed(path):
            self.kept[path] = data
        if lower.endswith(".json"):
            if self.s.validate_json == "all":
                parse_json(path, data)
            self.clues.json(path, data)
        elif lower.endswith(".csv"):
            self.clues.csv_head(path, data[:CSV_HEAD])
        elif lower.endswith(".zip"):
            self.clues.nested_zip(path, sha)

    def _inspect_large(self, path: str, taken: PackageFile) -> None:
        """A file streamed past SMALL_FILE: read back whole only when its content is judged
        (a large main.json or SHA256SUMS is as binding as a small one); otherwise its head."""
        lower = path.lower()
        if self._needed(path) or (lower.endswith(".json") and self.s.validate_json == "all"):
            self._inspect(path, taken.sha256, self.sink.read(taken.sha256))
        elif lower.endswith(".csv"):
            self.clues.csv_head(path, self.head)
        elif lower.endswith(".zip"):
            self.clues.nested_zip(path, taken.sha256)

    @staticmethod
    def _maybe(path: str, target: str) -> bool:
        """``path`` is ``target``, or would be once a wrapper folder is stripped."""
        return path == target or path.split("/", 1)[-1] == target

    def _maybe_pointer(self, path: str) -> bool:
        return bool(self.pointer_paths) and any(self._maybe(path, p) for p in self.pointer_paths)

    # -- after the pass ----------------------------------------------------------------

    def finish(self, name: str, verified: list[str], site_folders: Collection[str]) -> VerifiedPackage:
        if not self.files:
            raise PackageRefused("empty", "el paquete no trae ningún archivo")
        wrapper = wrapper_folder(name, self.files, site_folders, self.s)
        cut = len(wrapper) + 1 if wrapper else 0

        def final(p: str) -> str:
            return p[cut:] if wrapper and p.startswith(wrapper + "/") else p

        files = {final(p): f for p, f in self.files.items()}
        kept = {final(p): d for p, d in self.kept.items()}
        for p in files:
            names.check_reserved(p)
        names.check_conflicts(files)

        main = self.s.main_json
        if main in files:
            parse_json(main, kept[main])
        listing = next((n for n in checksums.INNER_NAMES if n in files), None)
        if listing:
            sums = checksums.parse_sums(utf8_text(listing, kept[listing]), wrapper)
            checksums.verify_sums(sums, {p: f.sha256 for p, f in files.items()}, listing)
            verified.append("sha256sums")
        required = self.s.require_checksum
        if (required == "sha256sums" and not listing) or (required == "any" and not verified):
            raise PackageRefused(
                "checksum_missing",
                "el paquete no trae suma de verificación y la configuración exige una "
                f"(package.require_checksum = «{required}»)",
            )
        kind = self._kind(files)
        if kind == "database":
            limits.check_database(files, self.s.database_required)
        elif kind == "full" and main not in files:
            why = (f"la configuración pide solo paquetes completos (package.kind = «full») y "
                   f"este no trae {main}" if self.s.kind == "full"
                   else f"el paquete es completo (trae {self.s.full_marker}) pero no trae {main}")
            raise PackageRefused("main_missing", why)
        when = self.clues.pick(name, kept, final)
        return VerifiedPackage(files, kind, when, self.arc.format, wrapper, verified)

    def _kind(self, files: dict[str, PackageFile]) -> str:
        if self.s.kind != "auto":
            return self.s.kind
        return "full" if self.s.full_marker in files else "incremental"
