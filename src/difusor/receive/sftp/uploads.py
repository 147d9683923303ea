"""What becomes of an SFTP upload: when it is complete, and its delivery into the inbox.

An upload becomes a candidate for the inbox in exactly two ways:

* the client closes a file it opened for writing, every write having succeeded, and the name has
  no temporary suffix (``[receive] temp_suffixes``); or
* the client renames a temporary name (``X.zip.part``) whose file it closed cleanly to a final
  name (``X.zip``).

A candidate is hard-linked into the inbox (:func:`difusor.receive.inbox.deliver`), so the client
can still stat or list its file. Opening an existing name with truncation unlinks it first, so a
re-upload is a new inode and never touches a file already in the inbox.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh

from difusor.receive.inbox import deliver

Log = Callable[[str], None]
Key = tuple[int, int]  # (st_dev, st_ino): the file itself, whatever its name


def clean_abandoned(uploads: Path, older_than: float) -> list[Path]:
    """Remove files under ``uploads`` untouched for ``older_than`` seconds: uploads already linked
    into the inbox and partial transfers nobody finished. "Untouched" is the later of mtime and
    ctime, since a client may set mtime to its own file's age (``put -p``)."""
    cutoff = time.time() - older_than
    removed = []
    for folder, _dirs, files in os.walk(uploads):
        for name in files:
            path = Path(folder, name)
            try:
                st = os.lstat(path)
                if max(st.st_mtime, st.st_ctime) < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
    return removed


class Handle(io.FileIO):
    """An open file; for writing, with what the completion rule needs to know."""

    local: bytes
    key: Key
    writing: bool = False
    failed: bool = False


class Desk:
    """Shared by every session of one listener: which files are open for writing, which
    temporary names were closed cleanly, and the delivery itself."""

    def __init__(self, uploads: Path, inbox: Path, temp_suffixes: list[str],
                 on_delivered: Callable[[Path], None] | None, say: Log) -> None:
        self.uploads = uploads.resolve()
        self.inbox = inbox
        self.temp_suffixes = tuple(s.lower() for s in temp_suffixes)
        self.on_delivered = on_delivered
        self.say = say
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._writers: dict[Key, int] = {}
        self._tainted: set[Key] = set()
        self._ready: set[Key] = set()  # temporary names closed cleanly, waiting for their rename

    def is_temp(self, local: bytes) -> bool:
        return os.fsdecode(local).lower().endswith(self.temp_suffixes)

    def shown(self, local: bytes) -> str:
        return "/" + os.path.relpath(os.fsdecode(local), self.uploads)

    def opened(self, h: Handle) -> None:
        self._writers[h.key] = self._writers.get(h.key, 0) + 1
        self._ready.discard(h.key)

    def closed(self, h: Handle, clean: bool) -> None:
        left = self._writers.get(h.key, 1) - 1
        if left:
            self._writers[h.key] = left
        else:
            self._writers.pop(h.key, None)
        if not clean or h.failed:
            self._tainted.add(h.key)
            why = "falló una escritura" if h.failed else "la sesión terminó con el archivo abierto"
            self.say(f"SFTP: subida incompleta de {self.shown(h.local)} ({why}): no se entrega")
        if left:
            return  # another handle still writes this file: its last close decides
        if h.key in self._tainted:
            self._tainted.discard(h.key)
        elif self.is_temp(h.local):
            self._ready.add(h.key)
        else:
            self.hand_over(h.local, h.key)

    def is_open(self, key: Key) -> bool:
        return key in self._writers

    def renamed(self, old: bytes, new: bytes, key: Key) -> None:
        if not self.is_temp(old) or self.is_temp(new):
            return
        if key in self._ready:
            self._ready.discard(key)
            self.hand_over(new, key)
        elif key in self._writers:
            self.say(f"SFTP: {self.shown(new)} se renombró aún abierto para escritura: no se entrega")
        else:
            self.say(f"SFTP: {self.shown(new)} no se terminó de subir en esta sesión: no se entrega")

    def hand_over(self, local: bytes, key: Key) -> None:
        path = Path(os.fsdecode(local))
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != key or not stat.S_ISREG(st.st_mode):
            self.say(f"SFTP: {self.shown(local)} cambió antes de entregarse: no se entrega")
            return
        try:
            target = deliver(path, self.inbox, name=path.name, link=True)
        except OSError as exc:  # e.g. the inbox on another filesystem: say so, keep the upload
            self.say(f"SFTP: no pude pasar {self.shown(local)} al buzón {self.inbox}: {exc}")
            return
        self.say(f"SFTP: recibido {self.shown(local)} ({st.st_size:,} bytes) → buzón")
        if self.on_delivered is not None:
            try:
                self.on_delivered(target)
            except Exception as exc:  # the upload is delivered; a listener's bug must not undo it
                self.say(f"SFTP: error al avisar de {target.name}: {exc!r}")
