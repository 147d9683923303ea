"""A log file as the ingest sees it: its identity, its name, and its new whole lines in chunks.

A file's identity is the fingerprint of its first line(s), not its name: re-ingesting a file
adds nothing, an appended file adds only its new whole lines (a partial last line waits), and a
rotated file (``access.log`` → ``access.log.1`` → ``access.log.1.gz``) is recognised by content.
Offsets count uncompressed bytes, so a file keeps its offset when it is compressed.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import re
import threading
import zlib
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")

CHUNK = 128 << 20
_GLOB = re.compile(r"[*?\[\]{}~]")
PIECE = 1 << 20   # the copy buffer: stays in the CPU's cache
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


def bytes_after(path: Path, offset: int) -> int:
    """About how many (uncompressed) bytes follow ``offset``: for a compressed log, by gzip's
    trailer (its size mod 2³²), so only an estimate past 4 GB."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(2) != b"\x1f\x8b":
            return size - offset
        f.seek(-4, os.SEEK_END)
        return (int.from_bytes(f.read(4), "little") - offset) % (1 << 32)


def read_head(path: Path, size: int = HEAD) -> bytes:
    with open_log(path) as f:
        try:
            return f.read(size)
        except (OSError, EOFError, zlib.error):
            return b""


@dataclass
class Chunk:
    """Whole lines of a log, just written to the spool file given to ``chunks`` — or, read in
    place, the log itself from its start (``stamp`` says which file that was, ``clean``
    whether it is clean: UTF-8 and no escaped quote, found out while it is parsed)."""
    end: int              # the file's offset after them (uncompressed bytes)
    size: int             # bytes in the spool
    dropped: int          # lines longer than a chunk skipped before them
    utf8: bool            # the bytes are valid UTF-8 (almost always: logs are ASCII)
    escaped_quote: bool   # a backslash before a quote somewhere (Apache escapes quotes so)
    last: bool            # the log ended after it (for now)
    spool: Path           # where it was written (or the log, read in place)
    stamp: tuple[int, ...] | None = None  # read in place: the log's ``stamp`` before
    clean: Future[bool] | None = None     # read in place: the scan's verdict, when it ends

    @property
    def in_place(self) -> bool:
        return self.stamp is not None


def stamp(path: Path) -> tuple[int, ...]:
    """A file's identity and state: any write, truncation or replacement changes it."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each next one fetched in a thread while the caller works on this one (the
    chunk n+1 is copied while DuckDB parses chunk n; give ``chunks`` two spools). Leaving
    early waits for the fetch under way, then closes ``items``."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="difusor-copia")
    coming = pool.submit(next, items, None)
    try:
        while (item := coming.result()) is not None:
            coming = pool.submit(next, items, None)
            yield item
    finally:
        wait([coming])  # a fetch under way finishes (its error, if any, is not news now)
        pool.shutdown()
        if isinstance(items, Generator):
            items.close()


def chunks(path: Path, offset: int, final: bool, warnings: list[str], spools: Sequence[Path],
           chunk: int = CHUNK, piece: int = PIECE, in_place: bool = True) -> Iterator[Chunk]:
    """From ``offset`` on, chunks of whole lines of at most ``chunk`` bytes, the n-th written
    to ``spools[n % len(spools)]`` (replacing what was there) before it is yielded; ``final``
    also takes a last line without newline (and adds one). The bytes pass through one small
    buffer: copying a chunk piece by piece and looking at each piece while it is hot costs a
    third of reading the chunk into memory and writing it out again.

    A log with at most two chunks' worth left is one chunk (the memory of two chunks in
    flight, fewer and larger statements). Read from its start, plain and ending in a newline
    (or ``final``), it is not even copied: the chunk is the log itself (``in_place``), yielded
    at once and scanned by a thread meanwhile. Whoever parses it must then wait for ``clean``
    and check the ``stamp`` (a log may grow while it is read), and read it again with
    ``in_place=False`` if either fails."""
    first = chunk
    if bytes_after(path, offset) <= 2 * chunk:
        first = 2 * chunk
        if in_place and offset == 0:
            whole = _in_place(path, final, first, piece)
            if whole is not None:
                yield whole
                return
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
        copier = _Copier(f, min(piece, chunk), path, warnings)
        carry = b""
        n = 0
        while True:
            cap = first if n == 0 else chunk
            with open(spools[n % len(spools)], "w+b") as out:
                size, cut, eof = copier.fill(out, carry, cap)
                out.flush()
                written = cut
                if eof and final and not copier.damaged and size > cut:  # no newline yet
                    out.write(b"\n")
                    cut, written, carry = size, size + 1, b""
                elif cut:
                    carry = os.pread(out.fileno(), size - cut, cut)
                    out.truncate(cut)
                elif size >= cap:  # one "line" longer than a chunk: dropped, to its end
                    skipped, carry = copier.skip_line()
                    offset += size + skipped
                    dropped += 1
                    continue
            if not cut:
                return
            offset += cut
            yield Chunk(offset, written, dropped, copier.utf8, copier.escaped_quote, eof,
                        spools[n % len(spools)])
            dropped, n = 0, n + 1
            if eof:
                return


def _in_place(path: Path, final: bool, limit: int, piece: int) -> Chunk | None:
    """The whole log as one chunk read where it lies, when it may be (see ``chunks``)."""
    if _GLOB.search(str(path)):  # DuckDB would take its name for a pattern
        return None
    before = stamp(path)
    size = before[2]
    if not 0 < size <= limit:
        return None
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            return None
        f.seek(size - 1)
        if f.read(1) != b"\n" and not final:
            return None
    return Chunk(size, size, 0, True, False, True, path, before,
                 _scanning(path, size, min(piece, limit)))


def _scanning(path: Path, size: int, piece: int) -> Future[bool]:
    """Whether the log's first ``size`` bytes are clean (UTF-8, no escaped quote), found out
    by a thread: DuckDB parses the log meanwhile (a copy would mend or read it the general
    way, so a log that is not clean is read again from one, which also tells of any read
    error: the scan keeps its own to itself)."""
    verdict: Future[bool] = Future()

    def scan() -> None:
        try:
            with open(path, "rb") as f:
                copier = _Copier(f, piece, path, [])
                copier.scan(size)
            verdict.set_result(copier.utf8 and not copier.escaped_quote and not copier.damaged)
        except BaseException as exc:  # (an OSError: the caller reads a copy instead)
            verdict.set_exception(exc)

    threading.Thread(target=scan, name="difusor-revisa", daemon=True).start()
    return verdict


class _Copier:
    """Copies a log into spool files through one reusable buffer, noting what it saw."""

    def __init__(self, f: BinaryIO, piece: int, path: Path, warnings: list[str]) -> None:
        self.f, self.path, self.warnings = f, path, warnings
        self.buf = bytearray(piece)
        self.view = memoryview(self.buf)
        self.damaged = False  # a compressed log ended in an error: its tail is not a line
        self._restart()

    def _restart(self) -> None:
        """A new chunk: nothing seen in it yet."""
        self.utf8, self.escaped_quote = True, False
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._last = 0

    def fill(self, out: BinaryIO, carry: bytes, chunk: int) -> tuple[int, int, bool]:
        """Writes ``carry`` then the log's next bytes to ``out`` until ``chunk`` bytes or the
        end: (bytes written, bytes up to the last newline, whether the log ended)."""
        out.write(carry)
        self._restart()
        self._look(carry)
        size, cut = len(carry), 0
        while size < chunk:
            got = self._read(min(len(self.buf), chunk - size))
            if not got:
                return size, cut, True
            part = self.view[:got]
            out.write(part)
            self._look(self.buf if got == len(self.buf) else bytes(part))
            newline = self.buf.rfind(b"\n", 0, got)
            if newline >= 0:
                cut = size + newline + 1
            size += got
        return size, cut, False

    def scan(self, limit: int) -> None:
        """Looks at the log's next ``limit`` bytes without copying them anywhere."""
        self._restart()
        left = limit
        while left and (got := self._read(min(len(self.buf), left))):
            self._look(self.buf if got == len(self.buf) else bytes(self.view[:got]))
            left -= got

    def skip_line(self) -> tuple[int, bytes]:
        """Reads on to the end of the current line: (bytes skipped, what follows it read)."""
        skipped = 0
        while got := self._read(len(self.buf)):
            newline = self.buf.find(b"\n", 0, got)
            if newline >= 0:
                return skipped + newline + 1, bytes(self.buf[newline + 1:got])
            skipped += got
        return skipped, b""

    def _read(self, want: int) -> int:
        try:
            return self.f.readinto(self.view[:want]) or 0  # type: ignore[attr-defined]
        except (OSError, EOFError, zlib.error) as exc:
            self.warnings.append(f"{self.path}: compresión dañada ({exc}); leído hasta ahí")
            self.damaged = True
            return 0

    def _look(self, data: bytes | bytearray) -> None:
        if not data:
            return
        # ASCII (nearly every piece) is valid UTF-8 on its own, unless a sequence is pending.
        if self.utf8 and (not data.isascii() or self._decoder.getstate()[0]):
            try:
                self._decoder.decode(data)
            except UnicodeDecodeError:
                self.utf8 = False
        # memchr for a backslash first: far cheaper than looking for the pair everywhere
        if not self.escaped_quote and (data.find(b"\\") >= 0 or self._last == 0x5C):
            self.escaped_quote = (data.find(b'\\"') >= 0
                                  or (self._last == 0x5C and data[0] == 0x22))
        self._last = data[-1]
