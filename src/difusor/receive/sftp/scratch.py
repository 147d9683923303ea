"""Scratch sessions: the throughput check's uploads, through the real receiver, never published.

A session authenticated with the difusor's check key (``checkkey``) is chrooted into a folder of
its own, ``state/check/sftp/<session>/`` (with ``verificacion/`` inside, the path the check client
names on either receiver), instead of ``state/sftp``. It runs the same :class:`Uploads` code, so
the figure is the receiver's, but its desk hands nothing over: no hard link into the inbox, no
``on_delivered``. The folder is removed when the session ends, and whatever a crash left is
removed when the listener starts.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import asyncssh

from difusor.config import Config
from difusor.receive.sftp.checkkey import CHECK_FOLDER
from difusor.receive.sftp.session import Uploads
from difusor.receive.sftp.uploads import Desk, Key, Log


def scratch_root(cfg: Config) -> Path:
    return cfg.state_dir / "check" / "sftp"


def clear_scratch(root: Path) -> None:
    """Remove every session folder a crash may have left (the listener is starting)."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)


class ScratchDesk(Desk):
    """A desk for one scratch session: it keeps the completion rule's bookkeeping (the session
    code relies on it) but delivers nothing."""

    def __init__(self, folder: Path, temp_suffixes: list[str], say: Log) -> None:
        # The "inbox" is the scratch folder itself: even a bug reaching ``deliver`` stays here.
        super().__init__(folder, folder, temp_suffixes, None, say)

    def hand_over(self, local: bytes, key: Key) -> None:
        try:
            size = os.lstat(local).st_size
        except FileNotFoundError:
            size = 0
        self.say(f"SFTP: prueba de velocidad: {self.shown(local)} ({size:,} bytes) recibido en "
                 "la carpeta de prueba; no se entrega")


class Scratch(Uploads):
    """One scratch session: :class:`Uploads` in its own folder, removed at the end."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: Path, temp_suffixes: list[str],
                 say: Log) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = root / uuid.uuid4().hex[:12]
        folder.mkdir(mode=0o700)
        (folder / CHECK_FOLDER).mkdir(mode=0o700)
        self.folder = folder
        self.say = say
        super().__init__(chan, ScratchDesk(folder, temp_suffixes, say))

    def exit(self) -> None:
        super().exit()
        size = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
        shutil.rmtree(self.folder, ignore_errors=True)
        self.say(f"SFTP: prueba de velocidad terminada; borré la carpeta de prueba "
                 f"({size:,} bytes)")
