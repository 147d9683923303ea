"""The embedded server as an origin: the store's own activation (``current`` + ``generation``).

Staging costs nothing (the store holds the corte already); switching is :func:`activate`, then a
wait until every running server worker reports the new generation, so the recorded switch time
is when the public sees the corte, not when the symlink moved.
"""

from __future__ import annotations

from typing import Any

from difusor.config import LocalOriginSettings
from difusor.publish.activate import activate, live_release, wait_served
from difusor.publish.origins.base import Origin, Release


class LocalOrigin(Origin):
    kind = "local"
    retryable = False
    settings: LocalOriginSettings

    def _stage(self, release: Release) -> dict[str, Any]:
        return {}

    def _switch(self, release_id: str) -> dict[str, Any]:
        generation = activate(self.ctx.layout, release_id, fsync=self.ctx.cfg.store.fsync)
        served = wait_served(self.ctx.layout, generation)
        return {"generation": generation, "workers": served[0] if served else None}

    def live(self) -> str | None:
        return live_release(self.ctx.layout)
