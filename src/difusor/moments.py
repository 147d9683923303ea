"""Moments an operator types: ISO 8601, or the ``dd/mm/aaaa HH:MM`` every command prints.

A moment without a zone is in the site's zone. ``dd/mm/aaaa`` alone is that day's midnight.
What commands print (``printed``) and what JSON states (``in_zone``) are in the site's zone too:
one zone per answer, never UTC beside local time. How long something lasted is said one way
everywhere (``duration``): the CLI, the alerts and the library's messages.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from difusor.errors import DifusorError

# What the CLI prints (``08/12/2024 20:30:00 CST``): day first, seconds and zone name optional.
_PRINTED = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?"
                      r"(?: [A-Za-z]{2,5})?")


class BadMoment(DifusorError):
    """Not a moment; the message is Spanish and names the option and what was given."""


def parse_moment(value: str, zone: ZoneInfo, what: str = "") -> datetime:
    """``value`` (given as ``what``, e.g. ``--from``) as an aware datetime; raises ``BadMoment``."""
    text = value.strip()
    m = _PRINTED.fullmatch(text)
    try:
        if m:
            day, month, year, hour, minute, second = (int(g) if g else 0 for g in m.groups())
            when = datetime(year, month, day, hour, minute, second)
        else:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        named = f"{what}: " if what else ""
        raise BadMoment(f"{named}«{value}» no es una fecha: usa dd/mm/aaaa HH:MM (como la muestra "
                        "difusor) o ISO 8601, p. ej. 2024-12-08T20:30-06:00") from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def stored(iso: str) -> datetime:
    """A time as the ledger stores it (ISO 8601); one without a zone is UTC, the ledger's."""
    when = datetime.fromisoformat(iso)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def storable(when: datetime) -> str:
    """A time in the ledger's own form (UTC, microseconds), so its string comparisons hold."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _aware(when: datetime | str) -> datetime:
    return stored(when) if isinstance(when, str) else when


def printed(when: datetime | str, zone: tzinfo) -> str:
    """``08/12/2024 20:30:00 CST``: how every command shows a moment (``parse_moment`` reads
    it back)."""
    return _aware(when).astimezone(zone).strftime("%d/%m/%Y %H:%M:%S %Z")


def in_zone(when: datetime | str, zone: tzinfo) -> str:
    """ISO 8601 in ``zone``, its offset stated: ``2024-12-08T20:31:05-06:00``."""
    return _aware(when).astimezone(zone).isoformat()


def duration(seconds: float) -> str:
    """``5 s``, ``14 min 30 s``, ``2 h 05 min``, ``3 d 4 h``: the two largest units, the smaller
    one zero-padded so columns line up; never negative."""
    s = max(0, round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    if mins:
        return f"{mins} min {secs:02d} s"
    return f"{secs} s"
