"""One console for every site: each site's live document and actions behind a path of its own.

Without ``[sites]`` there is one desk and the console is what it always was. With them, the
default site (the one commands mean) answers at ``/`` and every site at ``/sitios/NAME/``, so
an operator running a simulacro on the test site sees and acts on that site, not on the
official one. A site's live document starts on its first visit: a console nobody opens for
the test site costs nothing for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from difusor.console.actions import Actions
from difusor.console.live import Live

PREFIX = "/sitios"


@dataclass
class Desk:
    name: str  # "" without [sites]
    title: str
    label: str  # what the site selector says
    live: Live
    actions: Actions
    href: str = "/"
    started: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Desks:
    """The sites' desks; the first is the default one (``/``)."""

    def __init__(self, desks: list[Desk]) -> None:
        self.default = desks[0]
        self.by_name = {d.name: d for d in desks}
        for d in desks[1:]:
            d.href = f"{PREFIX}/{d.name}/"

    def __iter__(self) -> Iterator[Desk]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str | None) -> Desk | None:
        return self.default if name is None else self.by_name.get(name)

    async def ready(self, desk: Desk) -> Desk:
        """The desk with its live document running (started on the first visit)."""
        if not desk.started:
            async with desk.lock:
                if not desk.started:
                    await desk.live.start()
                    desk.started = True
        return desk

    async def stop(self) -> None:
        for desk in self:
            if desk.started:
                await desk.live.stop()
                desk.started = False
