"""Archives as a uniform stream of members: ``.zip`` (stored, deflate, bzip2 or LZMA members),
``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` and ``.tar.xz``.

The format is read from the file's first bytes, never trusted from its name. Members come in
archive order with their declared type and size; the caller decides what is acceptable. Library
errors stop here and become PackageRefused with a reason the operator understands.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import mmap
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from difusor.errors import PackageRefused


@dataclass(frozen=True)
class Member:
    name: str
    kind: str  # file | dir | symlink | hardlink | device | fifo | other
    size: int  # declared uncompressed size
    packed: int | None  # compressed size, when the format records it per member (zip)
    open: Callable[[], IO[bytes]] | None = None
    read: Callable[[], bytes] | None = None  # the whole content at once, when cheaper


def sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:3] == b"BZh":
        return "tar.bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "tar.xz"
    if not head:
        raise PackageRefused("empty", "el paquete está vacío (0 bytes)")
    raise PackageRefused(
        "unsupported_format",
        "formato no reconocido: se aceptan .zip, .tar, .tar.gz, .tgz, .tar.bz2 y .tar.xz",
    )


class _Counting:
    """A file wrapper that counts how many compressed bytes a decompressor has consumed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.consumed += len(data)
        return data


@dataclass
class Archive:
    format: str
    size: int
    members: Callable[[], Iterator[Member]]
    consumed: Callable[[], int]  # compressed bytes read so far (for ratio checks while streaming)


@contextmanager
def open_archive(path: Path) -> Iterator[Archive]:
    fmt = sniff(path)
    size = path.stat().st_size
    if fmt == "zip":
        try:
            zf = zipfile.ZipFile(path)
        except UnicodeDecodeError:  # a name flagged UTF-8 that is not
            raise PackageRefused(
                "invalid_utf8", "un nombre dentro del ZIP no es UTF-8 válido"
            ) from None
        except zipfile.BadZipFile:
            raise PackageRefused(
                "truncated",
                "el ZIP está incompleto o dañado: no tiene directorio central "
                "(¿transferencia interrumpida?)",
            ) from None
        with zf, path.open("rb") as f, _mapped(f) as mapped:
            yield Archive("zip", size, lambda: _zip_members(zf, mapped), lambda: size)
    else:
        with path.open("rb") as raw:
            counting = _Counting(raw)
            # Decompress outside tarfile: its stream mode never checks the gzip CRC and length.
            stream: IO[bytes] = (
                counting if fmt == "tar" else _DECOMPRESSORS[fmt](counting)  # type: ignore[assignment]
            )
            try:
                tf = tarfile.open(  # noqa: SIM115 - closed by the with below
                    fileobj=stream,
                    mode="r|",
                    tarinfo=_StrictTarInfo,
                    encoding="utf-8",
                    errors="surrogateescape",
                )
            except READ_ERRORS as exc:
                raise _tar_error(exc) from None
            with tf:
                yield Archive(fmt, size, lambda: _tar_members(tf, stream), lambda: counting.consumed)


@contextmanager
def _mapped(f: BinaryIO) -> Iterator[mmap.mmap | None]:
    try:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        yield None
        return
    try:
        yield mapped
    finally:
        mapped.close()


def _zip_read(mapped: mmap.mmap, info: zipfile.ZipInfo, name: str) -> bytes:
    """A member's whole content straight from the mapped archive: what ``zipfile`` does per
    member (local header, name, size and CRC checks) at a fraction of its cost, which matters
    for the thousands of small JSON files of a national corte."""
    offset = info.header_offset
    header = mapped[offset:offset + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise PackageRefused("corrupt", f"el ZIP está dañado en «{name}» (encabezado local)")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    stored_name = mapped[offset + 30:offset + 30 + name_len]
    expected = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    if stored_name != expected:
        raise PackageRefused(
            "corrupt", f"el ZIP está dañado en «{name}»: el nombre del directorio y el de los "
            "datos no coinciden"
        )
    start = offset + 30 + name_len + extra_len
    raw = mapped[start:start + info.compress_size]
    if len(raw) != info.compress_size:
        raise PackageRefused("truncated", f"los datos de «{name}» terminan antes de tiempo")
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    else:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(raw, info.file_size + 1)
        except zlib.error:
            data = b""
        if not inflater.eof or len(data) != info.file_size:
            raise PackageRefused(
                "corrupt", f"datos dañados en «{name}» (falla la verificación CRC o la descompresión)"
            )
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise PackageRefused(
            "corrupt", f"datos dañados en «{name}» (falla la verificación CRC o la descompresión)"
        )
    return data


def _zip_members(zf: zipfile.ZipFile, mapped: mmap.mmap | None) -> Iterator[Member]:
    for info in zf.infolist():
        name = _zip_name(info)
        if info.flag_bits & 0x1:
            raise PackageRefused("encrypted", f"«{name}» está cifrado; el paquete debe ir sin cifrar")
        kind = "dir" if info.is_dir() else "file"
        if info.create_system == 3:  # Unix: the mode is in the high half of external_attr
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                kind = "symlink"
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                kind = "device"
            elif stat.S_ISFIFO(mode):
                kind = "fifo"
            elif stat.S_ISSOCK(mode):
                kind = "other"
        opener = (lambda i=info: _zip_open(zf, i)) if kind == "file" else None
        reader = None
        if (kind == "file" and mapped is not None
                and info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)):
            reader = lambda i=info, n=name: _zip_read(mapped, i, n)  # noqa: E731
        yield Member(name, kind, info.file_size, info.compress_size, opener, reader)


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member name, with non-UTF-8 bytes kept as surrogates so names.canonical refuses them."""
    raw_name = info.orig_filename  # not truncated at NUL, unlike .filename
    if info.flag_bits & 0x800 or raw_name.isascii():
        return raw_name
    raw = raw_name.encode("cp437")
    return raw.decode("utf-8", "surrogateescape")


def _zip_open(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return zf.open(info)
    except NotImplementedError:
        raise PackageRefused(
            "unsupported_member",
            f"«{info.filename}» usa un método de compresión no soportado "
            f"({info.compress_type}); usa deflate o sin compresión",
        ) from None
    except zipfile.BadZipFile:
        raise PackageRefused("corrupt", f"el ZIP está dañado en «{info.filename}»") from None


_DECOMPRESSORS: dict[str, Callable[[_Counting], IO[bytes]]] = {
    "tar.gz": lambda f: gzip.GzipFile(fileobj=f),  # type: ignore[arg-type]
    "tar.bz2": lambda f: bz2.BZ2File(f),  # type: ignore[arg-type]
    "tar.xz": lambda f: lzma.LZMAFile(f),  # type: ignore[arg-type]  # noqa: SIM115
}
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)
TRAILER_LIMIT = 1024 * 1024  # tar pads to its record size (10 KiB for GNU tar)


class _StrictTarInfo(tarfile.TarInfo):
    """Notes how the member list ended: tarfile's stream mode treats a missing, cut or invalid
    header after the first member as a normal end of archive, which would publish a damaged
    package with files missing."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            tarfile_.difusor_end = "end"  # type: ignore[attr-defined]
            raise
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):  # type: ignore[attr-defined]
            tarfile_.difusor_end = "truncated"  # type: ignore[attr-defined]
            raise
        except tarfile.InvalidHeaderError:  # type: ignore[attr-defined]
            tarfile_.difusor_end = "invalid"  # type: ignore[attr-defined]
            raise


def _tar_members(tf: tarfile.TarFile, stream: IO[bytes]) -> Iterator[Member]:
    it = iter(tf)
    while True:
        try:
            ti = next(it)
        except StopIteration:
            _check_tar_end(tf, stream)
            return
        except READ_ERRORS as exc:
            raise _tar_error(exc) from None
        if ti.isreg():
            kind = "file"
        elif ti.isdir():
            kind = "dir"
        elif ti.issym():
            kind = "symlink"
        elif ti.islnk():
            kind = "hardlink"
        elif ti.ischr() or ti.isblk():
            kind = "device"
        elif ti.isfifo():
            kind = "fifo"
        else:
            kind = "other"
        opener = (lambda t=ti: _tar_open(tf, t)) if kind == "file" else None
        yield Member(ti.name, kind, ti.size, None, opener)


def _check_tar_end(tf: tarfile.TarFile, stream: IO[bytes]) -> None:
    end = getattr(tf, "difusor_end", "truncated")
    if end == "truncated":
        raise PackageRefused(
            "truncated", "el archivo tar termina antes de tiempo (¿transferencia interrumpida?)"
        )
    if end == "invalid":
        raise PackageRefused("corrupt", "el archivo tar está dañado: un encabezado no es válido")
    # Read what follows the end marker, so a compressed stream's own checks (CRC, length) run.
    # Only zero padding may follow: anything else is a second archive (``cat a.tar b.tar``) or
    # a damaged one, and publishing the first half would serve a site with files missing.
    # tarfile has already read past the marker into its own buffer (up to one record).
    buffered = getattr(tf.fileobj, "buf", b"")
    extra = len(buffered)
    _only_padding(buffered, extra)
    try:
        while chunk := stream.read(64 * 1024):
            extra += len(chunk)
            _only_padding(chunk, extra)
    except READ_ERRORS as exc:
        raise _tar_error(exc) from None


def _only_padding(chunk: bytes, so_far: int) -> None:
    if so_far > TRAILER_LIMIT or chunk.count(0) != len(chunk):
        raise PackageRefused(
            "trailing_data",
            "hay datos después del final del archivo tar (¿dos archivos pegados?); "
            "se publicaría solo la primera parte",
        )


def _tar_open(tf: tarfile.TarFile, ti: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(ti)
    if f is None:  # pragma: no cover - isreg() members always have data
        raise PackageRefused("corrupt", f"no se pueden leer los datos de «{ti.name}»")
    return f


def _tar_error(exc: BaseException) -> PackageRefused:
    text = str(exc)
    if isinstance(exc, EOFError) or "unexpected end" in text or "end of data" in text:
        return PackageRefused(
            "truncated", "el archivo tar termina antes de tiempo (¿transferencia interrumpida?)"
        )
    if "empty file" in text:
        return PackageRefused("empty", "el paquete está vacío")
    if isinstance(exc, gzip.BadGzipFile | zlib.error | lzma.LZMAError) or "CRC" in text:
        return PackageRefused(
            "corrupt", "los datos comprimidos están dañados (falla la verificación CRC o la "
            "descompresión)"
        )
    return PackageRefused("corrupt", "el archivo tar está dañado: no se puede leer su contenido")


def member_read_error(fmt: str, name: str, exc: BaseException) -> PackageRefused:
    if fmt != "zip":
        return _tar_error(exc)
    if isinstance(exc, EOFError):
        return PackageRefused("truncated", f"los datos de «{name}» terminan antes de tiempo")
    return PackageRefused(
        "corrupt", f"datos dañados en «{name}» (falla la verificación CRC o la descompresión)"
    )
