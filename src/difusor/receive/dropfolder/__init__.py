"""The drop-folder watcher: packages another program (OpenSSH, rsync, …) writes into a folder.

We do not see the transfer, only the folder, so a file is taken only when something says it is
whole (``[dropfolder] complete_on``):

- ``rename``: it was renamed to its final name from a temporary one (a ``[receive]
  temp_suffixes`` suffix such as ``X.zip.part``, or rsync's hidden ``.X.zip.XXXXXX``), or moved
  in whole from elsewhere (rsync ``--delay-updates``, ``mv`` on the same filesystem);
- ``sidecar``: ``NAME.sha256`` is there and the sha256 of ``NAME`` matches it (both are taken);
- ``close``: the writer closed it (inotify ``IN_CLOSE_WRITE``; when polling, or for a file
  found at start, its size and times unchanged for :data:`SETTLE_SECONDS`). **Unsafe with
  OpenSSH**: a transfer cut halfway also closes the file, so half a package would be taken.

A file that only sits under its final name is therefore left where it is (logged once): with
the default rules an OpenSSH upload killed halfway is never published. Hidden and temporary
files are never taken. Two transfer habits defeat the rules and must not be used: rsync
``--partial`` (when the connection drops it *renames* the partial file to its final name; use
``--partial-dir``) and ``--inplace``.

Taking a file is :func:`difusor.receive.inbox.deliver`: a rename into the inbox, because OpenSSH
may re-open a name and truncate it, so the file must leave the drop folder, not be linked. When
the inbox is on another filesystem the file is first renamed to a hidden claim name beside
itself, copied, fsynced and renamed into the inbox; a claim left by a crash is finished on the
next scan. A sidecar goes right after its package. Whatever sits in the folder when the watcher
starts is judged by the same rules (a package with its matching sidecar is taken at once).

``watcher``: the folders, their events and scans; ``settling``: whether a file is whole, and
taking it; ``claims``: the copy into an inbox on another filesystem.
"""

from difusor.receive.dropfolder.settling import SETTLE_SECONDS
from difusor.receive.dropfolder.watcher import DropFolderWatcher

__all__ = ["SETTLE_SECONDS", "DropFolderWatcher"]
