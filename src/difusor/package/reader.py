"""Verify one package in a single streaming pass and hand its files to a content sink.

Everything the authority sent is checked before anything can go live: member names and types,
limits, checksums, JSON validity and the corte's time. The reader never decides *where* bytes
go: it gives them to a ``ContentSink`` (the store's staging area) and returns the path → digest
map, the kind (full / incremental) and the corte.
"""

from __future__ import annotations

import io
import json
import re
import sys
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Protocol

from difusor.config import CorteSettings, PackageSettings
from difusor.errors import PackageRefused
from difusor.package import archive, checksums, corte, names

SMALL_FILE = 8 * 1024 * 1024  # read whole; larger files stream in chunks
CHUNK = 1024 * 1024
RATIO_FLOOR = 16 * 1024 * 1024  # ratios are only judged past this many bytes
MEMBER_RATIO_FLOOR = 1024 * 1024
CSV_HEAD = 4096  # the corte line is among a database CSV's first lines
_STAMP_WRAPPER = re.compile(r"^\d{8}_\d{4}")
_INNER_LOWER = frozenset(n.lower() for n in checksums.INNER_NAMES)
_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")


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
        self.cs = corte_settings
        self.zone = zone
        self.sink = sink
        self.arc = arc
        self.progress = progress
        self.files: dict[str, PackageFile] = {}  # canonical archive path → content
        self.dirs: set[str] = set()
        self.seen: dict[str, str] = {}
        self.kept: dict[str, bytes] = {}  # files needed whole after the pass (see _needed)
        self.conventions: list[tuple[str, int, int, Found]] = []  # path, rank, order, time
        self.csv_times: list[Found] = []
        self.nested_zips: list[tuple[str, str]] = []
        self.total = 0
        self.head = b""  # the first bytes of the last file streamed in chunks
        self.pointer_paths = {p.split("#/", 1)[0].lstrip("/") for p in corte_settings.json_pointers}

    # -- the streaming pass ------------------------------------------------------------

    def run(self) -> None:
        members: Iterator[archive.Member] | list[archive.Member] = self.arc.members()
        expected: int | None = None
        if self.arc.format == "zip":
            # The central directory is known up front: judge the whole list before any data.
            members = list(members)
            self._precheck_zip(members)
            expected = sum(1 for m in members if m.kind == "file")
        done = 0
        for member in members:
            path = names.canonical(member.name)
            if path is None:
                continue
            self._check_type(member, path)
            if member.kind == "dir":
                self.dirs.add(path)
                continue
            self._check_new(path)
            if len(self.files) >= self.s.max_files:
                raise PackageRefused(
                    "too_many_files",
                    f"el paquete trae más de {self.s.max_files} archivos (límite package.max_files)",
                )
            if member.size > self.s.max_file_bytes:
                raise PackageRefused(
                    "file_too_big",
                    f"«{path}» mide {member.size} bytes; el límite es {self.s.max_file_bytes} "
                    "(package.max_file_bytes)",
                )
            self.files[path] = self._take(path, member)
            done += 1
            if self.progress:
                self.progress(done, expected)

    def _precheck_zip(self, members: list[archive.Member]) -> None:
        nfiles = sum(1 for m in members if m.kind == "file")
        if nfiles > self.s.max_files:
            raise PackageRefused(
                "too_many_files",
                f"el paquete trae {nfiles} archivos; el límite es {self.s.max_files} "
                "(package.max_files)",
            )
        declared = sum(m.size for m in members)
        if declared > self.s.max_total_bytes:
            raise PackageRefused(
                "too_many_bytes",
                f"el paquete descomprimido mediría {declared} bytes; el límite es "
                f"{self.s.max_total_bytes} (package.max_total_bytes)",
            )
        if declared > RATIO_FLOOR and declared > self.s.max_ratio * max(self.arc.size, 1):
            raise PackageRefused(
                "ratio",
                f"razón de compresión {declared / max(self.arc.size, 1):.0f}:1 mayor que "
                f"{self.s.max_ratio:.0f}:1: parece una bomba de descompresión",
            )
        for m in members:
            if (
                m.packed is not None
                and m.size > MEMBER_RATIO_FLOOR
                and m.size > self.s.max_ratio * max(m.packed, 1)
            ):
                raise PackageRefused(
                    "ratio",
                    f"«{m.name}» se expande {m.size / max(m.packed, 1):.0f}:1, más que "
                    f"{self.s.max_ratio:.0f}:1: parece una bomba de descompresión",
                )

    def _check_type(self, member: archive.Member, path: str) -> None:
        if member.kind in ("file", "dir"):
            return
        reasons = {
            "symlink": ("symlink", "es un enlace simbólico"),
            "hardlink": ("hardlink", "es un enlace duro"),
            "device": ("device", "es un dispositivo"),
            "fifo": ("device", "es una tubería (FIFO)"),
        }
        code, what = reasons.get(member.kind, ("unsupported_member", "no es un archivo regular"))
        raise PackageRefused(code, f"«{path}» {what}; un paquete solo puede traer archivos")

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
        self._count(len(data))
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
            self._count(len(chunk))
            yield chunk

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.s.max_total_bytes:
            raise PackageRefused(
                "too_many_bytes",
                f"el paquete descomprimido pasa de {self.s.max_total_bytes} bytes "
                "(package.max_total_bytes)",
            )
        consumed = max(self.arc.consumed(), 1)
        if self.total > RATIO_FLOOR and self.total > self.s.max_ratio * consumed:
            raise PackageRefused(
                "ratio",
                f"razón de compresión {self.total / consumed:.0f}:1 mayor que "
                f"{self.s.max_ratio:.0f}:1: parece una bomba de descompresión",
            )

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
                _parse_json(path, data)
            for rank, when, which in corte.from_json_conventions(data, self.zone, self.cs.date_order):
                self.conventions.append((path, rank, len(self.conventions),
                                         _found(when, f"{path}: {which}")))
        elif lower.endswith(".csv"):
            self._csv_head(path, data[:CSV_HEAD])
        elif lower.endswith(".zip"):
            self.nested_zips.append((path, sha))

    def _inspect_large(self, path: str, taken: PackageFile) -> None:
        """A file streamed past SMALL_FILE: read back whole only when its content is judged
        (a large main.json or SHA256SUMS is as binding as a small one); otherwise its head."""
        lower = path.lower()
        if self._needed(path) or (lower.endswith(".json") and self.s.validate_json == "all"):
            self._inspect(path, taken.sha256, self.sink.read(taken.sha256))
        elif lower.endswith(".csv"):
            self._csv_head(path, self.head)
        elif lower.endswith(".zip"):
            self.nested_zips.append((path, taken.sha256))

    def _csv_head(self, path: str, head: bytes) -> None:
        source = f"{path}: línea de corte del CSV"
        try:
            when = corte.from_csv_head(head, self.cs.date_order)
        except PackageRefused as exc:
            self.csv_times.append(_found(exc, source))
            return
        if when:
            self.csv_times.append(_found(when, source))

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
        wrapper = self._wrapper(name, site_folders)
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
            _parse_json(main, kept[main])
        listing = next((n for n in checksums.INNER_NAMES if n in files), None)
        if listing:
            sums = checksums.parse_sums(_text(listing, kept[listing]), wrapper)
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
            _check_database(files, self.s.database_required)
        elif kind == "full" and main not in files:
            why = (f"la configuración pide solo paquetes completos (package.kind = «full») y "
                   f"este no trae {main}" if self.s.kind == "full"
                   else f"el paquete es completo (trae {self.s.full_marker}) pero no trae {main}")
            raise PackageRefused("main_missing", why)
        when = self._corte(name, kept, final)
        return VerifiedPackage(files, kind, when, self.arc.format, wrapper, verified)

    def _wrapper(self, name: str, site_folders: Collection[str]) -> str | None:
        tops = {p.split("/", 1)[0] for p in self.files}
        loose = {p for p in self.files if "/" not in p}
        folders = tops - loose
        # A checksum list may sit beside the wrapper folder instead of inside it.
        if len(folders) != 1 or loose - set(checksums.INNER_NAMES):
            return None
        top = next(iter(folders))
        if top in site_folders or self.s.main_json in self.files:
            return None  # a folder of the site itself, e.g. json/ of an incremental package
        stem = name
        for suffix in _SUFFIXES:
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if top == stem or _STAMP_WRAPPER.match(top):
            return top
        if any(fnmatchcase(top, pattern) for pattern in self.s.wrapper_names):
            return top
        return None

    def _kind(self, files: dict[str, PackageFile]) -> str:
        if self.s.kind != "auto":
            return self.s.kind
        return "full" if self.s.full_marker in files else "incremental"

    def _corte(
        self, name: str, kept: dict[str, bytes], final: Callable[[str], str]
    ) -> corte.CorteTime:
        found = self._find_corte(name, kept, final)
        if isinstance(found, PackageRefused):
            raise found
        corte.check_calendar(found.when, self.zone, found.source)
        return found

    def _find_corte(
        self, name: str, kept: dict[str, bytes], final: Callable[[str], str]
    ) -> Found:
        """The strongest source that states a corte; a source that states one that cannot be
        used is returned as such (never skipped for a weaker one: that would be a guess)."""
        order = self.cs.date_order
        for spec in self.cs.json_pointers:
            file, pointer = spec.split("#", 1)
            file = file.lstrip("/")
            if file not in kept:
                continue
            try:
                value = corte.resolve_pointer(_parse_json(file, kept[file]), pointer)
            except (KeyError, IndexError, ValueError, TypeError):
                continue
            source = f"{file}#{pointer}"
            try:
                when = corte.from_value(value, self.zone, order)
            except PackageRefused as exc:
                return _found(exc, source)
            if when:
                return corte.CorteTime(when, source)
        if self.s.kind == "database":  # the database states its corte in its CSV line
            from_csv = self._csv_corte(final)
            if from_csv:
                return from_csv
        main = self.s.main_json
        ranked = sorted(
            ((0 if final(path) == main else 1, rank, n, found)
             for path, rank, n, found in self.conventions),
            key=lambda r: r[:3],
        )
        best = [r for r in ranked if r[1] < 2]  # dates before names
        if best:
            return best[0][3]
        if ranked:
            return ranked[0][3]
        when = corte.from_stamp(name, self.zone)
        if when:
            return corte.CorteTime(when, f"nombre del paquete «{name}»")
        from_csv = self._csv_corte(final)
        if from_csv:
            return from_csv
        raise PackageRefused(
            "no_corte",
            "no encontré la fecha y hora del corte (ni en los JSON, ni en el nombre del "
            "paquete, ni en la base de datos CSV); configura corte.json_pointers si el "
            "formato es otro",
        )

    def _csv_corte(self, final: Callable[[str], str]) -> Found | None:
        """The corte line of a CSV in the package, or of one inside a zip it carries."""
        if self.csv_times:
            return self.csv_times[0]
        for path, sha in self.nested_zips:
            nested = _nested_csv_time(final(path), self.sink.read(sha), self.cs.date_order)
            if nested:
                return nested
        return None


Found = corte.CorteTime | PackageRefused  # a corte, or one stated but unusable


def _found(when: datetime | PackageRefused, source: str) -> Found:
    if isinstance(when, PackageRefused):
        return PackageRefused(when.code, f"{source}: {when.message}")
    return corte.CorteTime(when, source)


def _check_database(files: Collection[str], required: list[str]) -> None:
    for pattern in required:
        if not any(fnmatchcase(p, pattern) or fnmatchcase(p.rsplit("/", 1)[-1], pattern)
                   for p in files):
            raise PackageRefused(
                "database_missing",
                f"el paquete de base de datos no trae ningún archivo «{pattern}» "
                "(package.database_required)",
            )


def _parse_json(path: str, data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise PackageRefused("json_invalid", f"«{path}» no está en UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PackageRefused(
            "json_invalid",
            f"«{path}» no es JSON válido (línea {exc.lineno}, columna {exc.colno}: {exc.msg})",
        ) from None
    except RecursionError:
        raise PackageRefused(
            "json_too_deep",
            f"«{path}» trae listas u objetos anidados a más de unos {sys.getrecursionlimit()} niveles; "
            "ningún sitio PREP los necesita",
        ) from None
    except ValueError:  # the only other one json raises: an integer past Python's digit limit
        raise PackageRefused(
            "json_number",
            f"«{path}» trae un número entero de más de {sys.get_int_max_str_digits()} cifras",
        ) from None


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PackageRefused("checksum_format", f"«{path}» no está en UTF-8") from None


def _nested_csv_time(path: str, data: bytes, order: str) -> Found | None:
    """The corte line of a database zip carried inside the package (INE LEEME layout)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            csvs = [i for i in zf.infolist() if i.filename.lower().endswith(".csv")][:20]
            for info in csvs:
                with zf.open(info) as f:
                    head = f.read(CSV_HEAD)
                source = f"{path}/{info.filename}: línea de corte del CSV"
                try:
                    when = corte.from_csv_head(head, order)
                except PackageRefused as exc:
                    return _found(exc, source)
                if when:
                    return corte.CorteTime(when, source)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
        return None
    return None
