"""A package's ``NAME.sha256`` sidecar as a receiver meets it: bytes that may not be one.

A receiver only needs the digest to decide whether an upload is whole; whether the sidecar is
well formed is the publisher's to say (it refuses the package with the reason on record).
"""

from __future__ import annotations

from pathlib import Path

from difusor.errors import DifusorError
from difusor.package.checksums import parse_sidecar

SIDECAR_MAX = 64 * 1024  # larger is not a sidecar


def stated_digest(data: bytes) -> str | None:
    """The sha256 the sidecar ``data`` states; None when it is not in sha256sum's format."""
    try:
        return parse_sidecar(data.decode("utf-8", "replace"))
    except DifusorError:
        return None


def read_stated(side: Path) -> str | None:
    """The sha256 the sidecar file ``side`` states; None when it is missing, larger than
    SIDECAR_MAX, or not in sha256sum's format."""
    try:
        with side.open("rb") as f:
            data = f.read(SIDECAR_MAX + 1)
    except FileNotFoundError:
        return None
    if len(data) > SIDECAR_MAX:
        return None
    return stated_digest(data)
