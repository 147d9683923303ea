"""Folder events from Linux inotify, as they happen.

A thin reader over ``inotify_simple``: one thread reads raw events and hands them on, renames
paired by their cookie within a read. (watchdog's inotify observer holds an unpaired
IN_MOVED_FROM for 0.5 s and, while it waits, every event queued behind it: half a second added
to every upload picked up from a drop folder.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from inotify_simple import INotify, flags

_MASK = (flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.CREATE | flags.DELETE
         | flags.DELETE_SELF | flags.MOVE_SELF)


@dataclass(frozen=True)
class FolderEvent:
    event_type: str  # closed | moved | created | deleted
    src_path: str
    dest_path: str = ""
    is_directory: bool = False


class FolderEvents:
    """Watches folders (not recursively) and calls ``put`` with each :class:`FolderEvent`."""

    def __init__(self, folders: Iterable[Path], put: Callable[[FolderEvent], None]) -> None:
        self._inotify = INotify()  # OSError when inotify is unavailable: the caller polls
        self._put = put
        self._folders: dict[int, str] = {}
        try:
            for folder in folders:
                self._folders[self._inotify.add_watch(str(folder), _MASK)] = str(folder)
        except OSError:
            self._inotify.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)

    def start(self) -> FolderEvents:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._inotify.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._inotify.read(timeout=200)
            except OSError:
                return
            moved_from: dict[int, str] = {}
            for ev in batch:
                folder = self._folders.get(ev.wd)
                if folder is None or not ev.name:
                    continue
                path = os.path.join(folder, ev.name)
                is_dir = bool(ev.mask & flags.ISDIR)
                if ev.mask & flags.MOVED_FROM:
                    moved_from[ev.cookie] = path
                    continue
                if ev.mask & flags.MOVED_TO:
                    src = moved_from.pop(ev.cookie, "")  # "" = moved in from outside
                    self._put(FolderEvent("moved", src, path, is_dir))
                elif ev.mask & flags.CLOSE_WRITE:
                    self._put(FolderEvent("closed", path, is_directory=is_dir))
                elif ev.mask & flags.CREATE:
                    self._put(FolderEvent("created", path, is_directory=is_dir))
                elif ev.mask & flags.DELETE:
                    self._put(FolderEvent("deleted", path, is_directory=is_dir))
            for src in moved_from.values():  # moved out of the folder
                self._put(FolderEvent("deleted", src))
