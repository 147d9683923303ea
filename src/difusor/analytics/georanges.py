"""The geolocation mmdb as integer ranges, so an ingest answers all its addresses in one join.

Looking addresses up one at a time in Python (maxminddb is pure Python here) cost ≈ 17 µs
each: fine for tens of thousands of visitors, a wall when every line of a night is a new
address. Instead the mmdb's search tree is walked once, level by level with numpy (DB-IP City
Lite: 11.6 M nodes), its ≈ 500,000 records read together (``mmdbrecords.py``: country and
Mexican state, the only fields the report uses, as ``geo.RecordReader`` reads them), the
reserved blocks given no country, and the networks laid end to end as ranges, adjacent ones
with equal answers merged: ≈ 1.2 M ranges, in ≈ 8 s (more on a busy machine) and ≈ 560 MB.

One number line holds both families: an IPv6 address is its 128-bit number, an IPv4 address
the number of its IPv4-mapped form (``::ffff:a.b.c.d``), which is how it is looked up (an
IPv4-mapped address is looked up as the IPv4 address it carries; the tree's own copy of the
IPv4 space under ``::ffff:0:0/96`` is replaced by the IPv4 answers).

``geocache.py`` keeps the result, so this runs only when the mmdb changes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difusor.analytics.geo import NONE, RESERVED, Answer, RecordReader, answer_of
from difusor.analytics.mmdbrecords import Records
from difusor.errors import LogFormatError

if TYPE_CHECKING:
    import numpy as np

_SLICE = 1 << 18  # tree nodes at a time
MAPPED = 0xFFFF << 32  # ::ffff:0:0, where IPv4 lives on the number line
TOP = 1 << 128
Ranges = tuple[list[int], list[int]]  # starts (ascending, the first 0) and answer ids


def build(db: Path) -> tuple[list[int], list[Answer]]:
    """(starts, answers) of the whole number line, by the mmdb ``db``."""
    import maxminddb
    import numpy as np

    try:
        reader = maxminddb.open_database(str(db))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise LogFormatError(f"no puedo abrir la base de geolocalización {db}: {exc}") from None
    try:
        meta = reader.metadata()
        # The file's bytes (≈ 100 MB) held by the tree and the records only: released once
        # the walks are done, before the sorts (``_number_line``).
        raw = np.frombuffer(db.read_bytes(), np.uint8)
        tree = _Tree(raw[:meta.search_tree_size], meta.node_count, meta.record_size)
        records = Records(raw, RecordReader(memoryview(raw.base),  # type: ignore[arg-type]
                                            meta.search_tree_size + 16))
        del raw
        return _number_line(tree, _Answers(records, reader, meta.node_count), meta.ip_version)
    finally:
        reader.close()


class _Answers:
    """Answer ids of data pointers: 0 is no answer (no data, or a record without a country)."""

    def __init__(self, records: Records, reader: Any, count: int) -> None:
        self.records, self.reader, self.count = records, reader, count
        self.answers: list[Answer] = [NONE]
        self._ids: dict[Answer, int] = {NONE: 0}

    def ids(self, pointers: np.ndarray) -> np.ndarray:
        import numpy as np

        distinct, where = np.unique(pointers, return_inverse=True)
        ids = np.zeros(len(distinct), np.uint16)  # (answers: a few hundred)
        data = np.nonzero(distinct > self.count)[0]
        scalar = self.records.reader
        offs = distinct[data].astype(np.int64) - self.count + scalar.base - 16
        country, subs, ok = self.records.places(offs)
        pairs, pair_of = np.unique(np.stack([country, subs])[:, ok], axis=1, return_inverse=True)
        pair_ids = []
        for c, s in pairs.T.tolist():
            try:
                pair_ids.append(self._id(scalar._place(c if c >= 0 else None,
                                                       s if s >= 0 else None)))
            except (IndexError, ValueError, KeyError, UnicodeDecodeError):
                pair_ids.append(-1)  # read each of its records the slow way
        ids[data[ok]] = np.array(pair_ids, np.int64)[pair_of.ravel()]
        slow = data[~ok].tolist() + data[ok][np.array(pair_ids)[pair_of.ravel()] < 0].tolist()
        for i in slow:
            ids[i] = self._id(self._slow(int(distinct[i])))
        return ids[where]

    def _slow(self, pointer: int) -> Answer:
        scalar = self.records.reader
        try:
            return scalar.answer(pointer - self.count + scalar.base - 16)
        except (IndexError, ValueError, KeyError, UnicodeDecodeError):
            # An unexpected layout: maxminddb's own decoder knows better.
            return answer_of(self.reader._resolve_data_pointer(pointer))

    def _id(self, answer: Answer) -> int:
        known = self._ids.get(answer)
        if known is None:
            known = self._ids[answer] = len(self.answers)
            self.answers.append(answer)
        return known


class _Tree:
    """The mmdb's search tree (record size 24, 28 or 32 bits), read a whole level at a time."""

    def __init__(self, raw: np.ndarray, count: int, record_size: int) -> None:
        if record_size not in (24, 28, 32):
            raise LogFormatError(f"la base de geolocalización usa registros de {record_size} "
                                 "bits; se esperaban 24, 28 o 32")
        self.raw, self.count, self.size = raw, count, record_size

    def release(self) -> None:
        self.raw = None  # type: ignore[assignment]

    def children(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        width = self.size // 4  # bytes per node
        off = nodes.astype(np.int64) * width
        b = [self.raw[off + i].astype(np.uint32) for i in range(width)]
        if self.size == 24:
            return (b[0] << 16 | b[1] << 8 | b[2]), (b[3] << 16 | b[4] << 8 | b[5])
        if self.size == 28:
            return ((b[3] & 0xF0) << 20 | b[0] << 16 | b[1] << 8 | b[2],
                    (b[3] & 0x0F) << 24 | b[4] << 16 | b[5] << 8 | b[6])
        return (b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3],
                b[4] << 24 | b[5] << 16 | b[6] << 8 | b[7])

    def ipv4_start(self, ip_version: int) -> int:
        """The node IPv4 lookups start from (maxminddb's: after 96 zero bits in IPv6 trees)."""
        import numpy as np

        node = 0
        for _ in range(96 if ip_version == 6 else 0):
            if node >= self.count:
                break
            node = int(self.children(np.array([node]))[0][0])
        return node

    def walk(self, root: int, bits: int, ids: Callable[[np.ndarray], np.ndarray],
             alias: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """The leaves under ``root``: their first addresses (hi, lo 64-bit halves, on a line of
        ``bits``), their answers (``ids`` of their data pointers, a level at a time: the
        pointers are not kept), and the (first address, depth) where ``alias`` (the IPv4
        subtree, which IPv6 trees repeat) is reached — not walked again."""
        import numpy as np

        nodes = np.array([root], dtype=np.uint32)
        hi, lo = np.zeros(1, np.uint64), np.zeros(1, np.uint64)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        aliases: list[tuple[int, int]] = []
        if root >= self.count:
            found.append((hi, lo, ids(nodes)))
        for depth in range(bits):
            if not len(nodes):
                break
            bit = bits - 1 - depth
            step = np.uint64(1 << (bit - 64)) if bit >= 64 else np.uint64(1 << bit)
            more: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            # A slice of the level at a time: a level holds millions of nodes, and each
            # costs a few dozen bytes of temporaries (slices in order keep the order).
            for at in range(0, len(nodes), _SLICE):
                part, phi, plo = (x[at:at + _SLICE] for x in (nodes, hi, lo))
                left, right = self.children(part)
                rhi, rlo = (phi | step, plo) if bit >= 64 else (phi, plo | step)
                # Each node's two children side by side: every level's leaves come out in
                # order, so the final sort only merges runs.
                kids = np.stack([left, right], 1).ravel()
                khi, klo = np.stack([phi, rhi], 1).ravel(), np.stack([plo, rlo], 1).ravel()
                leaf = kids >= self.count
                if leaf.any():
                    found.append((khi[leaf] if bits > 64 else khi[:0], klo[leaf],
                                  ids(kids[leaf])))
                inner = ~leaf
                if alias >= 0 and bits - depth - 1 >= 32:
                    again = kids == alias
                    aliases += [(int(h) << 64 | int(v), depth + 1)
                                for h, v in zip(khi[again], klo[again], strict=True)]
                    inner &= ~again
                more.append((kids[inner], khi[inner], klo[inner]))
            nodes, hi, lo = (np.concatenate([m[i] for m in more]) for i in range(3))
        if len(nodes):
            raise LogFormatError("la base de geolocalización está dañada (nodo inválido)")
        return (np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]),
                np.concatenate([f[2] for f in found]), aliases)


def _sorted_ranges(hi: np.ndarray, lo: np.ndarray, ids: np.ndarray) -> Ranges:
    """Leaves (which tile their line) in order, adjacent equal answers merged; ``hi`` empty
    on a line of at most 64 bits."""
    import numpy as np

    if len(hi):
        order = np.lexsort((lo, hi))
        hi, lo, ids = hi[order], lo[order], ids[order]
    else:
        order = np.argsort(lo, kind="stable")
        lo, ids = lo[order], ids[order]
    del order
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    tops = hi[keep].tolist() if len(hi) else [0] * int(keep.sum())
    return ([h << 64 | v for h, v in zip(tops, lo[keep].tolist(), strict=True)],
            ids[keep].tolist())


def _overlay(line: Ranges, first: int, last: int, inner: Ranges, top: int) -> None:
    """Replaces [first, last] of ``line`` with ``inner`` (whose first start is ``first``)."""
    starts, ids = line
    after = ids[bisect_right(starts, last + 1) - 1] if last + 1 < top else None
    i, j = bisect_left(starts, first), bisect_right(starts, last + 1)
    tail_s, tail_i = ([last + 1], [after]) if after is not None else ([], [])
    starts[i:j] = inner[0] + tail_s
    ids[i:j] = inner[1] + tail_i


def _merged(line: Ranges) -> Ranges:
    starts, ids = [], []
    for s, i in zip(*line, strict=True):
        if not ids or ids[-1] != i:
            starts.append(s)
            ids.append(i)
    return starts, ids


def _carve(line: Ranges, version: int, top: int) -> None:
    for net, plen in RESERVED[version]:
        size = 1 << ((32 if version == 4 else 128) - plen)
        _overlay(line, net, net + size - 1, ([net], [0]), top)


def _number_line(tree: _Tree, answers: _Answers, ip_version: int) -> tuple[list[int], list[Answer]]:
    import numpy as np

    v4_root = tree.ipv4_start(ip_version)
    hi, lo, ids, _ = tree.walk(v4_root, 32, answers.ids)
    v4 = _sorted_ranges(hi, lo, ids)
    if ip_version == 6:
        hi, lo, ids, aliases = tree.walk(0, 128, answers.ids,
                                         alias=v4_root if v4_root < tree.count else -1)
        # The IPv4 subtree wherever the tree repeats it (6to4, Teredo…), shifted into place.
        for prefix, depth in aliases:
            shift = 128 - depth - 32
            starts = [prefix | s << shift for s in v4[0]]
            hi = np.concatenate([hi, np.array([s >> 64 for s in starts], np.uint64)])
            lo = np.concatenate([lo, np.array([s & (1 << 64) - 1 for s in starts], np.uint64)])
            ids = np.concatenate([ids, np.array(v4[1], ids.dtype)])
        tree.release()
        answers.records.release()
        v6 = _sorted_ranges(hi, lo, ids)
        del hi, lo, ids
    else:
        v6 = ([0], [0])
    _carve(v4, 4, 1 << 32)
    _carve(v6, 6, TOP)
    mapped = ([MAPPED | s for s in v4[0]], v4[1])
    _overlay(v6, MAPPED, MAPPED | 0xFFFFFFFF, mapped, TOP)
    starts, ids = _merged(v6)
    return starts, [answers.answers[i] for i in ids]
