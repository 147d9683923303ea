"""Taking a file into an inbox on another filesystem, so that a crash never loses it.

The file is first renamed to a hidden claim name beside itself (off the name a writer could
re-open), then copied into the inbox under a temporary name, fsynced and renamed; the claim is
removed last. A claim left by a crash is finished on the next scan; a half-made copy in the
inbox is removed when the watcher starts (its claim is still in the drop folder).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from difusor.paths import fsync_dir
from difusor.receive.inbox import deliver

CLAIM = ".difusor-entrega-"  # a file being copied to an inbox on another filesystem
_COPY_TMP = ".dropfolder.part"


def claim_and_copy(path: Path, inbox: Path) -> Path:
    """Claim ``path`` and copy it into ``inbox``; returns the inbox path."""
    claim = path.with_name(f"{CLAIM}{uuid.uuid4().hex[:8]}-{path.name}")
    os.rename(path, claim)  # off the name a writer could re-open, before copying
    return finish_claim(claim, path.name, inbox)


def claimed_name(claim: Path) -> str:
    """The name the claimed file had."""
    return claim.name[len(CLAIM):].partition("-")[2] or "paquete"


def finish_claim(claim: Path, name: str, inbox: Path) -> Path:
    """Copy a claimed file into the inbox on another filesystem: temp, fsync, rename."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f".{uuid.uuid4().hex}{_COPY_TMP}"
    try:
        with claim.open("rb") as src, tmp.open("xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        target = deliver(tmp, inbox, name=name)
        fsync_dir(inbox)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    claim.unlink()
    fsync_dir(claim.parent)
    return target


def clean_inbox(inbox: Path) -> None:
    """Copies a crash left half-made in the inbox (the claim is still in the drop folder)."""
    try:
        for entry in os.scandir(inbox):
            if entry.name.startswith(".") and entry.name.endswith(_COPY_TMP):
                os.unlink(entry.path)
    except FileNotFoundError:
        pass
