"""The authority's package as ``verify --package`` sees it: read with the difusor's own reader
(the same wrapper, checksum and safety rules a publication applies), every file hashed, nothing
kept: the bytes go to a scratch folder that is gone when the reading is."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

from difusor.config import CorteSettings, PackageSettings
from difusor.package.reader import read_package

ZONE = "America/Mexico_City"


class _Scratch:
    """A content sink that only hashes (and keeps bytes on disk until the reading ends, for
    the reader's second look at a large file)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        (self.folder / sha).write_bytes(data)
        return sha

    def add_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        tmp = self.folder / ".parte"
        with tmp.open("wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)
        sha = digest.hexdigest()
        tmp.replace(self.folder / sha)
        return sha, size

    def read(self, sha256: str) -> bytes:
        return (self.folder / sha256).read_bytes()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_files(path: Path) -> tuple[str, str, dict[str, str]]:
    """(the package's SHA-256, its kind, path → SHA-256 of every file it carries)."""
    sha = file_sha256(path)
    with tempfile.TemporaryDirectory(prefix="difusor-verify-") as tmp:
        verified = read_package(path, name=path.name, package_sha256=sha, sidecar_text=None,
                                settings=PackageSettings(), corte_settings=CorteSettings(),
                                zone=ZoneInfo(ZONE), sink=_Scratch(Path(tmp)))
    return sha, verified.kind, {p: f.sha256 for p, f in verified.files.items()}
