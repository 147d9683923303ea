"""Where things live inside the state folder (``[state] dir``), and with which permissions.

Files that hold visitors' IPs (the ledger, the analytics database, the logs) are ``0640``
whatever the umask: the owner writes, its group (an ``adm``-like reader) reads, nobody else.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

PRIVATE_FILE = 0o640


def private_file(path: Path, mode: int = PRIVATE_FILE) -> Path:
    """Create ``path`` empty with ``mode`` when missing (the umask can only take bits away);
    take away any bit beyond ``mode`` when it exists and is ours."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & ~mode and st.st_uid == os.geteuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    else:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """A key or secret written whole (temporary name, then a rename) and never readable by
    others, not even for a moment."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask only takes bits away; an old .tmp may have kept its mode
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable: its own fsync."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """``path`` as a folder with exactly ``mode`` (``mkdir`` alone obeys the umask)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def user_temp_folder(name: str) -> Path | None:
    """``<tmp>/<name>-<uid>``, made 0700: a per-user folder outside any state (SSH control
    sockets, the geolocation ranges' cache). None when it cannot be ours alone — someone
    else's, or open to others: what it holds could then be anything."""
    folder = Path(tempfile.gettempdir()) / f"{name}-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def inbox(self) -> Path:
        """Where receivers drop complete uploads (SFTP, drop folder, HTTPS pull)."""
        return self.root / "inbox"

    @property
    def uploads(self) -> Path:
        """The embedded SFTP server's root (its chroot): uploads in progress and finished."""
        return self.root / "sftp"

    @property
    def incoming(self) -> Path:
        """Private copies of packages being verified."""
        return self.root / "incoming"

    @property
    def packages(self) -> Path:
        """Accepted originals, kept unmodified for the record."""
        return self.root / "packages"

    @property
    def quarantine(self) -> Path:
        """Refused originals, each with its reason beside it."""
        return self.root / "quarantine"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    @property
    def log_file(self) -> Path:
        """The operator's log of ``difusor run`` (``difusor.log``)."""
        return self.logs / "difusor.log"

    @property
    def analytics(self) -> Path:
        """The visit analytics database and its ingest offsets."""
        return self.root / "analytics"

    @property
    def shield(self) -> Path:
        """The shield's decisions, read by every web worker."""
        return self.root / "shield"

    @property
    def cdn_probes(self) -> Path:
        """``NAME.txt`` here is served as ``/_difusor/sonda-cdn/NAME.txt``: ``difusor check``
        changes one and purges it to prove the CDN purges (one name per check, then deleted)."""
        return self.root / "check" / "sonda-cdn"

    @property
    def integrity(self) -> Path:
        """What ``/_difusor/cortes.json``, ``/_difusor/cortes/N.json`` and
        ``/_difusor/manifest/<corte>.json`` answer: the public chain and each corte's files."""
        return self.root / "integrity"

    @property
    def console_users(self) -> Path:
        """The console's accounts (Argon2id hashes), 0600: ``difusor console user add``."""
        return self.root / "console" / "users.json"

    @property
    def publish_lock(self) -> Path:
        return self.root / "publish.lock"

    def create(self) -> StateLayout:
        for d in (self.root, self.inbox, self.uploads, self.incoming, self.packages, self.quarantine,
                  self.store, self.logs, self.shield):
            d.mkdir(parents=True, exist_ok=True)
        # The analytics database's write-ahead log is made 0644 by DuckDB: the folder hides it.
        self.analytics.mkdir(mode=0o750, exist_ok=True)
        private_file(self.log_file)  # the logger appends to it and keeps its mode
        return self
