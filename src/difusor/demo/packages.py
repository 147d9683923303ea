"""Cutting packages (``.zip`` / ``.tar.gz``) from synthetic cortes, as an authority would."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

from difusor.demo.election import Corte

_ZIP_TIME = (2024, 12, 8, 0, 0, 0)


def package_files(corte: Corte, kind: str) -> dict[str, bytes]:
    if kind == "full":
        return corte.files
    return {p: corte.files[p] for p in sorted(corte.changed)}


def write_package(
    corte: Corte,
    folder: Path,
    *,
    kind: str = "full",
    fmt: str = "zip",
    wrapper: bool = True,
    sidecar: bool = False,
    name: str = "PREP_IRIMBO",
) -> Path:
    """Write ``<stamp>_<name>.<fmt>`` into ``folder``; returns its path."""
    stem = f"{corte.stamp}_{name}"
    files = package_files(corte, kind)
    prefix = f"{stem}/" if wrapper else ""
    target = folder / f"{stem}.{fmt}"
    folder.mkdir(parents=True, exist_ok=True)
    data = archive_bytes({prefix + p: b for p, b in files.items()}, fmt)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    if sidecar:
        digest = hashlib.sha256(data).hexdigest()
        Path(str(target) + ".sha256").write_text(f"{digest}  {target.name}\n")
    return target


def archive_bytes(files: dict[str, bytes], fmt: str) -> bytes:
    """A deterministic archive of ``files`` (same input, same bytes)."""
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(files):
                info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, files[path])
    elif fmt in ("tar.gz", "tgz", "tar"):
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(files):
                info = tarfile.TarInfo(path)
                info.size = len(files[path])
                info.mtime = 1733637600
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(files[path]))
        if fmt != "tar":
            return gzip.compress(buf.getvalue(), mtime=0)
    else:
        raise ValueError(f"unknown package format {fmt!r}")
    return buf.getvalue()
