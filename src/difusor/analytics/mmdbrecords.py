"""Many mmdb records read at once (numpy): where each one's country and subdivisions are.

Building the geolocation ranges (``georanges.py``) needs the answer of every record the tree
points to — DB-IP City Lite has ≈ 500,000, one per place — and reading them one by one in
Python (``geo.RecordReader``) takes ≈ 20 µs each. But a record's answer depends only on two of
its values, the country map and the subdivisions array, which records share by pointer. So all
records are stepped through together, one map entry at a time (the MaxMind DB format 2 control
bytes decoded as arrays), keeping where each one's ``country`` (else ``registered_country``)
and ``subdivisions`` are; only the distinct (country, subdivisions) pairs — a few thousand —
are then read in Python. A record this cannot read (a key that is not a string, a top value
that is not a map) is marked, and read the slow way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difusor.analytics.geo import RecordReader

if TYPE_CHECKING:
    import numpy as np

WANTED = {"country": 1, "registered_country": 2, "subdivisions": 3}


class Records:
    """The data section of an mmdb as a numpy byte array (``raw``, the whole file) beside the
    scalar reader of the same bytes."""

    def __init__(self, raw: np.ndarray, reader: RecordReader) -> None:
        self.raw, self.reader = raw, reader
        self._last = len(raw) - 1

    def release(self) -> None:
        """Lets go of the file's bytes (the scalar reader's too: it is done)."""
        self.raw = None  # type: ignore[assignment]
        self.reader.buf = None

    def _byte(self, at: np.ndarray) -> np.ndarray:
        import numpy as np

        return self.raw[np.minimum(at, self._last)].astype(np.int64)

    def ctrl(self, off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``RecordReader._ctrl`` for an array of offsets: (type, size, payload offset); for
        pointers the size is the target's offset and the payload offset the pointer's end."""
        import numpy as np

        c = self._byte(off)
        b1, b2, b3, b4 = (self._byte(off + i) for i in (1, 2, 3, 4))
        kind = c >> 5
        ss, vvv = (c >> 3) & 3, c & 7
        target = np.select([ss == 0, ss == 1, ss == 2],
                           [vvv << 8 | b1, (vvv << 16 | b1 << 8 | b2) + 2048,
                            (vvv << 24 | b1 << 16 | b2 << 8 | b3) + 526336],
                           b1 << 24 | b2 << 16 | b3 << 8 | b4) + self.reader.base
        extended = kind == 0
        kind = np.where(extended, 7 + b1, kind)
        at = off + 1 + extended
        small = c & 0x1F  # sizes from 29 on take 1–3 more bytes
        e1, e2, e3 = (self._byte(at + i) for i in (0, 1, 2))
        size = np.select([small == 29, small == 30, small == 31],
                         [29 + e1, 285 + (e1 << 8 | e2), 65821 + (e1 << 16 | e2 << 8 | e3)], small)
        at = at + np.clip(small - 28, 0, 3)
        pointer = kind == 1
        return (kind, np.where(pointer, target, size),
                np.where(pointer, off + 2 + ss, at))

    def skip(self, off: np.ndarray) -> np.ndarray:
        """``RecordReader._skip`` for an array of offsets: each one past its value."""
        import numpy as np

        off = off.copy()
        pending = np.ones(len(off), np.int64)
        active = np.arange(len(off))
        while len(active):
            kind, size, payload = self.ctrl(off[active])
            nested = (kind == 7) | (kind == 11) | (kind == 14) | (kind == 1)
            off[active] = np.where(nested, payload, payload + size)
            pending[active] += np.where(kind == 7, 2 * size, np.where(kind == 11, size, 0)) - 1
            active = active[pending[active] > 0]
        return off

    def places(self, offs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(country map, subdivisions, readable) per record at ``offs``: offsets of the values
        (-1 when absent), and False where the record must be read the slow way."""
        import numpy as np

        kind, size, payload = self.ctrl(offs)
        pointer = kind == 1  # a record that is a pointer to the map
        if pointer.any():
            k2, s2, p2 = self.ctrl(size[pointer])
            kind[pointer], size[pointer], payload[pointer] = k2, s2, p2
        ok = kind == 7
        found = np.full((4, len(offs)), -1, np.int64)
        off = payload.copy()
        for entry in range(int(size[ok].max(initial=0))):
            act = np.nonzero(ok & (entry < size))[0]
            key_kind, key_size, _ = self.ctrl(off[act])
            key_at = np.where(key_kind == 1, key_size, off[act])
            codes, readable = self._key_codes(key_at)
            ok[act[~readable]] = False
            after_key = self.skip(off[act])
            value_kind, value_size, _ = self.ctrl(after_key)
            value_at = np.where(value_kind == 1, value_size, after_key)
            for code in (1, 2, 3):
                mine = codes == code
                found[code, act[mine]] = value_at[mine]
            off[act] = self.skip(after_key)
        where = np.where(found[1] >= 0, found[1], found[2])
        return where, found[3], ok

    def _key_codes(self, key_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(WANTED code or 0, whether it is a string) of the keys at ``key_at``."""
        import numpy as np

        distinct, where = np.unique(key_at, return_inverse=True)
        codes, readable = [], []
        for at in distinct.tolist():
            try:
                codes.append(WANTED.get(self.reader._string(at), 0))
                readable.append(True)
            except (IndexError, ValueError, UnicodeDecodeError):
                codes.append(0)
                readable.append(False)
        return np.array(codes)[where], np.array(readable, dtype=bool)[where]
