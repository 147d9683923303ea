"""What the puller remembers in ``state/pull.json``: the validators and digest of the last
complete download, and the partial download (``descarga.part``) an interruption left."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Download:
    """A whole file, fsynced in ``descarga.part``."""

    name: str
    sha256: str
    size: int
    etag: str | None
    last_modified: str | None


class PullState:
    def __init__(self, state_file: Path, part: Path, url: str, data: dict[str, Any]) -> None:
        self.file = state_file
        self.part = part
        self.url = url
        self.data = data

    @classmethod
    def load(cls, state_file: Path, part: Path, url: str, log: Callable[[str], None]
             ) -> PullState:
        """The record for ``url``; a partial file that cannot be continued is removed."""
        try:
            data = json.loads(state_file.read_text("utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            log(f"no pude leer {state_file} ({exc}); se empieza de cero")
            data = {}
        if not isinstance(data, dict) or data.get("url") != url:
            data = {"url": url}  # another URL: nothing of the old one applies
        if not can_resume(data, part):
            data.pop("partial", None)
            part.unlink(missing_ok=True)
        return cls(state_file, part, url, data)

    def resumable(self) -> bool:
        return can_resume(self.data, self.part)

    def discard(self) -> None:
        """Forget the partial download, file and record."""
        self.part.unlink(missing_ok=True)
        if self.data.pop("partial", None) is not None:
            self.save()

    def remember(self, download: Download, *, delivered: bool = False) -> None:
        kept = {k: v for k, v in self.data.items() if k in ("sha256", "name", "size")}
        if delivered:
            kept.update(sha256=download.sha256, name=download.name, size=download.size)
        self.data = {**kept, "url": self.url, "etag": download.etag,
                     "last_modified": download.last_modified}
        self.save()

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(self.file.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(self.data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)


def can_resume(state: dict[str, Any], part: Path) -> bool:
    """A partial file exists and its ETag is strong, as ``If-Range`` needs."""
    etag = (state.get("partial") or {}).get("etag") or ""
    return bool(etag) and not etag.startswith("W/") and part.is_file() and part.stat().st_size > 0
