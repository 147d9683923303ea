"""A log file as the ingest sees it: its identity, its name, and its new whole lines in chunks.

A file's identity is the fingerprint of its first line(s), not its name: re-ingesting a file
adds nothing, an appended file adds only its new whole lines (a partial last line waits), and a
rotated file (``access.log`` → ``access.log.1`` → ``access.log.1.gz``) is recognised by content.
Offsets count uncompressed bytes, so a file keeps its offset when it is compressed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 128 << 20
HEAD = 4096


def fingerprint(head: bytes) -> str | None:
    """Identity of a log: sha256 of its first line (with any "#" header lines before it)."""
    end = 0
    while True:
        cut = head.find(b"\n", end)
        if cut < 0:
            # A first line longer than HEAD identifies the file by its first HEAD bytes.
            return hashlib.sha256(head).hexdigest() if len(head) >= HEAD and end == 0 else None
        line, end = head[end:cut], cut + 1
        if not line.startswith(b"#") or end >= len(head):
            if line.startswith(b"#"):
                return None  # only headers so far: wait for the first request
            return hashlib.sha256(head[:end]).hexdigest()


def source_name(path: Path) -> str:
    """``access.log.1.gz`` → ``access.log``: rotations keep their log's name."""
    return re.sub(r"(\.\d+)?(\.gz)?$|-\d{8}(\.gz)?$", "", path.name) or path.name


def open_log(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is gzip (by content, whatever its name)."""
    f = open(path, "rb")  # noqa: SIM115 — returned to the caller, who closes it
    try:
        gz = f.read(2) == b"\x1f\x8b"
    except BaseException:
        f.close()
        raise
    if not gz:
        f.seek(0)
        return f
    f.close()
    return gzip.open(path, "rb")  # type: ignore[return-value]


def nothing_new(path: Path, offset: int) -> bool:
    """Whether ``offset`` (uncompressed bytes) is already the file's end, without reading it:
    the size for a plain file, gzip's trailer (size mod 2³²) for a compressed one."""
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return os.fstat(f.fileno()).st_size <= offset
        if offset >= 1 << 32:
            return False
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little") == offset


def read_head(path: Path, size: int = HEAD) -> bytes:
    with open_log(path) as f:
        try:
            return f.read(size)
        except (OSError, EOFError, zlib.error):
            return b""


def chunks(path: Path, offset: int, final: bool, warnings: list[str], chunk: int = CHUNK
           ) -> Iterator[tuple[bytes | bytearray, int, int]]:
    """(whole lines, offset after them, lines too long dropped before them) from ``offset`` on,
    at most ``chunk`` bytes each; ``final`` also yields a last line without newline."""
    dropped = 0
    with open_log(path) as f:
        if isinstance(f, gzip.GzipFile):
            skip = offset
            while skip:  # offsets count uncompressed bytes: skip by decompressing
                step = f.read(min(skip, chunk))
                if not step:
                    return
                skip -= len(step)
        else:
            f.seek(offset)
        carry = b""
        while True:
            # Read into one buffer after the carried partial line: no copy of the chunk.
            buf = bytearray(chunk)
            buf[:len(carry)] = carry
            try:
                got = f.readinto(memoryview(buf)[len(carry):])  # type: ignore[attr-defined]
            except (OSError, EOFError, zlib.error) as exc:
                warnings.append(f"{path}: compresión dañada ({exc}); leído hasta ahí")
                got, final = 0, False
            size = len(carry) + (got or 0)
            del buf[size:]
            if not got:
                if final and buf:
                    offset += size
                    yield bytes(buf) + b"\n", offset, dropped
                return
            cut = buf.rfind(b"\n") + 1
            if cut == 0 and size >= chunk:  # a "line" longer than a chunk: drop it
                offset += size
                dropped += 1
                carry = b""
                continue
            carry = bytes(buf[cut:])
            if cut:
                offset += cut
                del buf[cut:]
                yield buf, offset, dropped
                dropped = 0
