"""A log read in chunks of whole lines: boundaries, partial lines, resumes, long lines, gzip,
what the copy notices on the way (UTF-8, Apache's escaped quotes), and a small log read in
place."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from difusor.analytics.logfile import Chunk, ahead, chunks


def read_all(log: Path, tmp: Path, offset: int = 0, final: bool = False, chunk: int = 100,
             piece: int = 7, in_place: bool = False
             ) -> tuple[list[Chunk], list[bytes], list[str]]:
    spool, found, texts, warnings = tmp / "spool", [], [], []
    for c in chunks(log, offset, final, warnings, [spool], chunk=chunk, piece=piece,
                    in_place=in_place):
        found.append(c)
        assert c.spool == (log if c.in_place else spool)
        texts.append(c.spool.read_bytes()[:c.size])
    return found, texts, warnings


def lines(n: int) -> bytes:
    return b"".join(b"linea %d %s\n" % (i, b"x" * (i * 7 % 40)) for i in range(n))


@pytest.mark.parametrize("piece", [1, 7, 64, 1 << 20])
def test_chunks_are_whole_lines_that_add_up_to_the_log(tmp_path: Path, piece: int) -> None:
    data = lines(60)
    log = tmp_path / "access.log"
    log.write_bytes(data)
    found, texts, _ = read_all(log, tmp_path, piece=piece)
    assert b"".join(texts) == data
    assert len(found) > 5
    for c, text in zip(found, texts, strict=True):
        assert text.endswith(b"\n") and len(text) <= 100 and c.size == len(text)
        assert c.utf8 and not c.escaped_quote and c.dropped == 0
    assert [c.end for c in found] == [sum(map(len, texts[:i + 1])) for i in range(len(texts))]


def test_a_partial_last_line_waits_unless_final_and_a_resume_reads_only_what_follows(
        tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(lines(20) + b"a medias")
    found, texts, _ = read_all(log, tmp_path)
    assert b"".join(texts) == lines(20)
    end = found[-1].end
    assert end == len(lines(20))
    # resumed at the saved offset: nothing new until the line is finished…
    assert read_all(log, tmp_path, offset=end)[1] == []
    # …or the log is known to be complete (the live tail's last look at a rotated file)
    found, texts, _ = read_all(log, tmp_path, offset=end, final=True)
    assert texts == [b"a medias\n"] and found[0].end == log.stat().st_size
    with log.open("ab") as f:
        f.write(b" y completa\notra\n")
    assert read_all(log, tmp_path, offset=end)[1] == [b"a medias y completa\notra\n"]


def test_a_line_longer_than_a_chunk_is_dropped_whole_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"antes\n" + b"L" * 350 + b"\ndespues 1\ndespues 2\n")
    found, texts, _ = read_all(log, tmp_path)
    assert b"".join(texts) == b"antes\ndespues 1\ndespues 2\n"
    assert sum(c.dropped for c in found) == 1
    assert found[-1].end == log.stat().st_size


def test_the_copy_notices_bad_utf8_and_escaped_quotes_across_pieces(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    ok = "línea con acentos: Michoacán, Nuevo León, 北京\n".encode()
    log.write_bytes(ok * 3)
    found, texts, _ = read_all(log, tmp_path, chunk=1000, piece=3)  # sequences cut by pieces
    assert b"".join(texts) == ok * 3 and found[0].utf8
    log.write_bytes(ok + b"mal \xff\xfe\n" + ok)
    assert not read_all(log, tmp_path, chunk=1000, piece=3)[0][0].utf8
    log.write_bytes(b'1.2.3.4 "GET /a\\\\b HTTP/1.1" ruta\\con\\barras\n')
    assert not read_all(log, tmp_path, chunk=1000, piece=3)[0][0].escaped_quote
    for cut in range(1, 20):  # the pair \" split between two pieces, wherever it falls
        log.write_bytes(b"x" * cut + b'"GET /\\"a\\" HTTP/1.1"\n')
        assert read_all(log, tmp_path, chunk=1000, piece=cut)[0][0].escaped_quote


def test_a_compressed_log_reads_the_same_and_a_damaged_one_up_to_the_damage(
        tmp_path: Path) -> None:
    data = lines(40)
    plain, packed = tmp_path / "access.log", tmp_path / "access.log.1.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    a, ta, _ = read_all(plain, tmp_path)
    b, tb, _ = read_all(packed, tmp_path)
    assert ta == tb and [c.end for c in a] == [c.end for c in b]
    resumed = read_all(packed, tmp_path, offset=a[2].end)[1]
    assert b"".join(resumed) == data[a[2].end:]
    packed.write_bytes(gzip.compress(data)[:-30])  # cut short
    _, texts, warnings = read_all(packed, tmp_path, final=True)
    assert warnings and "compresión dañada" in warnings[0]
    got = b"".join(texts)
    assert got and data.startswith(got) and got.endswith(b"\n")  # no half line taken as final


def test_ahead_fetches_the_next_item_while_this_one_is_used_and_cleans_up() -> None:
    fetched: list[int] = []
    closed = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            for i in range(5):
                fetched.append(i)
                yield i
        finally:
            closed.set()

    seen = []
    for i in ahead(numbers()):
        deadline = time.monotonic() + 5
        while len(fetched) < min(i + 2, 5) and time.monotonic() < deadline:
            time.sleep(0.01)  # the next one is fetched while this one is in our hands
        seen.append((i, len(fetched)))
    assert seen == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 5)] and closed.is_set()

    closed.clear()
    for i in ahead(numbers()):
        if i == 1:
            break
    assert closed.is_set()  # left early: the fetch under way ended, the generator is closed
    assert not [t for t in threading.enumerate() if t.name.startswith("difusor-copia")]

    def failing() -> Iterator[int]:
        yield 1
        raise OSError("disco")

    with pytest.raises(OSError, match="disco"):
        list(ahead(failing()))


def test_a_small_clean_log_from_its_start_is_read_in_place(tmp_path: Path) -> None:
    """Up to two chunks' worth is one chunk; from the start of a plain log ending in a newline
    it is the log itself, not copied, scanned meanwhile."""
    data = lines(60)
    log = tmp_path / "access.log"
    log.write_bytes(data)
    found, texts, _ = read_all(log, tmp_path, chunk=len(data) // 2 + 1, in_place=True)
    assert texts == [data] and len(found) == 1
    c = found[0]
    assert c.in_place and c.end == c.size == len(data) and c.last
    assert c.clean is not None and c.clean.result(timeout=5) is True
    assert not (tmp_path / "spool").exists()  # nothing copied
    found, _, _ = read_all(log, tmp_path, chunk=len(data) // 2 - 1, in_place=True)
    assert len(found) > 1 and not any(c.in_place for c in found)  # more than two chunks' worth


@pytest.mark.parametrize("case", ["resumed", "partial-line", "gzip", "pattern-name"])
def test_what_cannot_be_read_in_place_is_copied_as_one_chunk(tmp_path: Path, case: str
                                                             ) -> None:
    data = lines(30)
    log = tmp_path / {"gzip": "access.log.1.gz", "pattern-name": "acceso[1].log"}.get(
        case, "access.log")
    offset, expected = 0, data
    if case == "resumed":
        offset = data.index(b"\n") + 1
        expected = data[offset:]
    elif case == "partial-line":
        data += b"a medias"
        expected = lines(30)
    log.write_bytes(gzip.compress(data) if case == "gzip" else data)
    found, texts, _ = read_all(log, tmp_path, offset, chunk=len(data), in_place=True)
    assert texts == [expected] and not found[0].in_place


@pytest.mark.parametrize("tail", [b"mal \xff\n", b'"GET /\\"a\\" HTTP/1.1"\n'],
                         ids=["not-utf8", "escaped-quote"])
def test_a_log_read_in_place_that_is_not_clean_says_so(tmp_path: Path, tail: bytes) -> None:
    """Its scan (while DuckDB parses it) says it is not clean: the ingest then reads it again
    from a copy, which notices what and mends it or reads it the general way."""
    data = lines(30) + tail + lines(3)
    log = tmp_path / "access.log"
    log.write_bytes(data)
    (c,), _, _ = read_all(log, tmp_path, chunk=len(data), in_place=True)
    assert c.in_place and c.clean is not None and c.clean.result(timeout=5) is False
    (c,), texts, _ = read_all(log, tmp_path, chunk=len(data), in_place=False)
    assert texts == [data] and not c.in_place
    assert (c.utf8, c.escaped_quote) == ((False, False) if b"\xff" in tail else (True, True))
