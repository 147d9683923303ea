"""Origins: where the public is served from, published to as one step (see ``twophase.py``).

``[[origins]]`` in difusor.toml names them (each kind's settings: ``config.providers``, checked
when the file is loaded); the embedded server (``local``) is always one of them, first, whether
or not it is listed. Drivers are named in ``base.DRIVERS`` and imported on use, so boto3 loads
only when an ``s3`` origin is configured.
"""

from __future__ import annotations

from collections.abc import Callable

from difusor.config import Config, LocalOriginSettings, OriginBase
from difusor.ledger import Ledger
from difusor.publish.origins.base import DRIVERS, Context, Origin, OriginError, Release, Result
from difusor.publish.origins.twophase import JOURNAL, OriginSet, Staged, SwitchReport

__all__ = ["DRIVERS", "JOURNAL", "Context", "Origin", "OriginError", "OriginSet", "Release", "Result",
           "Staged", "SwitchReport", "has_remote", "load_origins", "origin_settings"]


def origin_settings(cfg: Config) -> list[OriginBase]:
    """The configured origins with the local one first (added when not listed)."""
    local = [s for s in cfg.origins if s.kind == "local"]
    first = local or [LocalOriginSettings(name="local", kind="local")]
    return [*first, *(s for s in cfg.origins if s.kind != "local")]


def has_remote(cfg: Config) -> bool:
    """Whether publishing is two-phase (some origin besides the embedded server)."""
    return any(s.kind != "local" for s in cfg.origins)


def load_origins(ctx: Context, ledger: Ledger, release: Callable[[str], Release],
                 extra: list[Origin] | None = None) -> OriginSet:
    """Every configured origin's driver (plus ``extra`` ones: test doubles), ready to use."""
    origins = [DRIVERS.load(s.kind)(s, ctx) for s in origin_settings(ctx.cfg)]
    return OriginSet(ctx, ledger, [*origins, *(extra or [])], release)
