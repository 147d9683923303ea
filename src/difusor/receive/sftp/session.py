"""One sftp session in the chroot: file operations, with what the completion rule must see.

**Connection loss is not a close.** When a session ends (EOF — which is also what a killed
OpenSSH ``sftp`` produces, since its ``ssh`` sends EOF — or a dropped TCP connection), asyncssh's
``SFTPServerHandler._cleanup`` calls ``SFTPServer.close()`` for every handle still open and then
``SFTPServer.exit()``, synchronously, in one go. A close therefore only *settles* as clean once the
session shows it goes on: the next request arrives, or the event loop gets a turn; ``exit()``
arriving first means the close was the cleanup path, and nothing is delivered. (A client that
sends EOF without waiting for its close reply can lose a delivery this way; none of the usual
clients do.)
"""

from __future__ import annotations

import asyncio
import copy
import os
import stat
from collections.abc import Callable
from typing import Any

import asyncssh

from difusor.receive.sftp.uploads import Desk, Handle


class Uploads(asyncssh.SFTPServer):
    """One sftp session in the chroot. Closes wait in ``_pending`` until they settle (see the
    module docstring): every other request settles them as clean first; ``exit()`` as not."""

    def __init__(self, chan: asyncssh.SSHServerChannel, desk: Desk) -> None:
        super().__init__(chan, chroot=os.fsencode(desk.uploads))
        self.desk = desk
        self._pending: list[Handle] = []

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        for h in pending:
            self.desk.closed(h, clean=True)

    def exit(self) -> None:
        pending, self._pending = self._pending, []
        for h in pending:
            self.desk.closed(h, clean=False)

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> Handle:
        self._settle()
        local = self.map_path(path)
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND))
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        if not writing:
            return Handle(os.open(local, flags | os.O_RDONLY), "rb")
        flags |= os.O_RDWR if pflags & asyncssh.FXF_READ else os.O_WRONLY
        if pflags & asyncssh.FXF_APPEND:
            flags |= os.O_APPEND
        if pflags & asyncssh.FXF_CREAT:
            flags |= os.O_CREAT
        try:
            old = os.lstat(local)
        except FileNotFoundError:
            old = None
        if pflags & asyncssh.FXF_EXCL:
            flags |= os.O_EXCL
        elif old is not None and stat.S_ISREG(old.st_mode):
            if pflags & asyncssh.FXF_TRUNC:  # a new inode: the inbox keeps the earlier upload
                os.unlink(local)
                flags |= os.O_CREAT | os.O_EXCL
            elif old.st_nlink > 1:
                raise asyncssh.SFTPPermissionDenied(
                    "ya se entregó este archivo; súbelo de nuevo completo")
        perms = 0o644 if attrs.permissions is None else (attrs.permissions & 0o777) | 0o600
        fd = os.open(local, flags, perms)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise asyncssh.SFTPPermissionDenied("solo se suben archivos regulares")
        h = Handle(fd, "r+b" if pflags & asyncssh.FXF_READ else "wb")
        h.local, h.key, h.writing = local, (st.st_dev, st.st_ino), True
        self.desk.opened(h)
        return h

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        h: Handle = file_obj  # type: ignore[assignment]
        try:
            done = os.pwrite(h.fileno(), data, offset)
            while done < len(data):  # short writes are rare on files, but not impossible
                done += os.pwrite(h.fileno(), memoryview(data)[done:], offset + done)
        except OSError:
            h.failed = True
            raise
        return done

    def close(self, file_obj: object) -> None:
        h: Handle = file_obj  # type: ignore[assignment]
        h.close()
        if h.writing:
            if not self._pending:
                asyncio.get_running_loop().call_soon(self._settle)
            self._pending.append(h)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        # SFTP v3 refuses a rename onto an existing name. An authority re-sending a name it used
        # before (the night after a simulacro: 20241208_2000_…zip again) finds its earlier upload
        # there, long delivered: the inbox and the store keep that one, so the new upload takes
        # the name, as a re-opened upload does. A file still being written is never replaced.
        try:
            target = os.lstat(self.map_path(newpath))
        except FileNotFoundError:
            target = None
        if (target is not None and stat.S_ISREG(target.st_mode)
                and not self.desk.is_open((target.st_dev, target.st_ino))):
            self._moved(oldpath, newpath, super().posix_rename)
            return
        self._moved(oldpath, newpath, super().rename)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._moved(oldpath, newpath, super().posix_rename)

    def _moved(self, oldpath: bytes, newpath: bytes, move: Callable[[bytes, bytes], Any]) -> None:
        self._settle()
        old = os.lstat(self.map_path(oldpath))
        move(oldpath, newpath)
        if stat.S_ISREG(old.st_mode):
            self.desk.renamed(self.map_path(oldpath), self.map_path(newpath),
                              (old.st_dev, old.st_ino))

    def remove(self, path: bytes) -> None:
        self._settle()
        super().remove(path)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._settle()
        super().setstat(path, self._allowed(attrs, os.stat(self.map_path(path))))

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._settle()
        super().lsetstat(path, self._allowed(attrs, os.lstat(self.map_path(path))))

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        self._settle()
        h: Handle = file_obj  # type: ignore[assignment]
        super().fsetstat(h, self._allowed(attrs, os.fstat(h.fileno())))

    @staticmethod
    def _allowed(attrs: asyncssh.SFTPAttrs, st: os.stat_result) -> asyncssh.SFTPAttrs:
        """Times and (own) permissions, yes; owners never; and a file already in the inbox
        (more than one link) is neither truncated nor made unreadable."""
        attrs = copy.copy(attrs)
        attrs.uid = attrs.gid = attrs.owner = attrs.group = None
        if st.st_nlink > 1:
            if attrs.size is not None and attrs.size != st.st_size:
                raise asyncssh.SFTPPermissionDenied("ya se entregó este archivo; no se trunca")
            attrs.size = attrs.permissions = None
        elif attrs.permissions is not None:
            attrs.permissions = (attrs.permissions & 0o777) | 0o600
        return attrs

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no se permiten enlaces aquí")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no se permiten enlaces aquí")
