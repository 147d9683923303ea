"""Where things live inside the state folder (``[state] dir``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    def analytics(self) -> Path:
        """The visit analytics database and its ingest offsets."""
        return self.root / "analytics"

    @property
    def shield(self) -> Path:
        """The shield's decisions, read by every web worker."""
        return self.root / "shield"

    @property
    def publish_lock(self) -> Path:
        return self.root / "publish.lock"

    def create(self) -> None:
        for d in (self.root, self.inbox, self.uploads, self.incoming, self.packages, self.quarantine,
                  self.store, self.logs, self.analytics, self.shield):
            d.mkdir(parents=True, exist_ok=True)
